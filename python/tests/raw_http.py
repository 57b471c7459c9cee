"""HTTP/1.1 on bare sockets, for requests no well-behaved client would send.

``exchange`` writes bytes exactly as given and returns every byte the server sent back;
``parse_responses`` splits those bytes into responses (interim ``100 Continue`` included, bodies
de-chunked), marking each one complete or broken. ``fetch`` is the asyncio form the load tests
use: one request on its own connection, never raising for what a server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False  # framed end seen: Content-Length reached, final chunk, or (1.0) close
    raw: bytes = b""  # the response's bytes as received, head and body
    error: str = ""  # for fetch: why no response arrived

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def error_code(self) -> str | None:
        return self.header("x-signgate-error")


def exchange(
    port: int,
    data: bytes | Iterable[bytes],
    *,
    timeout: float = 5.0,
    pause: float = 0.0,
    half_close: bool = False,
) -> bytes:
    """Send ``data`` (or each piece of it, ``pause`` seconds apart) and read until the server
    closes or ``timeout`` passes with nothing new. Sending stops quietly if the server hangs up."""
    pieces = [data] if isinstance(data, bytes) else list(data)
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        closed = False
        try:
            for i, piece in enumerate(pieces):
                if i and pause:
                    # Read what has arrived while pausing: once the server has answered and closed,
                    # more bytes from us would make it reset the connection and lose its answer.
                    closed = _drain(sock, received, pause)
                    if closed:
                        break
                sock.sendall(piece)
            if half_close and not closed:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while not closed and (chunk := sock.recv(65536)):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return bytes(received)


def _drain(sock: socket.socket, received: bytearray, seconds: float) -> bool:
    """Collect bytes for ``seconds``; True if the server closed its side meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return False
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return True
        if not chunk:
            return True
        received += chunk
    return False


def _head(data: bytes, pos: int) -> tuple[Response, int] | None:
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        return None
    lines = data[pos:end].decode("latin-1").split("\r\n")
    version_status = lines[0].split(" ", 2)
    response = Response(status=int(version_status[1]), reason=version_status[2] if len(version_status) > 2 else "")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        response.headers.append((name.strip(), value.strip()))
    return response, end + 4


def parse_responses(data: bytes, *, method: str = "GET") -> list[Response]:
    """Every response in ``data``, in order; the last one may be incomplete."""
    out: list[Response] = []
    pos = 0
    while pos < len(data):
        start = pos
        parsed = _head(data, pos)
        if parsed is None:
            break
        response, body_start = parsed
        pos = body_start
        if 100 <= response.status < 200 or method == "HEAD" or response.status in (204, 304):
            response.complete = True
        elif (response.header("transfer-encoding") or "").lower() == "chunked":
            body = b""
            while True:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    break
                size = int(data[pos:line_end].split(b";")[0] or b"0", 16)
                if size == 0:
                    response.complete = data.startswith(b"\r\n", line_end + 2)
                    pos = line_end + 4 if response.complete else len(data)
                    break
                chunk = data[line_end + 2 : line_end + 2 + size]
                body += chunk
                if len(chunk) < size:
                    pos = len(data)
                    break
                pos = line_end + 2 + size + 2
            response.body = body
        elif response.header("content-length") is not None:
            length = int(response.header("content-length") or "0")
            response.body = data[pos : pos + length]
            response.complete = len(response.body) == length
            pos += length
        else:  # delimited by the close of the connection
            response.body = data[pos:]
            response.complete = True
            pos = len(data)
        response.raw = data[start:pos]
        out.append(response)
    return out


def request_bytes(
    method: str, target: str, headers: Iterable[tuple[str, str]] = (), body: bytes | None = None, version: str = "1.1"
) -> bytes:
    """A request head (and body) as raw bytes; ``Content-Length`` is added for a body unless given."""
    head = [f"{method} {target} HTTP/{version}", "Host: gateway"]
    given = list(headers)
    head += [f"{k}: {v}" for k, v in given]
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in given):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def fetch(
    port: int,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    timeout: float = 30.0,
) -> Response:
    """One request on a fresh connection (``Connection: close``); reads the whole answer.

    Never raises for the server's behaviour: a refused or reset connection gives status 0 and
    ``error``; a body cut short gives ``complete=False``.
    """
    data = request_bytes(method, target, [*headers, ("Connection", "close")], body)
    writer: asyncio.StreamWriter | None = None
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            await writer.drain()
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        error = "timeout"
    except OSError as exc:
        error = type(exc).__name__
    else:
        error = ""
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    responses = parse_responses(bytes(received), method=method)
    final = [r for r in responses if not 100 <= r.status < 200]
    if not final:
        return Response(status=0, raw=bytes(received), error=error or "no response")
    response = final[-1]
    response.error = error
    return response
