"""A hostile upstream on raw asyncio sockets, run as its own process: ``python fault_upstream.py PORT``.

aiohttp's server cannot misbehave on purpose (reset a connection, answer with garbage, send a
header it would never send), so this one writes bytes by hand. Every answer closes its connection
(``Connection: close``), so a gateway's upstream pool holds nothing between requests and its open
descriptors return to their baseline once traffic stops. The path picks the behaviour:

=========================  =======================================================================
``/ok``                    200 with a small JSON body (Content-Length)
``/sse?n=N&interval=S``    200, N chunked SSE events S seconds apart, ``data: [DONE]``, the final chunk
``/status/CODE``           CODE with a JSON error body (429 also carries ``Retry-After: 7``)
``/reset``                 reads the request, then resets the connection (RST) before any byte
``/stall-headers``         reads the request, answers nothing (until ``?s=`` seconds or the peer leaves)
``/stall-body``            headers and one event, then nothing
``/garbage``               bytes that are not HTTP, then close
``/half-headers``          half a status line and header, then close
``/close-mid``             headers and one chunk, then close without the final chunk
``/short-body``            Content-Length 100, 10 bytes, then close
``/bad-header``            a header value holding a control character
``/status-999``            a status code outside 100..599
``/switch``                101 Switching Protocols
``/not-modified``          304 with the Content-Length of the body it does not send (RFC 9110 8.6)
``/two-answers``           200 with a two-byte body, then at once a second answer nobody asked for
``/endless-trailers``      one chunked event, then 600 KB of trailer fields (more than a read holds)
``/no-content``            204 with a Content-Length, which RFC 9110 forbids there
``/collect``               200; what a redirect target would see (counted, never expected to be hit)
``/stats``                 JSON: requests per path, connections accepted
=========================  =======================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
from collections import Counter
from urllib.parse import parse_qs, urlsplit

stats: Counter[str] = Counter()
_CLOSE = b"Connection: close\r\n"


def _response(status: str, body: bytes, extra: bytes = b"", content_type: bytes = b"application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\n".encode()
        + b"Content-Type: "
        + content_type
        + b"\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + extra
        + _CLOSE
        + b"\r\n"
        + body
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n" + _CLOSE + b"\r\n"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)
    return method, target, headers


async def _idle(reader: asyncio.StreamReader, seconds: float) -> None:
    """Wait ``seconds``, or less if the peer closes first (so stalls do not outlive the gateway's patience)."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(1), seconds)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    stats["connections"] += 1
    try:
        request = await _read_request(reader)
        if request is None:
            return
        _, target, _ = request
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path.rstrip("/") or "/"
        name = path.rsplit("/", 1)[-1] if not path.startswith("/status/") else "status"
        if path != "/stats":
            stats[path] += 1
        await _answer(name, path, query, reader, writer)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        if not writer.is_closing():
            writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _answer(
    name: str, path: str, query: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    stall = float(query.get("s", "30"))
    if name == "stats":
        writer.write(_response("200 OK", json.dumps(stats).encode()))
    elif name in ("ok", "collect", "healthz"):
        writer.write(_response("200 OK", b'{"ok": true}\n'))
    elif name == "sse":
        writer.write(_SSE_HEAD)
        interval = float(query.get("interval", "0"))
        for i in range(int(query.get("n", "5"))):
            writer.write(_chunk(b'data: {"i": %d}\n\n' % i))
            await writer.drain()
            if interval:
                await asyncio.sleep(interval)
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    elif name == "status":
        code = int(path.rsplit("/", 1)[-1])
        extra = b"Retry-After: 7\r\n" if code == 429 else b""
        body = json.dumps({"error": {"message": "upstream says no", "code": code}}).encode()
        writer.write(_response(f"{code} Whatever", body, extra))
    elif name == "reset":
        sock = writer.get_extra_info("socket")
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return
    elif name == "stall-headers":
        await _idle(reader, stall)
    elif name == "stall-body":
        writer.write(_SSE_HEAD + _chunk(b"data: first\n\n"))
        await writer.drain()
        await _idle(reader, stall)
    elif name == "garbage":
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe not http at all\r\n\r\n")
    elif name == "half-headers":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
    elif name == "close-mid":
        writer.write(_SSE_HEAD + _chunk(b"data: partial\n\n"))
    elif name == "short-body":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n" + _CLOSE + b"\r\n0123456789")
    elif name == "bad-header":
        writer.write(_response("200 OK", b"{}", b"X-Evil: a\x01b\r\n"))
    elif name == "status-999":
        writer.write(_response("999 Beyond", b"{}"))
    elif name == "not-modified":
        writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 100\r\n' + _CLOSE + b"\r\n")
    elif name == "two-answers":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + _response("200 OK", b"unsolicited"))
    elif name == "endless-trailers":
        writer.write(_SSE_HEAD + _chunk(b"data: first\n\n") + b"0\r\n")
        for _ in range(600):
            writer.write(b"X-Trailer: " + b"t" * 1000 + b"\r\n")
            await writer.drain()
        writer.write(b"\r\n")
    elif name == "no-content":
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n" + _CLOSE + b"\r\n")
    elif name == "switch":
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    else:
        writer.write(_response("404 Not Found", b'{"error": "no such fault"}'))
    await writer.drain()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
