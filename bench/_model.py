"""The benchmarks' "model": an OpenAI-shaped SSE server that takes a fixed time to answer.

``python _model.py --port P --events 20 --seconds 3`` (the key clients must send is in
``BENCH_MODEL_KEY``). A raw asyncio protocol on uvloop with httptools parsing, so a thousand
open streams cost it little and the servers under test, not this process, set the pace.

- ``POST /v1/chat/completions`` streams ``events`` chunked ``chat.completion.chunk`` events
  spread evenly over ``seconds`` (the first at once, as an LLM API sends its first chunk; the
  last followed by ``data: [DONE]``). ``?ms=5000`` overrides the duration for one request.
- ``POST /v1/small`` answers a short non-streamed ``chat.completion`` at once.
- Both need ``Authorization: Bearer <key>`` (401 otherwise), which proves the proxy added it.
- ``GET /healthz``; ``GET /stats`` gives counters, among them ``open`` (streams in flight).

Connections are kept alive between requests, as a pooled upstream connection would be.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
from collections import deque
from urllib.parse import parse_qs, urlsplit

import httptools
import uvloop

EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}\n\n'
)
DONE = b"data: [DONE]\n\n"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
SMALL_BODY = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"A short answer."},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":40,"completion_tokens":4,"total_tokens":44}}'
)

STATS = {"streams_started": 0, "streams_completed": 0, "streams_disconnected": 0, "open": 0, "small": 0, "401": 0}


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def plain(status: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (status, content_type, len(body), body)


class ModelProtocol(asyncio.Protocol):
    def __init__(self, key: bytes, events: int, seconds: float) -> None:
        self.key, self.events, self.seconds = key, events, seconds
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.requests: deque[tuple[bytes, bytes, bytes, bool]] = deque()
        self.url = b""
        self.auth = b""
        self.streaming = self.keep_alive = False
        self.timer: asyncio.TimerHandle | None = None
        self.sent, self.start, self.step = 0, 0.0, 0.0

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.auth = value

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        self.requests.append((method, self.url, self.auth, self.parser.should_keep_alive()))
        self.url, self.auth = b"", b""

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(plain(b"400 Bad Request", b'{"error":"bad request"}'))
            self.transport.close()
            return
        if not self.streaming:
            self.serve_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming:
            STATS["streams_disconnected"] += 1
            STATS["open"] -= 1
            self.streaming = False
        if self.timer is not None:
            self.timer.cancel()

    def serve_next(self) -> None:
        transport = self.transport
        assert transport is not None
        while self.requests and not self.streaming and not transport.is_closing():
            method, url, auth, keep_alive = self.requests.popleft()
            path = url.split(b"?", 1)[0]
            if path == b"/healthz":
                transport.write(plain(b"200 OK", b"ok\n", b"text/plain"))
            elif path == b"/stats":
                transport.write(plain(b"200 OK", json.dumps(STATS).encode()))
            elif auth != self.key:
                STATS["401"] += 1
                transport.write(plain(b"401 Unauthorized", b'{"error":{"code":"invalid_api_key"}}'))
            elif method == b"POST" and path == b"/v1/small":
                STATS["small"] += 1
                transport.write(plain(b"200 OK", SMALL_BODY))
            elif method == b"POST" and path == b"/v1/chat/completions":
                self.start_stream(url, keep_alive)
                return
            else:
                transport.write(plain(b"404 Not Found", b'{"error":{"code":"unknown_url"}}'))
            if not keep_alive:
                transport.close()

    def start_stream(self, url: bytes, keep_alive: bool) -> None:
        assert self.transport is not None
        seconds = self.seconds
        query = parse_qs(urlsplit(url.decode("latin-1")).query)
        if "ms" in query:
            seconds = float(query["ms"][0]) / 1000
        self.streaming, self.keep_alive = True, keep_alive
        STATS["streams_started"] += 1
        STATS["open"] += 1
        self.transport.write(STREAM_HEAD)
        loop = asyncio.get_running_loop()
        self.sent, self.start, self.step = 0, loop.time(), seconds / max(1, self.events - 1)
        self.tick()

    def tick(self) -> None:
        transport = self.transport
        assert transport is not None
        if transport.is_closing():
            return
        self.sent += 1
        if self.sent < self.events:
            transport.write(chunk(EVENT))
            self.timer = asyncio.get_running_loop().call_at(self.start + self.sent * self.step, self.tick)
            return
        transport.write(chunk(EVENT + DONE) + b"0\r\n\r\n")
        self.timer, self.streaming = None, False
        STATS["streams_completed"] += 1
        STATS["open"] -= 1
        if not self.keep_alive:
            transport.close()
        else:
            self.serve_next()


async def serve(port: int, key: bytes, events: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ModelProtocol(key, events, seconds), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=20, help="events per streamed answer (default 20)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time from first to last event (default 3)")
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    key = b"Bearer " + os.environ["BENCH_MODEL_KEY"].encode()
    uvloop.run(serve(args.port, key, args.events, args.seconds))


if __name__ == "__main__":
    main()
