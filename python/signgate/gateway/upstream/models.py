"""What a request to an upstream is sent to (:class:`Target`) and what comes back (:class:`Response`).

A :class:`Response` is one answer's state, apart from the connection it arrives on (uvicorn keeps
its protocol and its request cycle apart the same way): the connection's parser callbacks fill
it in, the gateway reads it, and :meth:`Response.aclose` tells the pool whether the connection
may serve another request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NamedTuple

from ...errors import UpstreamError, UpstreamTimeout

if TYPE_CHECKING:
    from .connection import Connection

#: Buffered body bytes at which reading from the upstream pauses (the client reads too slowly).
HIGH_WATER = 64 * 1024


class Target(NamedTuple):
    """Where a request goes: scheme, host (an IPv6 literal without brackets), port, and the path
    with its query."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def origin(self) -> tuple[str, str, int]:
        """What a pooled connection is kept for."""
        return self.scheme, self.host, self.port

    @classmethod
    def from_url(cls, url: str) -> Target | None:
        """The target of a normalised http(s) URL (its fragment dropped); None if it holds a user
        name or password."""
        scheme, rest = url.split("://", 1)
        slash = rest.find("/")
        authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        if "@" in authority:
            return None
        path = path.split("#", 1)[0]
        if authority.startswith("["):
            end = authority.index("]")
            host, port_text = authority[1:end], authority[end + 2 :]
        else:
            host, _, port_text = authority.partition(":")
        port = int(port_text) if port_text else (443 if scheme == "https" else 80)
        return cls(scheme, host, port, path)


class Response:
    """One upstream answer: ``status`` and ``headers`` (names in lower case) once :meth:`wait_head`
    returns, then the body through :meth:`read` until it returns ``b""``. :meth:`aclose` must
    follow, always."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_connection",
        "_waiter",
        "body_reads",
        "chunked",
        "done",
        "error",
        "head_bytes",
        "head_done",
        "header_bytes",
        "headers",
        "keep_alive",
        "last_read",
        "length_known",
        "no_body",
        "paused",
        "received",
        "status",
        "stray_bytes",
    )

    def __init__(self, connection: Connection, no_body: bool, now: float) -> None:
        self._connection = connection
        self.no_body = no_body  # the answer to HEAD: no body, whatever its headers say
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.head_bytes = 0  # bytes read before the head ended
        self.header_bytes = 0  # names and values of the head, however they arrived
        self.done = False
        self.error: UpstreamError | None = None
        self.keep_alive = False
        self.length_known = False
        self.chunked = False
        self.received = 0
        self.paused = False
        self.body_reads = 0  # parser calls that delivered body bytes
        self.stray_bytes = 0  # bytes since the head without body bytes: chunk framing, trailers
        self.last_read = now
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None

    # -- for the gateway ------------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """The body has been read to its end: the next :meth:`read` returns ``b""``."""
        return self.done and not self._buffer and self.error is None

    @property
    def ready(self) -> bool:
        """:meth:`read` would return without waiting: body bytes, the body's end or an error are here."""
        return bool(self._buffer) or self.done or self.error is not None

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
                if self.paused:
                    self.paused = False
                    self._connection.resume_reading()
                return data
            if self.error is not None:
                raise self._error_copy()
            if self.done:
                return b""
            await self._wait()

    async def aclose(self) -> None:
        """Done with this answer: its connection goes back to the pool after a complete body, and
        is dropped otherwise (mid-stream, that stops the upstream's work)."""
        self.close()

    def close(self) -> None:
        """:meth:`aclose` without the coroutine, for code that cannot await (a ``finally``)."""
        reusable = self.done and self.keep_alive and self.error is None
        self._connection.response_closed(self, reusable)

    # -- for the connection's parser --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        name = name.lower()
        if name == b"content-length":
            self.length_known = True
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            self.chunked = True
        self.headers.append((name, value))

    def on_interim(self) -> None:
        """An interim answer (100 Continue, 103 Early Hints) ended: the real one follows."""
        self.headers = []
        self.length_known = self.chunked = False

    def on_head(self, status: int) -> None:
        self.status = status
        self.head_done = True
        if self.no_body:
            self.done = True
            self.keep_alive = False
        self._wake()

    def on_body(self, data: bytes) -> None:
        self.body_reads += 1
        if self.no_body:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= HIGH_WATER and not self.paused:
            self.paused = True
            self._connection.pause_reading()
        self._wake()

    def on_end(self, keep_alive: bool) -> None:
        self.done = True
        self.keep_alive = keep_alive
        self._wake()

    def on_connection_lost(self, exc: Exception | None) -> None:
        if self.done or self.error is not None:
            return
        if self.head_done and not self.length_known and not self.chunked and exc is None:
            self.done = True  # a body delimited by the connection's end (RFC 9112 6.3, item 8)
        else:
            self.error = UpstreamError("the upstream closed the connection before the response was complete")
        self._wake()

    def fail(self, error: UpstreamError) -> None:
        """The answer cannot go on; the connection is dropped."""
        if self.error is None and not self.done:
            self.error = error
        self._connection.abort()
        self._wake()

    def check_silence(self, now: float, timeout: float) -> None:
        """Fail with UpstreamTimeout if nothing arrived for ``timeout`` seconds while the gateway
        was reading (a paused answer waits on the gateway's own client, not on the upstream)."""
        if not self.paused and now - self.last_read >= timeout:
            self.fail(UpstreamTimeout(f"the upstream sent nothing for {timeout:g} s"))

    # -- internals ----------------------------------------------------------------------------------

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _error_copy(self) -> UpstreamError:
        # A fresh exception each time: the stored one, once raised, would hold a traceback whose
        # frames hold this response, a cycle that keeps the whole request alive until a full gc.
        assert self.error is not None
        return type(self.error)(*self.error.args)
