"""A cheap SSE upstream for the gateway benchmark: ``python _sse_upstream.py PORT``.

Raw asyncio protocol on uvloop, so 9,000 open streams cost it little and the proxies, not this
process, set the pace. ``GET /sse?n=20&ms=3000`` answers with ``n`` chunked events spread over
``ms`` milliseconds (the first at once, as an LLM API sends its first chunk, the last one
``data: [DONE]``) and keeps the connection open for the next request, as a pooled upstream
connection would be. Any other path gets a short 200, which serves as the health check.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import sys
from typing import cast
from urllib.parse import parse_qs, urlsplit

import uvloop

EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}\n\n'
)
DONE = b"data: [DONE]\n\n"
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


EVENT_CHUNK, DONE_CHUNK = chunk(EVENT), chunk(DONE)


class Stream(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None
        self.left = 0
        self.interval = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # The proxies send one request at a time on a connection (no pipelining), bodiless GETs.
        while self.left == 0 and (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            self.request(target)

    def request(self, target: str) -> None:
        assert self.transport is not None
        url = urlsplit(target)
        if url.path != "/sse":
            self.transport.write(OK)
            return
        query = parse_qs(url.query)
        n = max(1, int(query.get("n", ["20"])[0]))
        ms = float(query.get("ms", ["3000"])[0])
        self.interval = ms / 1000 / max(1, n - 1)
        self.left = n
        self.transport.write(HEAD)
        self.tick()

    def tick(self) -> None:
        assert self.transport is not None
        self.left -= 1
        if self.left > 0:
            self.transport.write(EVENT_CHUNK)
            self.timer = asyncio.get_running_loop().call_later(self.interval, self.tick)
        else:
            self.transport.write(DONE_CHUNK + b"0\r\n\r\n")
            self.timer = None
            if self.buffer:
                self.data_received(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stream, "127.0.0.1", port, backlog=8192, reuse_address=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
