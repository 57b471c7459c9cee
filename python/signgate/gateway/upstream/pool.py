"""Kept-alive upstream connections, shared by every request of one gateway process.

:meth:`Pool.request` sends a request on an idle connection to the target's origin (or a new one)
and hands back the :class:`~.models.Response` once its head has arrived. The response tells the
pool when it is done (:meth:`Pool.response_closed`), and a connection when it is lost
(:meth:`Pool.connection_closed`); nothing else changes the pool's sets.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import aiohappyeyeballs

from ...errors import ConnectError, ConnectTimeout, ForbiddenAddress, UpstreamError, UpstreamTimeout
from .connection import Connection
from .guard import is_public
from .models import Response, Target

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DNS_TTL = 10.0

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]  # as socket.getaddrinfo gives them


class Pool:
    """Connections pooled per origin, most recently used first, closed after ``keepalive`` idle
    seconds. ``allow_private`` turns the address guard off; ``read_timeout`` counts silence (one
    sweep over the waiting answers every quarter of it, at most a second apart, so it may fire up
    to that much late)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        connect_timeout: float,
        read_timeout: float,
        keepalive: float = 30.0,
        max_idle_per_origin: int = 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self.max_idle_per_origin = max_idle_per_origin
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[Connection]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}
        self._open: set[Connection] = set()
        self._waiting: set[Response] = set()  # sent, not yet read to the end
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(self, method: str, target: Target, headers: Sequence[tuple[str, str]], body: bytes) -> Response:
        """Send a request and wait for the answer's head. Read the body with ``read()``, then
        ``aclose()`` the response. Raises an :class:`~signgate.errors.UpstreamError`."""
        if any(c in target.path for c in " \r\n\t"):
            raise UpstreamError("the upstream path contains whitespace")
        head = _head(method, target, headers, body)
        no_body = method == "HEAD"
        for attempt in (0, 1):
            conn = self._take_idle(target.origin)
            if conn is None:
                conn = await self._connect(target.origin)
            response = conn.send(head, body, no_body)
            self._wait_for(response)
            try:
                await response.wait_head()
            except UpstreamError as exc:
                response.close()
                # A kept-alive connection the upstream closed as we reused it: nothing was
                # answered, so an idempotent request may go again on a fresh connection. (Not
                # after a timeout: the upstream may simply be slow, and waiting twice helps no one.)
                retry = conn.reused and response.received == 0 and not isinstance(exc, UpstreamTimeout)
                if attempt == 0 and retry and method in _IDEMPOTENT:
                    continue
                raise
            except BaseException:
                response.close()
                raise
            return response
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._idle.clear()
        self._waiting.clear()

    # -- told by connections and responses ------------------------------------------------------------

    def response_closed(self, conn: Connection, response: Response, reusable: bool) -> None:
        """``response``, read on ``conn``, is done with: keep the connection for the next request
        if it may serve one, else drop it."""
        self._waiting.discard(response)
        if reusable:
            self._put_idle(conn)
        else:
            conn.abort()

    def connection_closed(self, conn: Connection) -> None:
        """``conn`` is gone (the upstream closed it, or it was dropped)."""
        self._open.discard(conn)
        if conn.response is not None:
            self._waiting.discard(conn.response)

    # -- internals ----------------------------------------------------------------------------------

    def _wait_for(self, response: Response) -> None:
        self._waiting.add(response)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_interval(), self._sweep)

    def _sweep_interval(self) -> float:
        return min(self.read_timeout / 4, 1.0)

    def _sweep(self) -> None:
        """Fail the answers whose upstream has been silent for the read timeout."""
        self._sweeper = None
        now = time.monotonic()
        for response in list(self._waiting):
            if response.done or response.error is not None:
                self._waiting.discard(response)
            else:
                response.check_silence(now, self.read_timeout)
        if self._waiting:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_interval(), self._sweep)

    def _take_idle(self, origin: tuple[str, str, int]) -> Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        deadline = time.monotonic() - self.keepalive
        while idle and (idle[0].closed or idle[0].idle_since < deadline):
            idle.popleft().abort()  # oldest first: closed by the upstream, or idle too long
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
            conn.abort()
        return None

    def _put_idle(self, conn: Connection) -> None:
        idle = self._idle.setdefault(conn.key, deque())
        conn.idle_since = time.monotonic()
        idle.append(conn)
        deadline = conn.idle_since - self.keepalive
        while idle and (idle[0].closed or idle[0].idle_since < deadline or len(idle) > self.max_idle_per_origin):
            idle.popleft().abort()

    async def _resolve(self, host: str, port: int) -> list[AddrInfo]:
        """``getaddrinfo``'s answers for ``host``, each checked unless private upstreams are allowed."""
        now = time.monotonic()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        infos: list[AddrInfo]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            socket.inet_pton(family, host)
            infos = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
        except OSError:
            loop = asyncio.get_running_loop()
            try:
                infos = list(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except socket.gaierror as exc:
                raise ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
        if not self.allow_private:
            for info in infos:
                if not is_public(str(info[4][0])):
                    raise ForbiddenAddress(host, str(info[4][0]))
        self._dns[(host, port)] = (now + _DNS_TTL, infos)
        if len(self._dns) > 4096:
            self._dns = {k: v for k, v in self._dns.items() if v[0] > now}
        return infos

    async def _connect(self, origin: tuple[str, str, int]) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout):
                infos = await self._resolve(host, port)
                try:
                    # Happy eyeballs (RFC 8305) over the checked addresses only: a blackholed
                    # IPv6 route costs 0.25 s, not the whole connect timeout.
                    sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=0.25, interleave=1)
                except OSError as exc:
                    raise ConnectError(f"could not connect to {host}: {exc.strerror or exc}") from None
                try:
                    transport, conn = await loop.create_connection(
                        lambda: Connection(self, origin),
                        sock=sock,
                        ssl=context,
                        server_hostname=host if context is not None else None,
                    )
                except OSError as exc:  # the TLS handshake or certificate check failed
                    sock.close()
                    raise ConnectError(f"could not connect to {host}: {exc.strerror or exc}") from None
        except TimeoutError:
            raise ConnectTimeout(f"could not connect to {host} within {self.connect_timeout:g} s") from None
        conn.transport = transport
        self._open.add(conn)
        return conn


def _head(method: str, target: Target, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    """The request line and headers, with ``host`` and (for a body) ``content-length``."""
    scheme, host, port, path = target
    authority = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        authority = f"{authority}:{port}"
    lines = [f"{method} {path} HTTP/1.1\r\nhost: {authority}\r\n"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise UpstreamError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}\r\n")
    if body or method in _BODY_METHODS:
        lines.append(f"content-length: {len(body)}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise UpstreamError("a request header holds a character outside Latin-1") from None
