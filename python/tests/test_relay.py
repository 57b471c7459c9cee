"""The relay step (signgate.gateway.relay): a real upstream ``Pool`` against upstream servers on
real sockets in this process, and the ASGI ``receive``/``send`` of a server (asgi_client.Peer).

Each upstream here is a few lines of raw HTTP, so a test decides exactly when each byte is sent:
a chunk is written only once the client has received the one before (streaming proven, not
assumed), an answer breaks off mid-body, or never comes while the client hangs up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgi_client import ClientLost, Peer
from servers import free_port

from signgate.errors import UpstreamTimedOut, UpstreamUnreachable
from signgate.gateway.accounting import read_json
from signgate.gateway.admission import NO_EXTENSIONS
from signgate.gateway.asgi import ABORT, CLIENT_LOST, COALESCE
from signgate.gateway.body import BufferBudget, read_body
from signgate.gateway.config import KeyConfig
from signgate.gateway.cors import Cors
from signgate.gateway.exchange import Exchange
from signgate.gateway.headers import RELAYED
from signgate.gateway.metrics import Metrics
from signgate.gateway.relay import Forward, Relay
from signgate.gateway.request import read_head
from signgate.gateway.upstream import Pool, Target
from signgate.gateway.usage import UsageTap
from signgate.revocation import Attribution

ORIGIN = "https://app.example"
CORS = Cors([ORIGIN])
KEY = KeyConfig("app", ("s",), headers=(("authorization", "Bearer sk-upstream"),))
CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# -- a raw upstream on a socket ------------------------------------------------------------------------


class Upstream:
    """What the upstream saw: connections, requests (head and body), and each connection the
    gateway closed (``hung_up`` counts them; a handler that waits for it calls :meth:`wait_eof`)."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.requests: list[bytes] = []
        self.hung_up = 0
        self._changed = asyncio.Event()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        self.changed()
        return request

    async def wait_eof(self, reader: asyncio.StreamReader) -> None:
        """Until the gateway closes the connection (what stops a model generating)."""
        await reader.read()
        self.hung_up += 1
        self.changed()

    def changed(self) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Upstream], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Upstream]:
    upstream = Upstream()
    handlers: set[asyncio.Task[Any]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream.connections += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer, upstream)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        yield upstream
    finally:
        server.close()
        for task in handlers:  # a handler still waiting for its next request
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def answer_with(response: bytes) -> Handler:
    """An upstream that answers every request on a kept-alive connection with ``response``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream) -> None:
        while True:
            await upstream.read_request(reader)
            writer.write(response)
            await writer.drain()

    return handler


# -- the gateway's side ----------------------------------------------------------------------------------


class Call:
    """One relayed request: its Peer (the server's send/receive), scope, exchange and Forward."""

    def __init__(self, port: int, *, path: str = "/v1/chat", body: bytes = b'{"prompt": "hi"}') -> None:
        self.port = port
        self.path = path
        self.data = body
        self.peer = Peer(body)
        self.extensions: dict[str, Any] = {}
        self.aborted = False
        self.budget = BufferBudget(2**20)
        self.headers = [(b"content-type", b"application/json"), (b"cookie", b"session=browser"),
                        (b"origin", ORIGIN.encode()), (b"content-length", str(len(body)).encode())]  # fmt: skip
        self.ex = Exchange.start("POST")
        self.ex.origin = ORIGIN

    def coalescing(self) -> list[int]:
        """Offer signgate serve's coalesce extension; the list records, for each call, how many
        messages had been sent by then."""
        calls: list[int] = []
        self.extensions[COALESCE] = lambda: calls.append(len(self.peer.sent))
        return calls

    def abortable(self) -> Call:
        """Offer the server's abort extension, as signgate serve does."""

        def abort() -> None:
            self.aborted = True

        self.extensions[ABORT] = abort
        return self

    @property
    def scope(self) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": self.headers,
                "extensions": self.extensions}  # fmt: skip

    async def forward(self, tap: UsageTap | None = None, wants_usage: bool = False) -> Forward:
        """What the steps before the relay leave: the body read (from the Peer, as the gateway
        reads it), and the target."""
        head = read_head(self.scope)
        body = await read_body(self.peer.receive, head, False, self.budget, max_body=2**20, timeout=10)
        target = Target("http", "127.0.0.1", self.port, self.path)
        if wants_usage:
            tap = read_json(body, head.headers, NO_EXTENSIONS, True, "POST", target.path)
        return Forward(KEY, target, body, {}, NO_EXTENSIONS, [], tap, Attribution(KEY.id, None, None, None, 0), CORS)


class Gateway:
    """A Relay with a real pool, and what it counts."""

    def __init__(self, read_timeout: float = 30) -> None:
        self.metrics = Metrics()
        self.pool = Pool(allow_private=True, connect_timeout=5, read_timeout=read_timeout)
        self.relay = Relay(lambda: self.pool, self.metrics)

    async def __call__(self, call: Call, fw: Forward | None = None) -> None:
        fw = fw or await call.forward()
        await self.relay(call.scope, call.peer.receive, call.peer.send, call.ex, fw)


def run(test: Callable[[Gateway], Awaitable[None]], read_timeout: float = 30) -> None:
    async def main() -> None:
        gateway = Gateway(read_timeout)
        try:
            await asyncio.wait_for(test(gateway), 60)
        finally:
            await gateway.pool.close()

    asyncio.run(main())


# -- streaming -------------------------------------------------------------------------------------------


def test_each_chunk_reaches_the_client_before_the_upstream_sends_the_next() -> None:
    async def test(gateway: Gateway) -> None:
        call = Call(0)
        seen: list[bytes] = []  # what the client had received when each next chunk was written
        held_while_streaming: list[int] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream) -> None:
            await upstream.read_request(reader)
            writer.write(CHUNKED)
            for i in range(3):
                event = b"data: %d\n\n" % i
                writer.write(chunk(event))
                await writer.drain()
                # The next chunk only once this one has reached the client: a relay that held
                # the answer back would wait here forever (and fail on the timeout).
                await call.peer.wait_for(2 + i)
                seen.append(call.peer.body)
                held_while_streaming.append(call.budget.used)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            await upstream.read_request(reader)  # kept alive for the next request

        async with serve(handler) as upstream:
            call.port = upstream.port
            await gateway(call)
        assert call.peer.status == 200 and call.peer.ended
        assert seen == [b"data: 0\n\n", b"data: 0\n\ndata: 1\n\n", b"data: 0\n\ndata: 1\n\ndata: 2\n\n"]
        assert call.peer.body == seen[-1]
        assert all(m.get("more_body") for m in call.peer.sent[1:4])
        assert held_while_streaming == [0, 0, 0]  # the request body was let go once it was sent
        assert (call.ex.status, call.ex.code, call.ex.bytes_out, call.ex.forwarded) == (200, "ok", 27, True)
        assert sum(gateway.metrics.upstream_duration.counts) == 1

    run(test)


def test_the_answer_and_its_headers_as_the_browser_may_see_them() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\nset-cookie: up=1\r\n"
        b'x-request-id: upstream-id\r\nserver: model-server\r\nx-upstream: yes\r\n\r\n{"ok": true}'
    )

    async def test(gateway: Gateway) -> None:
        async with serve(answer_with(answer)) as upstream:
            call = Call(upstream.port)
            await gateway(call)
            again = Call(upstream.port)
            await gateway(again)
            assert upstream.connections == 1  # a complete answer gives its connection back to the pool
        headers = call.peer.headers
        assert call.peer.body == b'{"ok": true}' and call.peer.ended
        assert (headers[b"content-type"], headers[b"content-length"], headers[b"x-upstream"]) == (
            b"application/json", b"12", b"yes"
        )  # fmt: skip
        assert headers[b"x-request-id"] == call.ex.request_id.encode()
        assert b"set-cookie" not in headers and b"server" not in headers
        assert all(headers[name] == value for name, value in RELAYED)
        assert headers[b"access-control-allow-origin"] == ORIGIN.encode()
        request = upstream.requests[0]
        assert request.startswith(b"POST /v1/chat HTTP/1.1\r\n")
        assert b"authorization: Bearer sk-upstream\r\n" in request and b"cookie" not in request
        assert request.endswith(b'\r\n\r\n{"prompt": "hi"}')
        assert sum(gateway.metrics.upstream_ttfb.counts) == 2

    run(test)


def test_an_upstream_error_status_is_relayed_as_the_upstreams() -> None:
    answer = b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\nslow"

    async def test(gateway: Gateway) -> None:
        async with serve(answer_with(answer)) as upstream:
            call = Call(upstream.port)
            await gateway(call)
        assert (call.peer.status, call.peer.headers[b"retry-after"], call.peer.body) == (429, b"7", b"slow")
        assert (call.ex.status, call.ex.code) == (429, "upstream_status")

    run(test)


def test_an_answer_without_a_body_names_no_length() -> None:
    """A 204 or 304 has no body whatever length the upstream names: the server would otherwise
    fail the response for the missing bytes."""

    async def test(gateway: Gateway) -> None:
        async with serve(answer_with(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n")) as upstream:
            call = Call(upstream.port)
            await gateway(call)
        assert call.peer.status == 204 and b"content-length" not in call.peer.headers
        assert call.peer.body == b"" and call.peer.ended

    run(test)


def test_the_usage_chunk_the_gateway_asked_for_is_taken_out_of_the_stream() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    events = [
        b'data: {"choices": [{"delta": {"content": "ab"}}]}\n\n',
        b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    ]
    answer = b"".join(events)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(answer)

    async def test(gateway: Gateway) -> None:
        async with serve(answer_with(head + answer)) as upstream:
            call = Call(
                upstream.port, path="/v1/chat/completions", body=b'{"model": "m", "stream": true, "messages": []}'
            )
            fw = await call.forward(wants_usage=True)
            assert fw.tap is not None and fw.tap.strip_usage_chunk
            await gateway(call, fw)
        assert b'"include_usage":true' in upstream.requests[0]  # asked, as the body was rewritten
        assert call.peer.body == events[0] + events[2] and call.peer.ended
        assert b"content-length" not in call.peer.headers  # the body shrank: the server frames it
        assert call.ex.bytes_out == len(call.peer.body)
        fw.tap.finish()
        assert fw.tap.tokens() == (5, 2, 7, False)

    run(test)


def test_a_small_answer_that_arrived_whole_asks_for_its_head_to_go_with_its_body() -> None:
    async def test(gateway: Gateway) -> None:
        async with serve(answer_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")) as upstream:
            call = Call(upstream.port)
            asked = call.coalescing()
            await gateway(call)
        assert asked == [0]  # before http.response.start
        assert call.peer.body == b"ok" and call.peer.ended

    run(test)


def test_a_head_whose_body_has_not_arrived_goes_out_at_once() -> None:
    async def test(gateway: Gateway) -> None:
        call = Call(0)
        asked = call.coalescing()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream) -> None:
            await upstream.read_request(reader)
            writer.write(CHUNKED)
            await writer.drain()
            await call.peer.wait_for(1)  # the client has the head before any event exists
            writer.write(chunk(b"data: late\n\n") + b"0\r\n\r\n")
            await writer.drain()
            await upstream.read_request(reader)

        async with serve(handler) as upstream:
            call.port = upstream.port
            await gateway(call)
        assert asked == []
        assert call.peer.body == b"data: late\n\n" and call.peer.ended

    run(test)


# -- failures before the answer: refusals ------------------------------------------------------------------


def test_an_unreachable_upstream_is_refused_and_nothing_was_sent() -> None:
    async def test(gateway: Gateway) -> None:
        call = Call(free_port())
        with pytest.raises(UpstreamUnreachable) as refused:
            await gateway(call)
        assert "(127.0.0.1)" in refused.value.message
        assert call.peer.sent == [] and not call.ex.forwarded  # not accounted: it never left
        assert call.budget.used == 0

    run(test)


def test_an_upstream_that_closes_without_answering_may_have_had_the_request() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream) -> None:
        await upstream.read_request(reader)

    async def test(gateway: Gateway) -> None:
        async with serve(handler) as upstream:
            call = Call(upstream.port)
            with pytest.raises(UpstreamUnreachable):
                await gateway(call)
            assert upstream.connections == 1  # a POST is not sent twice
        assert call.peer.sent == [] and call.ex.forwarded  # accounted: the model may have run

    run(test)


def test_an_upstream_silent_before_its_head_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream) -> None:
        await upstream.read_request(reader)
        await upstream.wait_eof(reader)

    async def test(gateway: Gateway) -> None:
        async with serve(handler) as upstream:
            call = Call(upstream.port)
            with pytest.raises(UpstreamTimedOut) as refused:
                await gateway(call)
            await upstream.until(lambda: upstream.hung_up == 1)
        assert (refused.value.status, call.peer.sent) == (504, [])

    run(test, read_timeout=0.5)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"HTTP/1.1 600 Beyond\r\ncontent-length: 0\r\n\r\n",
    ],
    ids=["101", "600"],
)
def test_an_answer_http_cannot_carry_on_is_refused_before_anything_is_sent(answer: bytes) -> None:
    async def test(gateway: Gateway) -> None:
        async with serve(answer_with(answer)) as upstream:
            call = Call(upstream.port)
            with pytest.raises(UpstreamUnreachable, match="not valid HTTP"):
                await gateway(call)
        assert call.peer.sent == []

    run(test)


# -- failures during the answer: a broken stream, never a clean end ---------------------------------------


async def broken_after_one_chunk(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream
) -> None:
    await upstream.read_request(reader)
    writer.write(CHUNKED + chunk(b"data: partial\n\n"))
    await writer.drain()
    writer.close()  # no final chunk


@pytest.mark.parametrize("abort", [True, False], ids=["signgate serve", "another server"])
def test_an_upstream_that_breaks_off_breaks_the_clients_stream(abort: bool) -> None:
    async def test(gateway: Gateway) -> None:
        async with serve(broken_after_one_chunk) as upstream:
            call = Call(upstream.port)
            if abort:
                call.abortable()
            await gateway(call)
        assert call.peer.status == 200 and call.peer.body == b"data: partial\n\n"
        assert not call.peer.ended  # no clean end: the client sees the stream broken
        assert call.aborted is abort
        assert (call.ex.status, call.ex.code) == (200, "upstream_broken")

    run(test)


def test_an_upstream_silent_mid_answer_times_out_as_a_broken_stream() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream) -> None:
        await upstream.read_request(reader)
        writer.write(CHUNKED + chunk(b"data: first\n\n"))
        await writer.drain()
        await upstream.wait_eof(reader)

    async def test(gateway: Gateway) -> None:
        async with serve(handler) as upstream:
            call = Call(upstream.port).abortable()
            await gateway(call)
            await upstream.until(lambda: upstream.hung_up == 1)  # the gateway dropped the connection
        assert call.aborted and not call.peer.ended
        assert call.ex.code == "upstream_timeout"

    run(test, read_timeout=0.5)


# -- the client hangs up: the upstream call is dropped ---------------------------------------------------


def silent_after(first: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream) -> None:
        await upstream.read_request(reader)
        if first:
            writer.write(first)
            await writer.drain()
        await upstream.wait_eof(reader)

    return handler


@pytest.mark.parametrize("when", ["before the head", "mid-stream"])
@pytest.mark.parametrize("server", ["client_lost", "receive"])
def test_a_client_hang_up_drops_the_upstream_call(when: str, server: str) -> None:
    first = CHUNKED + chunk(b"data: first\n\n") if when == "mid-stream" else b""

    async def test(gateway: Gateway) -> None:
        async with serve(silent_after(first)) as upstream:
            call = Call(upstream.port)
            lost = ClientLost()
            if server == "client_lost":
                call.extensions[CLIENT_LOST] = lost
            relaying = asyncio.ensure_future(gateway(call))
            await upstream.until(lambda: len(upstream.requests) == 1)
            if first:
                await call.peer.wait_for(2)
            lost.lose() if server == "client_lost" else call.peer.hang_up()
            await relaying  # returns: a hang-up is no error
            await upstream.until(lambda: upstream.hung_up == 1)  # so the model stops generating
        assert (call.ex.status, call.ex.code) == (499, "client_disconnected")
        assert not call.peer.ended

    run(test)


def test_a_client_gone_before_the_relay_sends_nothing_upstream() -> None:
    async def test(gateway: Gateway) -> None:
        async with serve(answer_with(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")) as upstream:
            call = Call(upstream.port)
            call.extensions[CLIENT_LOST] = ClientLost(gone=True)
            await gateway(call)
            assert upstream.connections == 0
        assert (call.ex.status, call.ex.code, call.peer.sent) == (499, "client_disconnected", [])

    run(test)
