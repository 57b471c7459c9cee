"""One upstream connection: an asyncio protocol feeding llhttp (``httptools``), whose callbacks fill
in the :class:`~.models.Response` being read on it.

The connection deals in bytes and HTTP framing: the caps on a response head and on bytes that
carry no body (chunk framing, trailers), a second answer nobody asked for, backpressure. What one
answer says is the response's.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

import httptools

from ...errors import UpstreamError
from .models import Response

if TYPE_CHECKING:
    from .pool import Pool

#: An upstream's status line and headers may not exceed this, nor its bytes without body bytes
#: (chunk framing, trailers) between two body reads.
MAX_HEAD = 64 * 1024


class _Unsolicited(Exception):
    """Raised from a parser callback: the upstream sent an answer nobody asked for."""


class Connection(asyncio.Protocol):
    """A kept-alive HTTP/1.1 connection to one origin (``key``: scheme, host, port)."""

    __slots__ = ("closed", "idle_since", "key", "parser", "pool", "response", "reused", "transport")

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0

    def send(self, head: bytes, body: bytes, no_body: bool) -> Response:
        """Write one request; the answer will be read into the returned response."""
        assert self.transport is not None
        response = self.response = Response(self, no_body, time.monotonic())
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        return response

    def response_closed(self, response: Response, reusable: bool) -> None:
        self.pool.response_closed(self, response, reusable and not self.closed)
        if self.response is response:
            # Apart again: no cycle between the two outlives the answer. Bytes that arrive while
            # the connection is idle answer nothing, and drop it (data_received).
            self.response = None

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection at once (mid-stream this stops the upstream's work)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes on an idle connection: nothing asked for them
            self.abort()
            return
        response.received += len(data)
        response.last_read = time.monotonic()
        head_done, body_reads = response.head_done, response.body_reads
        if not head_done:
            response.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            response.fail(UpstreamError("the upstream switched protocols"))
        except httptools.HttpParserError:
            if response.done:  # on_message_begin refused a second answer: the first stands, the connection goes
                self.abort()
            else:
                response.fail(UpstreamError("the upstream's answer is not valid HTTP"))
        else:
            if not response.head_done and response.head_bytes > MAX_HEAD:
                response.fail(UpstreamError(f"the upstream's response head exceeds {MAX_HEAD} bytes"))
            elif head_done and not response.done and response.body_reads == body_reads:
                # Past the head, reads without body bytes are chunk framing or the trailer
                # section, which llhttp parses (and httptools buffers) without limit.
                response.stray_bytes += len(data)
                if response.stray_bytes > MAX_HEAD:
                    response.fail(UpstreamError(f"the upstream sent {MAX_HEAD} bytes without body bytes"))
            else:
                response.stray_bytes = 0

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.connection_closed(self)
        del self.parser  # it holds our bound methods: break the cycle so the memory goes at once
        response, self.response = self.response, None
        if response is not None:
            response.on_connection_lost(exc)

    def pause_writing(self) -> None:
        pass  # requests are small and written once

    def resume_writing(self) -> None:
        pass

    # -- llhttp callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        assert self.response is not None
        if self.response.done:
            # A second answer after the final one, in the same read: nothing asked for it. Its
            # body would join this answer's (past the length relayed), or it would answer the
            # next request sent on this connection.
            raise _Unsolicited

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        assert response is not None
        if not response.head_done:  # else a trailer field: the head has been relayed, and trailers are not
            response.on_header(name, value)

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        if response.header_bytes > MAX_HEAD:
            # The whole head came in one read, so the count of bytes read so far never saw it grow.
            response.fail(UpstreamError(f"the upstream's response head exceeds {MAX_HEAD} bytes"))
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            response.on_interim()
        else:
            response.on_head(status)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response.on_body(body)

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        if response.head_done and not response.no_body:  # not an interim answer, nor HEAD's (done already)
            response.on_end(self.parser.should_keep_alive())
