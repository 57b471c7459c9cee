"""The gateway's upstream client against raw upstream servers on real sockets.

The gateway-level suites (test_gateway, test_faults, test_hostile) cover what a client of the
gateway sees. These cover what only the client's own behaviour decides: connection reuse and the
retry of a request on a connection the upstream closed while idle, bodies delimited by the
connection's end, HEAD, interim 1xx answers, the response-head cap, the read timeout, backpressure
and TLS.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvloop

from signgate.errors import ForbiddenAddress, UpstreamError, UpstreamTimeout
from signgate.gateway.upstream import Pool, Response, Target
from signgate.gateway.upstream.connection import Connection

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def on_uvloop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on uvloop, the loop `signgate serve` runs the client on."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        uvloop.run(test(*args, **kwargs))

    return run


class Upstream:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0


@asynccontextmanager
async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Upstream]:
    upstream = Upstream()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream.connections += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=ssl_context)
    upstream.port = server.sockets[0].getsockname()[1]
    async with server:
        yield upstream


async def read_head(reader: asyncio.StreamReader, upstream: Upstream | None = None) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if upstream is not None:
        upstream.requests.append(head)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


def pool(**options: float) -> Pool:
    settings = {"connect_timeout": 2.0, "read_timeout": 5.0, **options}
    return Pool(allow_private=True, **settings)


async def fetch(client: Pool, port: int, method: str = "GET", path: str = "/", body: bytes = b"") -> bytes:
    response = await client.request(method, Target("http", "127.0.0.1", port, path), [], body)
    try:
        chunks = []
        while chunk := await response.read():
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        response.close()


def keep_alive_server(upstream_box: list[Upstream]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader, upstream_box[0])
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    return handler


@on_uvloop
async def test_a_connection_is_reused_and_the_request_is_framed() -> None:
    box: list[Upstream] = []
    async with serve(keep_alive_server(box)) as upstream:
        box.append(upstream)
        client = pool()
        assert await fetch(client, upstream.port, "POST", "/v1/x?q=1", b"hello") == b"ok"
        assert await fetch(client, upstream.port) == b"ok"
        await client.close()
    assert upstream.connections == 1
    post, get = upstream.requests
    assert post.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n" % upstream.port)
    assert b"content-length: 5\r\n" in post
    assert b"content-length" not in get


@on_uvloop
async def test_an_idle_connection_closed_by_the_upstream_is_retried_for_get_only() -> None:
    """The upstream answers, keeps the connection, then drops it when the next request arrives."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await read_head(reader)  # the reused connection's request: hang up without answering

    async with serve(handler) as upstream:
        client = pool()
        assert await fetch(client, upstream.port) == b"ok"
        assert await fetch(client, upstream.port) == b"ok"  # retried on a fresh connection
        assert upstream.connections == 2  # the first, dropped on reuse; a fresh one for the retry
        with pytest.raises(UpstreamError):
            await fetch(client, upstream.port, "POST", "/", b"{}")  # never sent twice
        await client.close()


@on_uvloop
async def test_a_reused_connection_that_times_out_is_not_retried() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader, box[0])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await read_head(reader, box[0])
        await asyncio.sleep(30)  # a slow upstream, not a closed one

    box: list[Upstream] = []
    async with serve(handler) as upstream:
        box.append(upstream)
        client = pool(read_timeout=0.3)
        assert await fetch(client, upstream.port) == b"ok"
        with pytest.raises(UpstreamTimeout):
            await fetch(client, upstream.port)
        await client.close()
    assert len(upstream.requests) == 2  # the timed-out GET was sent once


@on_uvloop
async def test_a_body_delimited_by_the_connection_end_is_complete() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        writer.write(b"the end")

    async with serve(handler) as upstream:
        client = pool()
        assert await fetch(client, upstream.port) == b"until the end"
        assert await fetch(client, upstream.port) == b"until the end"
        assert upstream.connections == 2
        await client.close()


@on_uvloop
async def test_a_chunked_body_cut_short_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")

    async with serve(handler) as upstream:
        client = pool()
        response = await client.request("GET", Target("http", "127.0.0.1", upstream.port, "/"), [], b"")
        assert await response.read() == b"hello"
        assert not response.complete
        with pytest.raises(UpstreamError, match="before the response was complete"):
            await response.read()
        response.close()
        await client.close()


@on_uvloop
async def test_head_answers_end_at_their_headers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serve(handler) as upstream:
        client = pool(read_timeout=1.0)
        response = await client.request("HEAD", Target("http", "127.0.0.1", upstream.port, "/"), [], b"")
        assert response.status == 200
        assert (b"content-length", b"1000") in response.headers
        assert await response.read() == b""
        response.close()
        await client.close()


@on_uvloop
async def test_interim_answers_are_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone")
        await writer.drain()

    async with serve(handler) as upstream:
        client = pool()
        response = await client.request("POST", Target("http", "127.0.0.1", upstream.port, "/"), [], b"x")
        assert response.status == 201
        assert response.headers == [(b"content-length", b"4")]
        assert await response.read() == b"done"
        assert response.complete  # known without another read
        response.close()
        await client.close()


@on_uvloop
@pytest.mark.parametrize("pieces", ["line by line", "in one write"])
async def test_an_oversized_response_head_is_refused(pieces: str) -> None:
    # In one write the whole head can arrive in one read, and be parsed to its end at once.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        lines = [b"x-filler-%d: %s\r\n" % (i, b"y" * 40) for i in range(2000)]
        if pieces == "in one write":
            writer.write(b"HTTP/1.1 200 OK\r\n" + b"".join(lines) + b"\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for line in lines:
            writer.write(line)
            await writer.drain()
        writer.write(b"\r\n")

    async with serve(handler) as upstream:
        client = pool()
        with pytest.raises(UpstreamError, match="response head exceeds"):
            await fetch(client, upstream.port)
        await client.close()


@on_uvloop
async def test_the_read_timeout_counts_silence_not_the_whole_stream() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(8):  # 1.2 s in all, never silent for more than 0.15 s
            writer.write(b"1\r\n.\r\n")
            await writer.drain()
            await asyncio.sleep(0.15)
        if b"/stall" in head:
            await asyncio.sleep(30)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with serve(handler) as upstream:
        client = pool(read_timeout=0.5)
        assert await fetch(client, upstream.port, path="/steady") == b"." * 8
        with pytest.raises(UpstreamTimeout, match=r"sent nothing for 0\.5 s"):
            await fetch(client, upstream.port, path="/stall")
        await client.close()


@on_uvloop
async def test_a_failed_response_is_freed_without_the_cycle_collector() -> None:
    """An upstream error must not tie the connection into a reference cycle: under load, cycles
    kept whole requests alive until a full collection and grew the gateway by megabytes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\n.\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    async with serve(handler) as upstream:
        client = pool(read_timeout=0.2)
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                try:
                    await fetch(client, upstream.port)
                except UpstreamTimeout:
                    pass
                else:
                    raise AssertionError("the stalled upstream did not time out")
            await asyncio.sleep(0.05)  # let the aborted transports report their loss
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            assert not [o for o in gc.garbage if isinstance(o, Connection | Response)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        await client.close()


@on_uvloop
async def test_reading_pauses_while_the_body_waits_for_a_slow_reader() -> None:
    body = bytes(range(256)) * 65536  # 16 MiB: more than loopback's socket buffers hold
    sent = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 65536):
            writer.write(body[i : i + 65536])
            await writer.drain()
        sent.set()

    async with serve(handler) as upstream:
        client = pool()
        response = await client.request("GET", Target("http", "127.0.0.1", upstream.port, "/"), [], b"")
        try:
            await asyncio.sleep(0.3)  # the reader takes nothing for a while
            assert response.paused
            assert not sent.is_set()  # the upstream is held back by TCP, not buffered in the gateway
            chunks = []
            while chunk := await response.read():
                assert len(chunk) < 512 * 1024
                chunks.append(chunk)
            assert b"".join(chunks) == body
        finally:
            response.close()
            await client.close()


@on_uvloop
async def test_private_addresses_are_refused_before_connecting() -> None:
    async with serve(keep_alive_server([])) as upstream:
        client = Pool(allow_private=False, connect_timeout=2, read_timeout=2)
        for host in ("127.0.0.1", "localhost"):
            with pytest.raises(ForbiddenAddress):
                await client.request("GET", Target("http", host, upstream.port, "/"), [], b"")
        await client.close()
    assert upstream.connections == 0


@on_uvloop
async def test_unreachable_and_bad_requests_are_upstream_errors() -> None:
    client = pool(connect_timeout=1.0)
    with pytest.raises(UpstreamError, match=r"could not connect to 127\.0\.0\.1"):
        await client.request("GET", Target("http", "127.0.0.1", 9, "/"), [], b"")  # the discard port: closed
    with pytest.raises(UpstreamError, match="cannot resolve"):
        await client.request("GET", Target("http", "no-such-host.invalid", 80, "/"), [], b"")
    with pytest.raises(UpstreamError, match="line break"):
        await client.request("GET", Target("http", "127.0.0.1", 9, "/"), [("x-a", "1\r\nx-b: 2")], b"")
    with pytest.raises(UpstreamError, match="outside Latin-1"):
        await client.request("GET", Target("http", "127.0.0.1", 9, "/"), [("x-a", "\u2603")], b"")
    with pytest.raises(UpstreamError, match="whitespace"):
        await client.request("GET", Target("http", "127.0.0.1", 9, "/a b"), [], b"")
    await client.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@on_uvloop
async def test_https_verifies_the_certificate_against_the_host_name(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    box: list[Upstream] = []
    async with serve(keep_alive_server(box), server_context) as upstream:
        box.append(upstream)
        client = Pool(allow_private=True, connect_timeout=2, read_timeout=2, ssl_context=trusting)
        for _ in range(2):
            response = await client.request("GET", Target("https", "localhost", upstream.port, "/"), [], b"")
            assert await response.read() == b"ok"
            assert await response.read() == b""
            response.close()
        assert upstream.connections == 1
        assert upstream.requests[0].startswith(b"GET / HTTP/1.1\r\nhost: localhost:%d\r\n" % upstream.port)
        with pytest.raises(UpstreamError, match=r"could not connect to 127\.0\.0\.1"):  # the name is not 127.0.0.1
            await client.request("GET", Target("https", "127.0.0.1", upstream.port, "/"), [], b"")
        await client.close()
        untrusting = Pool(allow_private=True, connect_timeout=2, read_timeout=2)
        with pytest.raises(UpstreamError, match="could not connect to localhost"):  # self-signed
            await untrusting.request("GET", Target("https", "localhost", upstream.port, "/"), [], b"")
        await untrusting.close()
