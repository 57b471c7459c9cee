"""Hostile clients against a real gateway process: bytes no browser would send, on bare sockets.

Each row of a table is one attack: the bytes sent, the answers expected in order (status and
``x-signgate-error`` code), and how many requests may reach the upstream. Every answer's raw bytes,
and the gateway's log at the end, are checked for the API key, the signing secret and the
signatures used (see ``leaks.py``).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from leaks import ENV, KEY_ARGS, KEY_ID, SECRET, LeakWatch, RecordingSigner
from raw_http import Response, exchange, parse_responses, request_bytes
from servers import HERE, Server, free_port, start_gateway, start_upstream

from signgate import SignedRequest

HEADER_TIMEOUT = 1.0
CLIENT_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def watch() -> LeakWatch:
    return LeakWatch()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    server = start_upstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[Server]:
    """A second server that counts what reaches it: where redirects point."""
    port = free_port()
    server = Server("elsewhere", [sys.executable, str(HERE / "fault_upstream.py"), str(port)], port)
    yield server.wait_healthy()
    server.stop()


def _checked_stop(server: Server, watch: LeakWatch) -> None:
    server.stop()
    log = server.output()
    assert "Traceback" not in log, log[-3000:]
    for line in log.splitlines():
        watch.check(line, f"{server.name} log line")


@pytest.fixture(scope="module")
def gateway(upstream: Server, watch: LeakWatch) -> Iterator[Server]:
    """Allowlisted to the fake upstream's /v1/, short client and header timeouts."""
    server = start_gateway(
        *KEY_ARGS, "--allow-upstream", f"{upstream.url}/v1/", "--allow-private-upstreams",
        "--max-body", "64k", "--client-timeout", str(CLIENT_TIMEOUT), "--header-timeout", str(HEADER_TIMEOUT),
        "--read-timeout", "5",
        env=ENV,
    )  # fmt: skip
    yield server
    _checked_stop(server, watch)


@pytest.fixture(scope="module")
def public_gateway(watch: LeakWatch) -> Iterator[Server]:
    """No allowlist and no --allow-private-upstreams: only the address guard stands in the way."""
    server = start_gateway(*KEY_ARGS, "--header-timeout", str(HEADER_TIMEOUT), env=ENV)
    yield server
    _checked_stop(server, watch)


def server_stats(server: Server) -> dict[str, int]:
    reply = parse_responses(exchange(server.port, request_bytes("GET", "/stats", [("Connection", "close")])))
    return dict(json.loads(reply[0].body))


def upstream_requests(server: Server) -> int:
    """Requests the fake upstream has handled (health checks and /stats excluded)."""
    return server_stats(server)["requests"]


def target(req: SignedRequest) -> str:
    return "/?" + req.url.split("?", 1)[1]


def with_query(req: SignedRequest, query: str) -> str:
    return "/?" + query


def signed_bytes(req: SignedRequest, *, extra: list[tuple[str, str]] | None = None, close: bool = True) -> bytes:
    headers = [*req.headers.items(), *(extra or [])]
    if close:
        headers.append(("Connection", "close"))
    body = req.body.encode() if req.body is not None else None
    return request_bytes(req.method, target(req), headers, body)


def roundtrip(port: int, data: bytes | list[bytes], watch: LeakWatch, **kwargs: float) -> list[Response]:
    raw = exchange(port, data, **kwargs)  # type: ignore[arg-type]
    watch.check(raw, "response")
    return parse_responses(raw)


# -- the request head: time ------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_idle_connection_is_closed_after_the_header_timeout(gateway: Server) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        assert sock.recv(100) == b""  # closed, with nothing to say: no request had begun
    assert HEADER_TIMEOUT * 0.8 < time.monotonic() - started < HEADER_TIMEOUT + 2


def test_the_deadline_restarts_after_each_response(gateway: Server, upstream: Server, watch: LeakWatch) -> None:
    signer = RecordingSigner(watch, KEY_ID, SECRET, gateway.url)
    first = signed_bytes(signer.sign("GET", f"{upstream.url}/v1/record"), close=False)
    slow_second = f"GET {target(signer.sign('GET', f'{upstream.url}/v1/record'))} HTTP/1.1\r\n".encode()
    pieces = [first, slow_second[:20]] + [bytes([b]) for b in slow_second[20:60]]
    responses = roundtrip(gateway.port, pieces, watch, pause=0.05, timeout=8)
    assert [(r.status, r.error_code) for r in responses] == [(200, None), (408, "client_timeout")]


def test_the_deadline_spares_slow_answers_and_paused_keep_alive(
    gateway: Server, upstream: Server, watch: LeakWatch
) -> None:
    # A stream longer than the header timeout, then a second request 0.5 s later on the same connection.
    signer = RecordingSigner(watch, KEY_ID, SECRET, gateway.url)
    stream = signed_bytes(signer.sign("GET", f"{upstream.url}/v1/sse?n=4&interval=0.5"), close=False)
    then = signed_bytes(signer.sign("GET", f"{upstream.url}/v1/record"))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(stream)
        received = b""
        while b"0\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, "the stream was cut"
            received += chunk
        assert time.monotonic() - started > HEADER_TIMEOUT * 1.5
        time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(then)
        while chunk := sock.recv(65536):
            received += chunk
    watch.check(received, "response")
    responses = parse_responses(received)
    assert [(r.status, r.complete) for r in responses] == [(200, True), (200, True)]
    assert responses[0].body.count(b"data: ") == 5


def test_every_worker_keeps_the_header_deadline(watch: LeakWatch) -> None:
    # With several workers uvicorn builds the protocol in each worker process.
    server = start_gateway(*KEY_ARGS, "--workers", "2", "--header-timeout", str(HEADER_TIMEOUT), env=ENV)
    try:
        for _ in range(4):
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                assert sock.recv(100).startswith(b"HTTP/1.1 408")
            assert time.monotonic() - started < HEADER_TIMEOUT + 2
    finally:
        _checked_stop(server, watch)


def test_slowloris_connections_are_all_released(gateway: Server) -> None:
    pid = gateway.proc.pid
    baseline = open_fds(pid)
    socks = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: g\r\nX-Slow: ")
        socks.append(sock)
    # The gateway serves others meanwhile.
    assert (
        parse_responses(exchange(gateway.port, request_bytes("GET", "/healthz", [("Connection", "close")])))[0].status
        == 200
    )
    time.sleep(HEADER_TIMEOUT + 0.5)
    answered = 0
    for sock in socks:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        answered += data.startswith(b"HTTP/1.1 408")
        sock.close()
    assert answered == len(socks)
    deadline = time.monotonic() + 5
    while open_fds(pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds(pid) <= baseline


# -- the request head: size ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["headers", "request line"])
def test_a_head_that_never_ends_is_cut_off(where: str, gateway: Server, watch: LeakWatch) -> None:
    # uvicorn buffers a request head until it ends, however large: 200 MiB of headers once grew
    # the gateway by 200 MiB. Now the head is refused once it passes --max-header-bytes + 16 KiB.
    rss_before = rss_kib(gateway.proc.pid)
    start = b"GET /?" if where == "request line" else b"GET / HTTP/1.1\r\nHost: g\r\n"
    filler = b"a" * 16384 if where == "request line" else b"X-Filler: " + b"a" * 16000 + b"\r\n"
    pieces = [start] + [filler] * 512  # 8 MiB if the gateway kept reading
    responses = roundtrip(gateway.port, pieces, watch, pause=0.002, timeout=5)
    assert [(r.status, r.error_code) for r in responses] == [(431, "headers_too_large")]
    assert rss_kib(gateway.proc.pid) - rss_before < 4096
