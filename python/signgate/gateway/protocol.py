"""uvicorn's httptools protocol with the limits a public-facing server needs on the request head.

uvicorn bounds neither the time nor the size of a request head: a client that sends a header a
byte at a time holds its connection forever (slowloris), and one that never ends its headers
grows the process without limit. :class:`GatewayHttpProtocol` adds both bounds, and answers
requests that are not HTTP with the gateway's JSON error instead of uvicorn's plain text:

- the request head must be complete within ``header_timeout`` seconds of the connection opening
  or of the previous response ending; otherwise the connection is closed (with a 408 if part of
  a head had arrived);
- a head that grows past ``max_head_bytes`` is answered 431 and the connection closed, without
  waiting for its end; so is a chunked body's trailer section (uvicorn would add every trailer
  field to the request's headers, without limit), whose fields are otherwise dropped;
- at most :data:`MAX_PIPELINED` requests wait behind the running one: uvicorn parses every
  pipelined request a read holds (a 256 KiB read holds ten thousand small ones, about 10 MB of
  state), so a connection that sends more is closed;
- a response that cannot be written for ``write_timeout`` seconds (the client reads nothing, so
  its socket and the gateway's buffer stay full) drops the connection: otherwise a client that
  stops reading holds its stream, its upstream call and two descriptors until the upstream ends.

uvicorn builds the protocol itself (in each worker process), so the limits are class attributes
of a subclass :func:`protocol_class` makes for one configuration.

It also gives each request three scope extensions (see :mod:`.asgi`): ``signgate.client_lost``
tells the application the moment the client's connection is lost (under a bare ASGI server the
gateway keeps a task waiting in ``receive()`` for ``http.disconnect`` instead), and
``signgate.abort`` lets it break a response off on purpose (an upstream that broke mid-answer),
closing the connection without the final chunk and without the ERROR uvicorn logs for an
application that returns with its response unfinished; ``signgate.coalesce`` writes a response's
head together with its first body bytes, one system call instead of two, when both are at hand.

This module reads uvicorn's internals (the parser callbacks, ``pipeline``, ``headers``, the
request cycle's ``response_started``, ``response_complete``, ``disconnected`` and
``message_event``), so uvicorn's version is pinned in pyproject.toml, and
python/tests/test_protocol.py fails, naming what moved, when a release changes any of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .asgi import ABORT, CLIENT_LOST, COALESCE
from .config import GatewayConfig

logger = logging.getLogger("signgate.gateway")

#: Room for the request line (a signed URL carries its upstream URL, percent-encoded) and the
#: header framing, on top of ``max_header_bytes`` which counts names and values only.
HEAD_ALLOWANCE = 16 * 1024

#: Pipelined requests that may wait behind the running one on a connection. Browsers do not
#: pipeline; a client that does needs a few at most.
MAX_PIPELINED = 16


class _TooManyPipelined(Exception):
    """Raised from a parser callback: stops parsing the rest of the read."""


class _Dropped(list[tuple[bytes, bytes]]):
    """Where trailer fields go: nowhere."""

    def append(self, item: tuple[bytes, bytes]) -> None:
        pass


_DROPPED = _Dropped()


class _Coalescing:
    """The transport a connection's request cycles write to. Writes pass straight through, except
    after :meth:`hold`: the next write (the response head) waits and goes out with the one after
    it (the first body bytes), in one system call. The protocol flushes a held head whenever the
    response ends or the connection is closed or broken off, so nothing is ever left behind."""

    __slots__ = ("_head", "_holding", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._holding = False
        self._head: bytes | None = None

    def hold(self) -> None:
        self._holding = True

    def write(self, data: bytes) -> None:
        if self._holding:
            head = self._head
            if head is None:
                self._head = data
                return
            self._holding, self._head = False, None
            data = head + data
        self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        self._holding, self._head = False, None
        if head is not None:
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


def _error_response(status: bytes, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "request_id": os.urandom(8).hex()}}).encode()
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body) + 1).encode() + b"\r\n",
            b"cache-control: no-store\r\n",
            b"x-signgate-error: " + code.encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
            b"\n",
        ]
    )


class GatewayHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with deadlines for the request head and for writing, a head size cap, and
    the lost-connection hook (see the module docstring)."""

    header_timeout: ClassVar[float] = 10.0
    max_head_bytes: ClassVar[int] = 16 * 1024 + HEAD_ALLOWANCE
    write_timeout: ClassVar[float] = 30.0

    # Slots, not the instance dict: uvicorn's own attributes fill it close to the 30 keys CPython
    # shares between instances, and ours on top made every connection's dict its own (1.3 KB more).
    __slots__ = (
        "_bodies",
        "_head_bytes",
        "_head_started",
        "_head_timer",
        "_heads_done",
        "_in_head",
        "_lost",
        "_on_lost",
        "_out",
        "_running",
        "_trailer_bytes",
        "_write_timer",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # from the end of one request (or the connection's start) to the end of the next head
        self._head_started = False  # a byte of that next head has arrived
        self._head_bytes = 0
        self._heads_done = 0
        self._bodies = 0  # parser calls that delivered body bytes
        self._trailer_bytes = 0  # bytes read inside a body since its last body bytes
        self._on_lost: Callable[[], None] | None = None  # the running request's callback, if it set one
        self._lost = False
        self._running: RequestResponseCycle | None = None  # whose application runs (not self.cycle if pipelined)
        self._write_timer: asyncio.TimerHandle | None = None  # armed while writing is paused

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._out = _Coalescing(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_write_timer()
        super().connection_lost(exc)
        # uvicorn marks only the newest cycle disconnected: with a request pipelined behind it,
        # the running one would return as told (client gone) while uvicorn, thinking it was not,
        # logged an ERROR and wrote a 500 into the closed transport, which raised.
        running = self._running
        if running is not None and not running.response_complete:
            running.disconnected = True
            running.message_event.set()
        self._lost = True
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()

    def data_received(self, data: bytes) -> None:
        in_head_before, heads_before, bodies_before = self._in_head, self._heads_done, self._bodies
        super().data_received(data)
        if self.transport.is_closing():
            return
        if not self._in_head:
            # Inside a body, reads that bring no body bytes carry chunk framing or the trailer
            # section: held to the head's limit, as the trailer section is a second head.
            if self._bodies == bodies_before and heads_before == self._heads_done:
                self._trailer_bytes += len(data)
                if self._trailer_bytes > self.max_head_bytes:
                    logger.info("closed a connection whose chunked trailer section exceeded %d bytes",
                                self.max_head_bytes)  # fmt: skip
                    message = f"the request's trailer section exceeds {self.max_head_bytes} bytes"
                    self._refuse(b"431 Request Header Fields Too Large", "headers_too_large", message)
            else:
                self._trailer_bytes = 0
            return
        # Count the reads that began and ended inside the same head. A read that began inside a
        # body (and may end with the start of the next head) is not counted, so a large body is
        # never mistaken for a large head; the cap is then reached at most one read later.
        if in_head_before and heads_before == self._heads_done:
            self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            logger.info("closed a connection whose request head exceeded %d bytes", self.max_head_bytes)
            message = f"the request head exceeds {self.max_head_bytes} bytes"
            self._refuse(b"431 Request Header Fields Too Large", "headers_too_large", message)

    def on_message_begin(self) -> None:
        self._head_started = True
        super().on_message_begin()
        extensions: dict[str, Any] = {CLIENT_LOST: self._watch_lost, ABORT: self._abort, COALESCE: self._out.hold}
        self.scope["extensions"] = extensions

    def on_headers_complete(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINED:
            logger.info("closed a connection that pipelined more than %d requests", MAX_PIPELINED)
            self.transport.close()
            raise _TooManyPipelined
        self._cancel_head_timer()
        self._in_head = self._head_started = False
        self._head_bytes = 0
        self._heads_done += 1
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:  # a request to run (not an upgrade): it writes through _out
            self.cycle.transport = self._out  # type: ignore[assignment]
        # uvicorn appends every later field, the body's trailers, to the list the scope holds:
        # trailers would join the request's headers (RFC 9110 6.5.1 forbids it), and be kept.
        # Rebinding the list here costs nothing per header, as an on_header override would.
        self.headers = _DROPPED
        if not self.pipeline:  # not queued behind another request: it runs now
            self._running = self.cycle

    def on_body(self, body: bytes) -> None:
        self._bodies += 1
        self._trailer_bytes = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._trailer_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._out.flush()  # a held head whose body wrote nothing (HEAD, an empty body)
        # A request already parsed and queued behind this one (pipelining) needs no deadline.
        waiting = bool(self.pipeline)
        if waiting:
            self._running = self.pipeline[-1][0]  # the next to run: uvicorn pops the right end
        super().on_response_complete()
        if not waiting and not self.transport.is_closing():
            self._arm_head_timer()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_timer()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        logger.info("dropped a connection whose client read nothing for %g s", self.write_timeout)
        self.transport.abort()  # close() would wait for the client to read what is buffered

    def send_400_response(self, msg: str) -> None:
        self._refuse(b"400 Bad Request", "malformed", "the request is not valid HTTP/1.1")

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn logs two warnings for each upgrade request; the application refuses it in JSON
        # (400 upgrade_not_supported), and a client may send as many as it likes.
        logger.debug("an upgrade request reached the gateway, which speaks HTTP/1.1 only")

    def _abort(self) -> None:
        # The running request's response is broken off on purpose: no final chunk, and for uvicorn
        # a client that is gone, so it logs no ERROR for the unfinished response.
        running = self._running
        if running is not None:
            running.disconnected = True
        self._out.close()  # a held head first: the client sees the answer begin, then break

    def _watch_lost(self, callback: Callable[[], None] | None) -> bool:
        # Requests on one connection run one at a time (pipelined ones wait their turn), and each
        # drops its callback when it ends, so one slot is enough. A client that left before the
        # request asked (while it was verified or admitted) is reported by the return value.
        if callback is not None and self._lost:
            return True
        self._on_lost = callback
        return False

    # -- the deadline ----------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._in_head and self._head_started:
            logger.info("closed a connection whose request head took longer than %g s", self.header_timeout)
            message = f"the request headers did not arrive within {self.header_timeout:g} s"
            self._refuse(b"408 Request Timeout", "client_timeout", message)
        else:
            self.transport.close()

    def _refuse(self, status: bytes, code: str, message: str) -> None:
        self._cancel_head_timer()
        cycle = self.cycle
        # Never write into the middle of an earlier request's response (pipelining): just close.
        # But a refusal of the running request's own body (malformed framing, trailers too
        # large) before its answer has begun is written, and the application then finds its
        # client gone, so nothing it sends follows.
        own_body = not self._in_head and cycle is not None and not cycle.response_started and not self.pipeline
        if own_body:
            cycle.disconnected = True
            cycle.message_event.set()
        if own_body or cycle is None or cycle.response_complete:
            self.transport.write(_error_response(status, code, message))
        self.transport.close()


def protocol_class(config: GatewayConfig) -> type[GatewayHttpProtocol]:
    """The protocol class for ``config``'s limits, to give uvicorn as ``http``. A subclass of its
    own, so two configurations in one process (tests, an embedding application) never share it."""
    cls = type("ConfiguredGatewayHttpProtocol", (GatewayHttpProtocol,), {"__slots__": ()})
    configure_protocol(cls, config)
    return cls


def configure_protocol(cls: type[GatewayHttpProtocol], config: GatewayConfig) -> None:
    """Set ``cls``'s limits to ``config``'s (at a reload: connections read them as they go)."""
    cls.header_timeout = config.header_timeout
    cls.max_head_bytes = config.max_header_bytes + HEAD_ALLOWANCE
    cls.write_timeout = config.client_timeout
