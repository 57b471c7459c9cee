"""The gateway's upstream client: pooled HTTP/1.1 connections on asyncio protocols and llhttp.

The gateway needs little from an HTTP client: send one request on a kept-alive connection, hand
back the status and raw headers, then the body as it arrives, and say whether it ended cleanly.
aiohttp's client did this at about a third of the gateway's CPU per request and 10 KB per open
stream. This one is an :class:`asyncio.Protocol` feeding ``httptools`` (llhttp, the parser Node.js
uses), with:

- connections pooled per origin, most recently used first, closed after ``keepalive`` idle seconds;
- the address guard at connect time: names are resolved once, every address is checked with
  :func:`~signgate.gateway.upstream.is_public`, and the connection goes to a checked address;
- a connect timeout, and a read timeout that fires when the upstream sends nothing for that long
  (one sweep over the waiting connections every quarter timeout, at most a second apart, instead
  of a timer per connection re-armed on every chunk: a timeout fires up to a quarter late);
- backpressure: reading from the upstream pauses while 64 KiB wait for a slow client;
- no redirects, cookies, decompression or proxies, by design.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import aiohappyeyeballs
import httptools

from .upstream import ForbiddenAddress, is_public

_HIGH_WATER = 64 * 1024  # buffered body bytes at which reading from the upstream pauses
_MAX_HEAD = 64 * 1024  # an upstream's status line and headers may not exceed this
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DNS_TTL = 10.0

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]  # as socket.getaddrinfo gives them


class UpstreamError(Exception):
    """The upstream could not be reached, broke the connection or answered something that is not
    HTTP."""

    #: Whether the request may have reached the upstream (False: it failed before being sent).
    sent = True


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, or sent nothing, within its timeout."""


class ConnectError(UpstreamError):
    """The upstream's name did not resolve, or no connection could be made: nothing was sent."""

    sent = False


class ConnectTimeout(UpstreamTimeout):
    """No connection within the connect timeout: nothing was sent."""

    sent = False


class _Unsolicited(Exception):
    """Raised from a parser callback: the upstream sent an answer nobody asked for."""


class _Connection(asyncio.Protocol):
    """One upstream connection and the response being read on it."""

    __slots__ = (
        "_bodies",
        "_buffer",
        "_buffered",
        "_chunked",
        "_pool",
        "_stray",
        "_waiter",
        "closed",
        "done",
        "error",
        "head_done",
        "head_size",
        "header_bytes",
        "headers",
        "idle_since",
        "keep_alive",
        "key",
        "last_read",
        "length_known",
        "no_body",
        "parser",
        "paused",
        "received",
        "reused",
        "status",
        "transport",
    )

    def __init__(self, pool: UpstreamPool, key: tuple[str, str, int]) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.head_size = 0
        self.header_bytes = 0  # names and values of the head being parsed, however it arrived
        self.done = False
        self.error: UpstreamError | None = None
        self.keep_alive = False
        self.length_known = False
        self._chunked = False
        self.no_body = False
        self.received = 0
        self.paused = False
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._bodies = 0  # parser calls that delivered body bytes
        self._stray = 0  # bytes read since the head without any body bytes: chunk framing, trailers
        self.last_read = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.last_read = time.monotonic()
        head_done, bodies = self.head_done, self._bodies
        if not head_done:
            self.head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the upstream switched protocols"))
        except httptools.HttpParserError:
            if self.done:  # on_message_begin refused a second answer: the first stands, the connection goes
                self.abort()
            else:
                self._fail(UpstreamError("the upstream's answer is not valid HTTP"))
        else:
            if not self.head_done and self.head_size > _MAX_HEAD:
                self._fail(UpstreamError(f"the upstream's response head exceeds {_MAX_HEAD} bytes"))
            elif head_done and not self.done and self._bodies == bodies:
                # Past the head, reads without body bytes are chunk framing or the trailer
                # section, which llhttp parses (and httptools buffers) without limit.
                self._stray += len(data)
                if self._stray > _MAX_HEAD:
                    self._fail(UpstreamError(f"the upstream sent {_MAX_HEAD} bytes without body bytes"))
            else:
                self._stray = 0

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._open.discard(self)
        self._pool._waiting.discard(self)
        del self.parser  # it holds our bound methods: break the cycle so the memory goes at once
        if self.done or self.error is not None:
            return
        if self.head_done and not self.length_known and not self._chunked and exc is None:
            self.done = True  # a body delimited by the connection's end (RFC 9112 6.3, item 8)
        else:
            self.error = UpstreamError("the upstream closed the connection before the response was complete")
        self._wake()

    def pause_writing(self) -> None:
        pass  # requests are small and written once

    def resume_writing(self) -> None:
        pass

    # -- llhttp callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            # A second answer after the final one, in the same read or while the connection is
            # idle: nothing asked for it. Its body would join this answer's (past the length
            # relayed), or it would answer the next request sent on this connection.
            raise _Unsolicited

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # a trailer field: the head has been relayed, and trailers are not
        self.header_bytes += len(name) + len(value) + 4
        lowered = name.lower()
        if lowered == b"content-length":
            self.length_known = True
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            self._chunked = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.header_bytes > _MAX_HEAD:
            # The whole head came in one read, so the count of bytes read so far never saw it grow.
            self._fail(UpstreamError(f"the upstream's response head exceeds {_MAX_HEAD} bytes"))
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.length_known = self._chunked = False
            return
        self.status = status
        self.head_done = True
        if self.no_body:  # the answer to HEAD has no body whatever its headers say
            self.done = True
            self.keep_alive = False
            self._pool._waiting.discard(self)
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._bodies += 1
        if self.no_body:
            return
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered >= _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done or self.no_body:
            return  # an interim answer ended, or HEAD's answer was already taken as complete
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()
        self._pool._waiting.discard(self)
        self._wake()

    # -- used by the pool and the gateway -------------------------------------------------------------

    def send(self, head: bytes, body: bytes, no_body: bool) -> None:
        assert self.transport is not None
        self._reset()
        self.no_body = no_body
        self.last_read = time.monotonic()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        self._pool._wait_for(self)

    @property
    def complete(self) -> bool:
        """The body has been read to its end: the next read() returns b""."""
        return self.done and not self._buffer and self.error is None

    async def wait_head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self._error_copy()
            await self._wait()

    async def read(self) -> bytes:
        """The body bytes that arrived since the last call; ``b""`` once the body is complete.
        Raises :class:`UpstreamError` when the upstream breaks off or times out."""
        while True:
            if self._buffer:
                buffer = self._buffer
                data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                self._buffer = []
                self._buffered = 0
                if self.paused and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                return data
            if self.error is not None:
                raise self._error_copy()
            if self.done:
                return b""
            await self._wait()

    def release(self) -> None:
        """Return the connection to the pool after a complete response, or close it."""
        if self.done and self.keep_alive and self.error is None and not self.closed:
            self._pool._put_idle(self)
        else:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once (mid-stream this stops the upstream's work)."""
        self._pool._waiting.discard(self)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- internals ----------------------------------------------------------------------------------

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _error_copy(self) -> UpstreamError:
        # A fresh exception each time: the stored one, once raised, would hold a traceback whose
        # frames hold this connection, a cycle that keeps the whole request alive until a full gc.
        assert self.error is not None
        return type(self.error)(*self.error.args)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None and not self.done:
            self.error = error
        self.abort()
        self._wake()

    def _check_silence(self, now: float, timeout: float) -> None:
        if not self.paused and now - self.last_read >= timeout:  # paused: waiting on our own client
            self._fail(UpstreamTimeout(f"the upstream sent nothing for {timeout:g} s"))


class UpstreamPool:
    """Kept-alive connections to upstream origins, shared by every request of one process."""

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
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}
        self._open: set[_Connection] = set()
        self._waiting: set[_Connection] = set()  # sent a request, response not complete
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> _Connection:
        """Send a request and wait for the response head. The caller reads the body with
        ``read()`` and then calls ``release()`` (or ``abort()``)."""
        if any(c in target for c in " \r\n\t"):
            raise UpstreamError("the upstream path contains whitespace")
        key = (scheme, host, port)
        head = self._head(method, scheme, host, port, target, headers, body)
        no_body = method == "HEAD"
        for attempt in (0, 1):
            conn = self._take_idle(key)
            if conn is None:
                conn = await self._connect(key)
            conn.send(head, body, no_body)
            try:
                await conn.wait_head()
            except UpstreamError as exc:
                conn.abort()
                # A kept-alive connection the upstream closed as we reused it: nothing was
                # answered, so an idempotent request may go again on a fresh connection. (Not
                # after a timeout: the upstream may simply be slow, and waiting twice helps no one.)
                retry = conn.reused and conn.received == 0 and not isinstance(exc, UpstreamTimeout)
                if attempt == 0 and retry and method in _IDEMPOTENT:
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
            return conn
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._idle.clear()

    # -- internals ----------------------------------------------------------------------------------

    @staticmethod
    def _head(
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> bytes:
        authority = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            authority = f"{authority}:{port}"
        lines = [f"{method} {target} HTTP/1.1\r\nhost: {authority}\r\n"]
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

    def _wait_for(self, conn: _Connection) -> None:
        self._waiting.add(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_interval(), self._sweep)

    def _sweep_interval(self) -> float:
        return min(self.read_timeout / 4, 1.0)

    def _sweep(self) -> None:
        """Fail the connections whose upstream has been silent for the read timeout."""
        self._sweeper = None
        now = time.monotonic()
        for conn in list(self._waiting):
            conn._check_silence(now, self.read_timeout)
        if self._waiting:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_interval(), self._sweep)

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
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

    def _put_idle(self, conn: _Connection) -> None:
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

    async def _connect(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
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
                        lambda: _Connection(self, key),
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
