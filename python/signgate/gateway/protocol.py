"""``signgate serve``'s HTTP/1.1 server protocol: llhttp (httptools) parsing, the ASGI request cycle,
and the limits a public-facing server needs; uvicorn runs it (sockets, workers, signals, shutdown).

It speaks ASGI to any application, as uvicorn's own httptools protocol does, with less work per
request (bench/bench_layers.py measures what uvicorn's request cycle cost the gateway: a third of
its CPU per small request): one timer per connection instead of two, the response head checked
with one search over all its names and one over all its values, no per-request event objects.
On top of what uvicorn does, it bounds what a hostile client can hold:

- the request head must be complete within ``header_timeout`` seconds of the connection opening
  or of the previous response ending; otherwise the connection is closed (with a 408 if part of
  a head had arrived); a kept-alive connection with no byte of a next request is closed after
  uvicorn's ``timeout_keep_alive``. That includes the rest of a request body still arriving after
  its answer (a refusal given before the body was read): it is read and dropped for that long, as
  nginx's lingering close does, and not for as long as a client keeps trickling it (uvicorn's
  timer restarted on every byte);
- a head that grows past ``max_head_bytes`` is answered 431 and the connection closed, without
  waiting for its end; so is a chunked body's trailer section, whose fields are dropped (RFC 9110
  6.5.1: trailers never join the request's headers);
- at most :data:`MAX_PIPELINED` requests wait behind the running one (a 256 KiB read may hold ten
  thousand small ones); a connection that sends more is closed;
- a response that cannot be written for ``write_timeout`` seconds (the client reads nothing)
  drops the connection, so a client that stops reading cannot hold its stream, its upstream call
  and two descriptors until the upstream ends;
- requests that are not HTTP are answered with the gateway's JSON error.

Each request's scope carries three extensions (see :mod:`.asgi`): ``signgate.client_lost`` tells
the application the moment the client's connection is lost, ``signgate.abort`` breaks a response
off on purpose (the client sees a broken stream, and nothing is logged as an error), and
``signgate.coalesce`` writes a response's head together with its first body bytes.

uvicorn builds the protocol itself (in each worker process), with the keyword arguments
``config``, ``server_state`` and ``app_state``, and calls :meth:`~GatewayHttpProtocol.shutdown` on
each connection at a graceful shutdown; the limits are class attributes of a subclass
:func:`protocol_class` makes for one configuration. python/tests/test_protocol.py checks the parts
of uvicorn this relies on.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import httptools

from .asgi import ABORT, CLIENT_LOST, COALESCE, Message, Scope
from .config import GatewayConfig
from .exchange import request_id
from .headers import writable

if TYPE_CHECKING:
    from uvicorn import Config
    from uvicorn.server import ServerState

logger = logging.getLogger("signgate.gateway")

#: Room for the request line (a signed URL carries its upstream URL, percent-encoded) and the
#: header framing, on top of ``max_header_bytes`` which counts names and values only.
HEAD_ALLOWANCE = 16 * 1024

#: Pipelined requests that may wait behind the running one on a connection. Browsers do not
#: pipeline; a client that does needs a few at most.
MAX_PIPELINED = 16

#: Request body bytes buffered for the application before the connection stops reading.
HIGH_WATER = 65536


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINE = {status: _status_line(status) for status in range(100, 600)}
_ASGI = {"version": "3.0", "spec_version": "2.3"}  # the same for every request: one dict, not one each


# How a response's body is delimited (RFC 9112 6.3).
_LENGTH, _CHUNKED, _NO_BODY, _UNTIL_CLOSE = "content-length", "chunked", "no body", "until close"


class _TooManyPipelined(Exception):
    """Raised from a parser callback: stops parsing the rest of the read."""


class _Coalescing:
    """The transport a connection's requests write to. Writes pass straight through, except after
    :meth:`hold`: the next write (the response head) waits and goes out with the one after it (the
    first body bytes), in one system call. The protocol flushes a held head whenever the response
    ends or the connection is closed or broken off, so nothing is ever left behind."""

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


def _error_response(status: bytes, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "request_id": request_id()}}).encode()
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


class Cycle:
    """One request on a connection: its scope, the body the application has yet to receive, and
    the response as written so far. ``receive`` and ``send`` are the application's ASGI callables."""

    __slots__ = (
        "_connection",
        "_delivered",
        "_expect_100",
        "_framing",
        "_left",
        "_waiter",
        "body",
        "buffered",
        "disconnected",
        "keep_alive",
        "more_body",
        "response_complete",
        "response_started",
        "scope",
    )

    def __init__(self, connection: GatewayHttpProtocol, scope: Scope, keep_alive: bool, expect_100: bool) -> None:
        self._connection = connection
        self.scope = scope
        self.keep_alive = keep_alive
        self._expect_100 = expect_100
        self.body: list[bytes] = []  # received, not yet given to the application
        self.buffered = 0  # bytes in it
        self.more_body = True
        self._delivered = False  # the body's last message was given
        self._waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._framing = _LENGTH  # how the response's body is delimited, once its head is written
        self._left = 0  # bytes the response's content-length still promises

    async def run(self, app: Any) -> None:
        connection = self._connection
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            logger.error("Exception in ASGI application", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                connection.transport.close()
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned %r", result)
                connection.transport.close()
            elif not self.response_started and not self.disconnected:
                logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing response.")
                connection.transport.close()
        finally:
            # Nothing the application's leftovers send or receive reaches the connection now, and
            # the two no longer hold each other (the connection is freed without the gc).
            self.disconnected, self._expect_100 = True, False
            self._connection = _DONE

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI -------------------------------------------------------------------------------------

    async def receive(self) -> Message:
        connection = self._connection
        if self._expect_100 and not connection.transport.is_closing():
            connection.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._expect_100 = False
        if not (self.disconnected or self.response_complete):
            # Read on, as uvicorn does: even with requests pipelined behind this one, so that a
            # client that leaves is seen leaving (the pipeline stays capped).
            connection.resume_reading()
        while not (self.disconnected or self.response_complete):
            if self.body or not (self.more_body or self._delivered):
                chunks, self.body, self.buffered = self.body, [], 0
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._delivered = not self.more_body
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            connection.resume_reading()
            waiter = self._waiter = connection.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        connection = self._connection
        if connection.write_paused and not self.disconnected:
            await connection.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
            head = self._head(message["status"], message.get("headers", ()))  # raises before anything is written
            self.response_started = True
            self._expect_100 = False
            connection.out.write(head)
        elif not self.response_complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
            body = message.get("body", b"")
            more_body = message.get("more_body", False)
            framing = self._framing
            if framing is _LENGTH:
                if len(body) > self._left:
                    raise RuntimeError("Response content longer than Content-Length")
                self._left -= len(body)
            elif framing is _CHUNKED:
                if body:
                    body = b"%x\r\n%b\r\n" % (len(body), body)
                if not more_body:
                    body += b"0\r\n\r\n"
            elif framing is _NO_BODY:
                body = b""  # HEAD, 204, 304: the head said what the body would be
            # _UNTIL_CLOSE: the body as it comes, and the connection's end ends it
            if body:
                connection.out.write(body)
            if not more_body:
                if self._left and framing is _LENGTH:
                    raise RuntimeError("Response content shorter than Content-Length")
                self.response_complete = True
                self.wake()
                if not self.keep_alive:
                    connection.out.close()
                connection.on_response_complete()
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}' sent, after response already completed.")

    def _head(self, status: int, headers: Any) -> bytes:
        headers = [*self._connection.server_state.default_headers, *headers]  # uvicorn renews Date each second
        if not writable(headers):
            raise RuntimeError("Invalid HTTP header name or value.")
        lines = [STATUS_LINE[status]]
        closing = False
        framing = None
        for name, value in headers:
            name = name.lower()
            if name == b"content-length" and framing is None:
                self._left = int(value.decode())
                framing = _LENGTH
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self._left = 0
                framing = _CHUNKED
            elif name == b"connection" and b"close" in [token.strip().lower() for token in value.split(b",")]:
                self.keep_alive = False
                closing = True
            lines += (name, b": ", value, b"\r\n")
        if self.scope["method"] == "HEAD" or status in (204, 304):
            framing = _NO_BODY  # whatever the head says the body would be
        elif framing is None:  # a streamed body of unknown length
            if self.scope["http_version"] == "1.0":  # no chunked encoding in HTTP/1.0: the close ends it
                framing = _UNTIL_CLOSE
                self.keep_alive = False
            else:
                framing = _CHUNKED
                lines.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive and not closing:
            lines.append(b"connection: close\r\n")
        self._framing = framing
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _send_500(self) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"21"),
            (b"connection", b"close"),
        ]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error", "more_body": False})


class GatewayHttpProtocol(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    header_timeout: ClassVar[float] = 10.0
    max_head_bytes: ClassVar[int] = 16 * 1024 + HEAD_ALLOWANCE
    write_timeout: ClassVar[float] = 30.0

    __slots__ = (
        "_bodies",
        "_client",
        "_expect_100",
        "_extensions",
        "_head_bytes",
        "_head_started",
        "_heads_done",
        "_idle_since",
        "_in_head",
        "_keepalive",
        "_lost",
        "_on_lost",
        "_read_paused",
        "_running",
        "_server",
        "_silent_for",
        "_timer",
        "_timer_at",
        "_trailer_bytes",
        "_waiting",
        "_writable",
        "_write_timer",
        "app",
        "cycle",
        "headers",
        "loop",
        "out",
        "parser",
        "pipeline",
        "scope",
        "server_state",
        "transport",
        "url",
        "write_paused",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self._keepalive = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        # Answer the first of pipelined requests even when it asks to close (as uvicorn does).
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.out: _Coalescing = None  # type: ignore[assignment]
        # Parsed, waiting for the running request to end, oldest first. A list: an empty deque
        # takes 600 bytes, on every connection, for what browsers never do.
        self.pipeline: list[Cycle] = []
        self.cycle: Cycle | None = None  # the request parsed last
        self._running: Cycle | None = None  # the request whose application runs
        self.scope: Scope = {}
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self._expect_100 = False
        self._extensions: dict[str, Any] = {}
        self._server: tuple[str, int] | None = None
        self._client: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the head deadline, or the idle keep-alive
        self._timer_at = 0.0  # when it fires
        self._waiting = True  # for a request's head: not running one
        self._idle_since = 0.0  # since when
        self._silent_for = 0.0  # how long the connection may then stay silent
        self._in_head = True  # from the end of one request (or the connection's start) to the end of the next head
        self._head_started = False  # a byte of that next head has arrived
        self._head_bytes = 0
        self._heads_done = 0
        self._bodies = 0  # parser calls that delivered body bytes
        self._trailer_bytes = 0  # bytes read inside a body since its last body bytes
        self._on_lost: Callable[[], None] | None = None  # the running request's callback, if it set one
        self._lost = False
        self._read_paused = False
        self.write_paused = False
        self._writable: asyncio.Future[None] | None = None  # while writing is paused
        self._write_timer: asyncio.TimerHandle | None = None  # armed while writing is paused

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.out = _Coalescing(self.transport)
        # The same functions serve every request on the connection (one runs at a time).
        self._extensions = {CLIENT_LOST: self._watch_lost, ABORT: self._abort, COALESCE: self.out.hold}
        self.server_state.connections.add(self)  # type: ignore[arg-type]  # uvicorn lists its own classes
        self._server = _address(transport.get_extra_info("sockname"))
        self._client = _address(transport.get_extra_info("peername"))
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._cancel_timer()
        self._cancel_write_timer()
        self._lost = True
        for cycle in (self._running, self.cycle, *self.pipeline):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
            if cycle is not None:
                cycle.wake()
        self.resume_writing()
        if exc is None:
            self.transport.close()
        self.parser = None  # type: ignore[assignment]  # it holds our bound methods
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()

    def eof_received(self) -> None:
        pass  # the response being written still goes out; the transport then closes

    def data_received(self, data: bytes) -> None:
        in_head_before, heads_before, bodies_before = self._in_head, self._heads_done, self._bodies
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request runs as HTTP and the application refuses the upgrade in JSON; a client
            # may send as many as it likes, so this is no warning.
            logger.debug("an upgrade request reached the gateway, which speaks HTTP/1.1 only")
        except httptools.HttpParserError as exc:
            # A callback may refuse (too many pipelined) or find the URL unparsable: the client's
            # fault. Anything else raised there is a bug, logged.
            if isinstance(exc, httptools.HttpParserCallbackError) and not isinstance(
                exc.__context__, (_TooManyPipelined, httptools.HttpParserError)
            ):
                logger.error("unexpected error while parsing a request", exc_info=exc.__context__)
            if not self.transport.is_closing():  # closed already by a callback (too many pipelined)
                self._refuse(b"400 Bad Request", "malformed", "the request is not valid HTTP/1.1")
            return
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

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            self._writable = self.loop.create_future()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            writable, self._writable = self._writable, None
            if writable is not None and not writable.done():
                writable.set_result(None)
        self._cancel_write_timer()

    # -- for uvicorn's server ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """A graceful shutdown: close the connection now if idle, else after its response."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False

    # -- the parser's callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_started = True
        self.url = b""
        self._expect_100 = False
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer field: dropped (and its section bounded in data_received)
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace, which is not the value's (RFC 9110 5.5)
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect_100 = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINED:
            logger.info("closed a connection that pipelined more than %d requests", MAX_PIPELINED)
            self.transport.close()
            raise _TooManyPipelined
        # First what may refuse the request (HttpParserInvalidURLError: llhttp accepts targets such as
        # "http://h:99999/" that parse_url does not), while the connection still reads a head: the
        # refusal must not be taken for the running request's answer (see _refuse).
        url = httptools.parse_url(self.url)
        self._waiting = False  # the deadlines end here (the timer, if pending, will find it so)
        self._in_head = self._head_started = False
        self._head_bytes = 0
        self._heads_done += 1
        parser = self.parser
        version = parser.get_http_version()
        self.url = b""  # not held while the request runs (a signed URL is long)
        # An absolute-form target may have no path ("http://host"): its path is "/" (RFC 9112 3.3).
        raw_path = url.path or b"/"
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        self.scope = scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self._server,
            "client": self._client,
            "scheme": "http",
            "root_path": "",
            "method": parser.get_method().decode("ascii"),
            "path": path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self.headers,
            "extensions": self._extensions,
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        previous = self.cycle
        # An HTTP/1.0 client gets no 1xx answer (RFC 9110 15.2): it would take it for the final one.
        self.cycle = cycle = Cycle(self, scope, keep_alive, self._expect_100 and version != "1.0")
        if previous is None or previous.response_complete:
            self._start(cycle)
        else:  # pipelined behind a request still running: it waits, and so does reading
            self.pause_reading()
            self.pipeline.append(cycle)

    def on_body(self, body: bytes) -> None:
        self._bodies += 1
        self._trailer_bytes = 0
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        cycle.body.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._trailer_bytes = 0
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.wake()

    # -- requests ----------------------------------------------------------------------------------

    def _start(self, cycle: Cycle) -> None:
        self._running = cycle
        tasks = self.server_state.tasks
        task = self.loop.create_task(cycle.run(self.app))
        task.add_done_callback(tasks.discard)
        tasks.add(task)

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        self.out.flush()  # a held head whose body wrote nothing (HEAD, an empty body)
        if self.transport.is_closing():
            return
        self.resume_reading()
        if self.pipeline:
            self._start(self.pipeline.pop(0))
        else:
            self._arm(min(self._keepalive, self.header_timeout))

    async def drain(self) -> None:
        writable = self._writable
        if writable is not None:
            await asyncio.shield(writable)

    def pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()

    # -- scope extensions ----------------------------------------------------------------------------

    def _abort(self) -> None:
        # The running request's response is broken off on purpose: no final chunk, and the
        # application finds its client gone, so nothing it sends after this is written.
        running = self._running
        if running is not None:
            running.disconnected = True
        self.out.close()  # a held head first: the client sees the answer begin, then break

    def _watch_lost(self, callback: Callable[[], None] | None) -> bool:
        # Requests on one connection run one at a time (pipelined ones wait their turn), and each
        # drops its callback when it ends, so one slot is enough. A client that left before the
        # request asked (while it was verified or admitted) is reported by the return value.
        if callback is not None and self._lost:
            return True
        self._on_lost = callback
        return False

    # -- deadlines -------------------------------------------------------------------------------------

    # One timer per connection, not one per request: a request's end moves the deadlines, and the
    # timer, armed once, finds out when it fires whether they have passed (then it acts) or not
    # (then it waits for the rest). Re-arming it for every request of a kept-alive connection cost
    # more than the rest of the deadline's work.

    def _arm(self, silent_for: float) -> None:
        """From now (the connection's start, or a response's end), the next request's head has
        ``header_timeout`` seconds; and a connection that stays silent, ``silent_for``."""
        now = self.loop.time()
        self._waiting = True
        self._idle_since, self._silent_for = now, silent_for
        if self._timer is None or self._timer_at > now + silent_for:
            self._schedule(now + silent_for)

    def _schedule(self, at: float) -> None:
        self._cancel_timer()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._waiting:
            return  # a request runs: its response's end arms the deadlines again
        if self._head_started:
            deadline = self._idle_since + self.header_timeout
        else:
            deadline = self._idle_since + min(self._silent_for, self.header_timeout)
        if self.loop.time() < deadline:
            self._schedule(deadline)
        elif not self._head_started:  # silent: a kept-alive connection nobody uses
            self.transport.close()
        else:
            logger.info("closed a connection whose request head took longer than %g s", self.header_timeout)
            message = f"the request headers did not arrive within {self.header_timeout:g} s"
            self._refuse(b"408 Request Timeout", "client_timeout", message)

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        logger.info("dropped a connection whose client read nothing for %g s", self.write_timeout)
        self.transport.abort()  # close() would wait for the client to read what is buffered

    def _refuse(self, status: bytes, code: str, message: str) -> None:
        self._cancel_timer()
        cycle = self.cycle
        # Never write into the middle of an earlier request's response (pipelining): just close.
        # But a refusal of the running request's own body (malformed framing, trailers too
        # large) before its answer has begun is written, and the application then finds its
        # client gone, so nothing it sends follows.
        own_body = not self._in_head and cycle is not None and not cycle.response_started and not self.pipeline
        if own_body:
            assert cycle is not None
            cycle.disconnected = True
            cycle.wake()
        if own_body or cycle is None or cycle.response_complete:
            self.transport.write(_error_response(status, code, message))
        self.transport.close()


class _Finished:
    """Where a cycle whose application has returned points instead of its connection."""

    write_paused = False


_DONE: Any = _Finished()


def _address(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


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
