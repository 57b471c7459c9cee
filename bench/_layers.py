"""The servers of ``bench_layers.py``: the same proxying, one layer of machinery added at a time.

``python _layers.py LAYER PORT UPSTREAM_PORT`` serves, on PORT, the
upstream's ``/1k`` over one kept-alive upstream connection per client connection (or per request
in flight), with an ``Authorization`` header added, as the proxies of ``bench_gateway.py`` do:

- ``bare``: an asyncio protocol feeding llhttp (httptools) on uvloop, everything in callbacks: the
  least a Python proxy does per request (two reads, two writes, two parses);
- ``task``: the same with a task per request awaiting a future for the upstream's answer, as
  every coroutine-based server does;
- ``uvicorn``: uvicorn (httptools, uvloop, the options ``signgate serve`` sets) around a
  ten-line ASGI application that relays through a pool of such connections: what uvicorn's own
  request cycle and the ASGI messages cost.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, ClassVar

import httptools
import uvloop

REQUEST = b"GET /1k HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer sk-bench\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n"


class Upstream(asyncio.Protocol):
    """One kept-alive connection to the upstream; ``answered`` gets each answer's body."""

    def __init__(self, answered: Any = None) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.answered = answered
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        self.answered(body)


class Bare(asyncio.Protocol):
    """A client connection; callbacks only."""

    tasks: ClassVar[set[asyncio.Future[Any]]] = set()  # held until done (the loop keeps only weak references)

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.upstream: Upstream | None = None

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.upstream is None:
            self.spawn(self.connect())
        else:
            self.upstream.transport.write(REQUEST)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.upstream = await loop.create_connection(lambda: Upstream(self.answer), "127.0.0.1", self.upstream_port)
        self.upstream.transport.write(REQUEST)

    def answer(self, body: bytes) -> None:
        self.transport.write(HEAD % len(body) + body)


class Task(Bare):
    """A client connection; a task per request."""

    def on_message_complete(self) -> None:
        self.spawn(self.handle())

    async def handle(self) -> None:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        if self.upstream is None:
            _, self.upstream = await loop.create_connection(
                lambda: Upstream(self.answer), "127.0.0.1", self.upstream_port
            )
        self.upstream.transport.write(REQUEST)
        body = await self.waiter
        self.transport.write(HEAD % len(body) + body)

    def answer(self, body: bytes) -> None:
        self.waiter.set_result(body)


def asgi_relay(upstream_port: int) -> Any:
    idle: list[Upstream] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        upstream = idle.pop() if idle else (await loop.create_connection(Upstream, "127.0.0.1", upstream_port))[1]
        waiter = loop.create_future()
        upstream.answered = waiter.set_result
        upstream.transport.write(REQUEST)
        body = await waiter
        idle.append(upstream)
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def serve(factory: Any, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


def main() -> None:
    layer, port, upstream_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if layer == "uvicorn":
        import uvicorn

        uvicorn.run(
            asgi_relay(upstream_port),
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            proxy_headers=False,
            server_header=False,
            backlog=4096,
        )
        return
    factory = {"bare": lambda: Bare(upstream_port), "task": lambda: Task(upstream_port)}[layer]
    uvloop.run(serve(factory, port))


if __name__ == "__main__":
    main()
