"""Hostile clients against a real gateway process: bytes no browser would send, on bare sockets.

Each row of a table is one attack: the bytes sent, the answers expected in order (status and
``x-signgate-error`` code), and how many requests may reach the upstream. Every answer's raw bytes,
and the gateway's log at the end, are checked for the API key, the signing secret and the
signatures used (see ``leaks.py``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sw1_reference
from leaks import ENV, KEY_ARGS, KEY_ID, SECRET, LeakWatch, RecordingSigner, authorization_digest
from load import Resources, run_pool
from raw_http import Response, exchange, fetch, parse_responses, request_bytes
from servers import HERE, Server, free_port, start_gateway

from signgate import SignedRequest, scheme
from signgate.errors import ForbiddenAddress
from signgate.gateway.protocol import MAX_PIPELINED
from signgate.gateway.upstream import Target, check_literal, is_public

HEADER_TIMEOUT = 1.0
CLIENT_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def watch() -> LeakWatch:
    return LeakWatch()


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
    # A stream longer than the header timeout, then a second request 0.3 s later on the same connection.
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
        time.sleep(HEADER_TIMEOUT * 0.3)
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
    resources = Resources(gateway.proc.pid)
    baseline = resources.fds()
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
    while resources.fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert resources.fds() <= baseline


# -- the request head: size ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["headers", "request line"])
def test_a_head_that_never_ends_is_cut_off(where: str, gateway: Server, watch: LeakWatch) -> None:
    # uvicorn buffers a request head until it ends, however large: 200 MiB of headers once grew
    # the gateway by 200 MiB. Now the head is refused once it passes --max-header-bytes + 16 KiB.
    resources = Resources(gateway.proc.pid)
    rss_before = resources.rss_kib()
    start = b"GET /?" if where == "request line" else b"GET / HTTP/1.1\r\nHost: g\r\n"
    filler = b"a" * 16384 if where == "request line" else b"X-Filler: " + b"a" * 16000 + b"\r\n"
    pieces = [start] + [filler] * 512  # 8 MiB if the gateway kept reading
    responses = roundtrip(gateway.port, pieces, watch, pause=0.002, timeout=5)
    assert [(r.status, r.error_code) for r in responses] == [(431, "headers_too_large")]
    assert resources.rss_kib() - rss_before < 4096


@pytest.mark.parametrize("shape", ["many fields", "one endless field"])
def test_a_trailer_section_that_never_ends_is_cut_off(
    shape: str, gateway: Server, upstream: Server, watch: LeakWatch
) -> None:
    # uvicorn adds every trailer field of a chunked body to the request's headers, without limit
    # and outside the head's deadline: 460 MiB of trailers in 6 s once grew the gateway by as much.
    resources = Resources(gateway.proc.pid)
    rss_before = resources.rss_kib()
    signer = RecordingSigner(watch, KEY_ID, SECRET, gateway.url)
    req = signer.sign("POST", f"{upstream.url}/v1/record")
    head = request_bytes("POST", target(req), [("Transfer-Encoding", "chunked")]) + b"3\r\nabc\r\n0\r\n"
    if shape == "many fields":
        filler = b"X-Trailer: " + b"a" * 16000 + b"\r\n"
    else:
        head, filler = head + b"X-Trailer: ", b"a" * 16384
    before = upstream_requests(upstream)
    responses = roundtrip(gateway.port, [head] + [filler] * 512, watch, pause=0.002, timeout=5)
    assert [(r.status, r.error_code) for r in responses] == [(431, "headers_too_large")]
    assert resources.rss_kib() - rss_before < 4096
    assert upstream_requests(upstream) == before


def test_a_connection_that_pipelines_thousands_of_requests_is_closed(gateway: Server, watch: LeakWatch) -> None:
    # uvicorn parses every request a read holds and queues them all: ten thousand small ones in
    # one 256 KiB read held about 10 MB until answered, so a few connections could exhaust memory.
    resources = Resources(gateway.proc.pid)
    rss_before = resources.rss_kib()
    flood = request_bytes("GET", "/healthz") * 6000
    started = time.monotonic()
    for _ in range(4):
        responses = roundtrip(gateway.port, flood, watch, timeout=5)
        assert len(responses) <= MAX_PIPELINED + 1
    assert time.monotonic() - started < 10
    assert resources.rss_kib() - rss_before < 4096


def test_long_upstream_urls_without_a_valid_signature_are_not_kept(
    gateway: Server, upstream: Server, watch: LeakWatch
) -> None:
    # The upstream is checked before the signature, and its normalised form was cached: 4,000
    # URLs of 28 KiB, signed with a wrong secret, left the gateway 280 MiB larger.
    resources = Resources(gateway.proc.pid)
    forger = RecordingSigner(watch, KEY_ID, "not-the-secret", gateway.url)

    def send_many(first: int, count: int) -> None:
        targets = [
            target(forger.sign("GET", f"{upstream.url}/v1/{i:05d}{'a' * 8000}")) for i in range(first, first + count)
        ]
        replies = asyncio.run(run_pool([lambda t=t: fetch(gateway.port, "GET", t) for t in targets], concurrency=4))
        assert {(r.status, r.error_code) for r in replies} == {(401, "bad_signature")}

    send_many(0, 300)  # most of the allocator's high-water mark for such requests
    rss_before = resources.rss_kib()
    send_many(300, 900)  # measured: 5 MiB more, and 22 MiB while each was kept
    assert resources.rss_kib() - rss_before < 12 * 1024


def test_a_client_gone_while_its_pipelined_requests_wait_leaves_no_error(
    gateway: Server, upstream: Server, watch: LeakWatch
) -> None:
    # uvicorn marked only the newest (queued) request disconnected: the running one returned as
    # its client was gone, and uvicorn logged an ERROR and raised writing a 500 into the closed
    # transport ("Task exception was never retrieved").
    signer = RecordingSigner(watch, KEY_ID, SECRET, gateway.url)
    waiting = signer.sign("GET", f"{upstream.url}/v1/stall?where=headers&s=2")
    logged = len(gateway.output())
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(signed_bytes(waiting, close=False) + request_bytes("GET", "/healthz"))
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while '"client_disconnected"' not in (log := gateway.output()[logged:]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"client_disconnected"' in log
    assert "ERROR" not in log and "Traceback" not in log, log


# -- the table -------------------------------------------------------------------------------------


@dataclass
class Ctx:
    signer: RecordingSigner
    upstream: Server

    def record(self, **kwargs: object) -> SignedRequest:
        method = str(kwargs.pop("method", "POST" if "body" in kwargs or "json" in kwargs else "GET"))
        path = str(kwargs.pop("path", "/v1/record"))
        return self.signer.sign(method, f"{self.upstream.url}{path}", **kwargs)  # type: ignore[arg-type]


@dataclass
class Case:
    name: str
    build: Callable[[Ctx], bytes | list[bytes]]
    expect: list[tuple[int, str | None]]  # (status, x-signgate-error) of each answer, in order
    reaches_upstream: int = 0
    pause: float = 0.0  # between the pieces build returns
    check: Callable[[list[Response], Ctx], None] | None = field(default=None, repr=False)


def _dup(name: str, value: str | None = None, spelled: str | None = None) -> Callable[[Ctx], bytes]:
    """A genuine signed URL with parameter ``name`` added again (as ``spelled``, with ``value``)."""

    def build(ctx: Ctx) -> bytes:
        req = ctx.record()
        query = req.url.split("?", 1)[1]
        original = next(p for p in query.split("&") if p.startswith(name + "=")).split("=", 1)[1]
        extra = f"{spelled or name}={original if value is None else value}"
        return request_bytes("GET", f"/?{query}&{extra}", [("Connection", "close")])

    return build


def _param(name: str, value: str, method: str = "GET") -> Callable[[Ctx], bytes]:
    """A genuine signed URL with one parameter's raw (still encoded) value replaced."""

    def build(ctx: Ctx) -> bytes:
        query = ctx.record().url.split("?", 1)[1]
        parts = [f"{name}={value}" if p.startswith(name + "=") else p for p in query.split("&")]
        return request_bytes(method, "/?" + "&".join(parts), [("Connection", "close")])

    return build


def _raw_query(query: bytes) -> Callable[[Ctx], bytes]:
    def build(ctx: Ctx) -> bytes:
        signed = ctx.record().url.split("?", 1)[1].encode()
        return b"GET /?" + query + b"&" + signed + b" HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"

    return build


def _head_with(lines: bytes) -> Callable[[Ctx], bytes]:
    """A genuine signed GET whose header block holds ``lines`` as given."""

    def build(ctx: Ctx) -> bytes:
        return f"GET {target(ctx.record())} HTTP/1.1\r\nHost: g\r\n".encode() + lines + b"Connection: close\r\n\r\n"

    return build


def _record_body(expected: str, index: int = 0) -> Callable[[list[Response], Ctx], None]:
    def check(responses: list[Response], ctx: Ctx) -> None:
        echoed = json.loads(responses[index].body)
        assert echoed["body"] == expected
        headers = {k.lower(): v for k, v in echoed["headers"]}
        assert headers["authorization"] == authorization_digest()

    return check


def _no_header_upstream(name: str) -> Callable[[list[Response], Ctx], None]:
    def check(responses: list[Response], ctx: Ctx) -> None:
        echoed = json.loads(responses[0].body)
        names = [k.lower() for k, _ in echoed["headers"]]
        assert name not in names, echoed
        assert "\r" not in echoed["path"] and "\n" not in echoed["path"]

    return check


def _crlf_in_signed_upstream(ctx: Ctx) -> bytes:
    # A genuine signature over an upstream URL that holds CR LF (as signway-sdk would sign it, unnormalised).
    long = scheme.long_date(int(time.time()))
    raw_upstream = f"{ctx.upstream.url}/v1/record?q=1\r\nX-Injected: 1"
    stages = sw1_reference.sign(KEY_ID, SECRET, "http://g", raw_upstream, 60, "GET", [], None, long)
    ctx.signer.watch.signatures.add(stages.signature)
    return request_bytes("GET", "/?" + stages.url.split("?", 1)[1], [("Connection", "close")])


def _signed_uses(uses: str) -> Callable[[Ctx], bytes]:
    """A genuine signature over x-signgate-uses: ``uses`` (as a Signway SDK signs any value),
    sent as its Latin-1 bytes."""

    def build(ctx: Ctx) -> bytes:
        long = scheme.long_date(int(time.time()))
        bound = [("x-signgate-nonce", "n0nce-of-12"), ("x-signgate-uses", uses)]
        stages = sw1_reference.sign(KEY_ID, SECRET, "http://g", f"{ctx.upstream.url}/v1/record", 60, "GET", bound,
                                    None, long)  # fmt: skip
        ctx.signer.watch.signatures.add(stages.signature)
        return request_bytes("GET", "/?" + stages.url.split("?", 1)[1], [*bound, ("Connection", "close")])

    return build


def _pipelined(ctx: Ctx) -> bytes:
    first = ctx.record(body="first")
    second = ctx.record(body="second")
    return signed_bytes(first, close=False) + signed_bytes(second)


def _pipelined_with_refusal(ctx: Ctx) -> bytes:
    ok1, ok2 = ctx.record(body="one"), ctx.record(body="three")
    bad = request_bytes("GET", "/?X-Sw-Date=nope&X-Sw-Date=twice")
    return signed_bytes(ok1, close=False) + bad + signed_bytes(ok2)


def _longer_body(ctx: Ctx) -> list[bytes]:
    req = ctx.record(body="hello")
    # Content-Length says 5; more bytes follow (a moment later, once the first answer is out),
    # and they must be read as a next request, which is malformed.
    return [signed_bytes(req, close=False), b"EXTRA /smuggled HTTP/1.1\r\nHost: g\r\n\r\n"]


def _shorter_body(ctx: Ctx) -> bytes:
    req = ctx.record(body="hello world")
    return signed_bytes(req)[:-4]  # seven of the eleven declared bytes, then silence


def _slow_head(ctx: Ctx) -> list[bytes]:
    data = signed_bytes(ctx.record())
    return [data[:10]] + [bytes([b]) for b in data[10:80]]  # ~70 pieces, 0.05 s apart: longer than 1 s


def _slow_body(ctx: Ctx) -> list[bytes]:
    req = ctx.record(body="x" * 40)
    data = signed_bytes(req)
    head = data[: -len(req.body or "")]
    return [head] + [b"x"] * 40


def _expect_continue(ctx: Ctx) -> list[bytes]:
    req = ctx.record(body="continued")
    head, _, body = signed_bytes(req, extra=[("Expect", "100-continue")]).partition(b"\r\n\r\n")
    return [head + b"\r\n\r\n", body]


def _expect_too_large(ctx: Ctx) -> bytes:
    req = ctx.record(body="x")
    query = target(req)
    return request_bytes(
        "POST", query, [("Content-Length", "900000"), ("Expect", "100-continue"), ("Connection", "close")]
    )


def _no_continue(responses: list[Response], ctx: Ctx) -> None:
    assert all(r.status != 100 for r in responses), "asked for the body it was about to refuse"


def _chunked_bound(ctx: Ctx) -> bytes:
    req = ctx.record(body="hello")
    headers = [*req.headers.items(), ("Transfer-Encoding", "chunked"), ("Connection", "close")]
    return request_bytes("POST", target(req), headers) + b"5\r\nhello\r\n0\r\n\r\n"


def _chunked_with_trailers(ctx: Ctx) -> bytes:
    req = ctx.record(method="POST")
    head = request_bytes("POST", target(req), [("Transfer-Encoding", "chunked"), ("Connection", "close")])
    return head + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"


def _identity_coded(ctx: Ctx) -> bytes:
    # A body framed by neither length nor chunks: not HTTP/1.1 a request may use (RFC 9112 6.3).
    req = ctx.record(method="POST")
    return request_bytes("POST", target(req), [("Transfer-Encoding", "identity")]) + b"hello"


def _oversized_declared(ctx: Ctx) -> bytes:
    req = ctx.record(body="x")
    return request_bytes("POST", target(req), [("Content-Length", "999999999"), ("Connection", "close")])


def _unbound_chunked_too_large(ctx: Ctx) -> bytes:
    req = ctx.record(method="POST")
    chunk = b"8000\r\n" + b"y" * 0x8000 + b"\r\n"
    head = request_bytes("POST", target(req), [("Transfer-Encoding", "chunked"), ("Connection", "close")])
    return head + chunk * 3 + b"0\r\n\r\n"


def _absolute_form(ctx: Ctx) -> bytes:
    req = ctx.record()
    return request_bytes("GET", "http://evil.example" + target(req), [("Connection", "close")])


def _path_is_signed_upstream(responses: list[Response], ctx: Ctx) -> None:
    assert json.loads(responses[0].body)["path"] == "/v1/record"


CASES = [
    # sizes
    Case("header block over 16 KiB", _head_with(b"X-Big: " + b"a" * 17000 + b"\r\n"), [(431, "headers_too_large")]),
    Case(
        "150 empty headers, well within the byte limit",
        _head_with(b"".join(b"X-H: \r\n" for i in range(150))),
        [(431, "headers_too_large")],
    ),
    Case(
        "600 small headers",
        _head_with(b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 24) for i in range(600))),
        [(431, "headers_too_large")],
    ),
    Case(
        "body over --max-body", lambda c: signed_bytes(c.record(body="x" * (64 * 1024 + 1))), [(413, "body_too_large")]
    ),
    Case("declared length over --max-body, body never sent", _oversized_declared, [(413, "body_too_large")]),
    Case("unbound chunked body over --max-body", _unbound_chunked_too_large, [(413, "body_too_large")]),
    # repeated parameters
    Case("X-Sw-Date twice, same value", _dup("X-Sw-Date"), [(400, "malformed")]),
    Case("X-Sw-Proxy twice, second elsewhere", _dup("X-Sw-Proxy", "http%3A%2F%2F10.0.0.1%2F"), [(400, "malformed")]),
    Case("X-Sw-Signature twice", _dup("X-Sw-Signature", "0" * 64), [(400, "malformed")]),
    Case("X-Sw-Body twice via an encoded name", _dup("X-Sw-Body", "true", "X%2DSw%2DBody"), [(400, "malformed")]),
    Case(
        "X-Sw-Expires twice, one letter encoded", _dup("X-Sw-Expires", "3600", "X-Sw-Expire%73"), [(400, "malformed")]
    ),
    # encodings in the query
    Case("invalid UTF-8 after percent-decoding", _param("X-Sw-Proxy", "http%3A%2F%2Fa%2F%FF%FE"), [(400, "malformed")]),
    Case("overlong UTF-8", _param("X-Sw-Credential", "%C0%AF"), [(400, "malformed")]),
    Case("UTF-16 surrogate in UTF-8", _param("X-Sw-Credential", "%ED%A0%80"), [(400, "malformed")]),
    Case("raw non-ASCII bytes in the query", _raw_query(b"X-Sw-Algorithm=\xff\xfe"), [(400, "malformed")]),
    Case("truncated escape", _param("X-Sw-Body", "%"), [(400, "malformed")]),
    Case("escape that is not hex", _param("X-Sw-Expires", "%zz"), [(400, "malformed")]),
    # an upstream that is not an http(s) URL is refused before the signature is checked
    Case("NUL in the upstream", _param("X-Sw-Proxy", "http%3A%2F%2Fa%00b%2F"), [(400, "malformed")]),
    Case("double-encoded upstream", _param("X-Sw-Proxy", "http%253A%252F%252Fa%252F"), [(400, "malformed")]),
    Case(
        "Unicode digits in the date",
        _param("X-Sw-Date", "%D9%A2%D9%A0%D9%A2%D9%A6%D9%A1%D9%A1%D9%A2%D9%A7T000000Z"),
        [(400, "malformed")],
    ),
    Case("empty values", _param("X-Sw-Date", ""), [(400, "malformed")]),
    Case("a 64-character signature that is not ASCII", _param("X-Sw-Signature", "%C3%A9" * 64), [(400, "malformed")]),
    Case(
        "20 000 ampersands",
        lambda c: request_bytes("GET", "/?" + "&" * 20_000, [("Connection", "close")]),
        [(400, "malformed")],
    ),
    Case("a foreign parameter with a non-UTF-8 name", _raw_query(b"%ff%fe=1"), [(400, "malformed")]),
    Case(
        "foreign-case parameter names are ignored",
        _raw_query(b"x-sw-proxy=http%3A%2F%2F10.0.0.1%2F"),
        [(200, None)],
        reaches_upstream=1,
    ),
    # header syntax
    Case("obsolete line folding", _head_with(b"X-A: a\r\n injected: 1\r\n"), [(400, "malformed")]),
    Case("bare CR in a value", _head_with(b"X-A: a\rInjected: 1\r\n"), [(400, "malformed")]),
    Case("bare LF line ending", _head_with(b"X-A: a\nInjected: 1\r\n"), [(400, "malformed")]),
    Case("NUL in a value", _head_with(b"X-A: a\x00b\r\n"), [(400, "malformed")]),
    Case("space in a header name", _head_with(b"X A: a\r\n"), [(400, "malformed")]),
    Case(
        "two different Content-Lengths", _head_with(b"Content-Length: 1\r\nContent-Length: 2\r\n"), [(400, "malformed")]
    ),
    Case(
        "Content-Length and chunked",
        _head_with(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
        [(400, "malformed")],
    ),
    Case("signed Content-Length with a sign", _head_with(b"Content-Length: +5\r\n"), [(400, "malformed")]),
    Case(
        "CR LF inside a genuinely signed upstream",
        _crlf_in_signed_upstream,
        [(200, None)],
        reaches_upstream=1,
        check=_no_header_upstream("x-injected"),
    ),
    Case("signed x-signgate-uses in superscript digits", _signed_uses("\u00b3"), [(400, "malformed")]),
    # framing
    Case(
        "HTTP/1.0",
        lambda c: signed_bytes(c.record(body="ten"), close=False).replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        [(200, None)],
        reaches_upstream=1,
        check=_record_body("ten"),
    ),
    Case("HTTP/0.9", lambda c: b"GET /\r\n\r\n", [(400, "malformed")]),
    Case(
        "absolute-form target names another host",
        _absolute_form,
        [(200, None)],
        reaches_upstream=1,
        check=_path_is_signed_upstream,
    ),
    Case(
        "CONNECT",
        lambda c: b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\nConnection: close\r\n\r\n",
        [(400, "malformed")],
    ),
    Case(
        "pipelined pair",
        _pipelined,
        [(200, None), (200, None)],
        reaches_upstream=2,
        check=lambda rs, c: (_record_body("first", 0)(rs, c), _record_body("second", 1)(rs, c)),
    ),
    Case(
        "pipelined with a refusal between",
        _pipelined_with_refusal,
        [(200, None), (400, "malformed"), (200, None)],
        reaches_upstream=2,
        check=lambda rs, c: (_record_body("one", 0)(rs, c), _record_body("three", 2)(rs, c)),
    ),
    Case(
        "body longer than Content-Length",
        _longer_body,
        [(200, None), (400, "malformed")],
        reaches_upstream=1,
        pause=0.3,
        check=_record_body("hello"),
    ),
    Case("body shorter than Content-Length", _shorter_body, [(408, "client_timeout")]),
    Case("bound body sent chunked", _chunked_bound, [(411, "length_required")]),
    Case(
        "chunked trailer fields are not headers",
        _chunked_with_trailers,
        [(200, None)],
        reaches_upstream=1,
        check=lambda rs, c: (_record_body("hello")(rs, c), _no_header_upstream("x-trailer")(rs, c)),
    ),
    Case("a body coding other than chunked", _identity_coded, [(400, "malformed")]),
    Case(
        "Expect: 100-continue",
        _expect_continue,
        [(100, None), (200, None)],
        reaches_upstream=1,
        pause=0.2,
        check=_record_body("continued", 1),
    ),
    Case(
        "Expect: 100-continue with a declared length over the limit",
        _expect_too_large,
        [(413, "body_too_large")],
        check=_no_continue,
    ),
    # slow clients
    Case("headers a byte at a time", _slow_head, [(408, "client_timeout")], pause=0.05),
    Case("body a byte at a time", _slow_body, [(408, "client_timeout")], pause=0.05),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request(case: Case, gateway: Server, upstream: Server, watch: LeakWatch) -> None:
    ctx = Ctx(RecordingSigner(watch, KEY_ID, SECRET, gateway.url), upstream)
    data = case.build(ctx)
    before = upstream_requests(upstream)
    started = time.monotonic()
    responses = roundtrip(gateway.port, data, watch, pause=case.pause, timeout=8)
    elapsed = time.monotonic() - started
    got = [(r.status, r.error_code) for r in responses]
    assert got == case.expect, [r.raw[:300] for r in responses]
    assert all(r.complete for r in responses)
    for response in responses:
        if response.error_code is not None:
            assert response.header("content-type") == "application/json"
            assert json.loads(response.body)["error"]["code"] == response.error_code
    assert elapsed < 6, "the gateway held the connection open instead of closing it"
    assert upstream_requests(upstream) - before == case.reaches_upstream
    if case.check is not None:
        case.check(responses, ctx)


def test_extra_bytes_in_the_same_write_never_join_the_signed_body(
    gateway: Server, upstream: Server, watch: LeakWatch
) -> None:
    signer = RecordingSigner(watch, KEY_ID, SECRET, gateway.url)
    req = signer.sign("POST", f"{upstream.url}/v1/record", body="hello")
    before = upstream_requests(upstream)
    responses = roundtrip(gateway.port, signed_bytes(req, close=False) + b"EXTRA / HTTP/1.1\r\n\r\n", watch)
    # Either the first answer, then the refusal of the second; or, if the parser met the bad bytes
    # before the first request was relayed, the connection closed with no answer at all.
    statuses = [(r.status, r.error_code) for r in responses]
    assert statuses in ([(200, None), (400, "malformed")], [(400, "malformed")], []), statuses
    reached = upstream_requests(upstream) - before
    if statuses and statuses[0][0] == 200:
        assert reached == 1 and json.loads(responses[0].body)["body"] == "hello"
    assert reached <= 1


# -- where the gateway refuses to go ---------------------------------------------------------------

# (host part, how it reaches a loopback or private address). Literals are checked in this process
# before anything is sent, so that a regression fails here instead of making the gateway connect
# to an address outside this machine's loopback.
ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.1", "short form"),
    ("2130706433", "decimal"),
    ("0177.0.0.1", "octal"),
    ("0x7f000001", "hexadecimal"),
    ("0x7f.0.0.1", "mixed"),
    ("%31%32%37.0.0.1", "percent-encoded"),
    ("①②⑦.0.0.1", "enclosed digits, mapped by IDNA"),
    ("127。0。0。1", "ideographic full stops"),
    ("[::ffff:127.0.0.1]", "IPv4-mapped IPv6"),
    ("[::ffff:7f00:1]", "IPv4-mapped IPv6, hex"),
    ("[::1]", "IPv6 loopback"),
    ("0.0.0.0", "unspecified, which Linux connects to loopback"),
    ("0", "unspecified, one number"),
    ("[::]", "IPv6 unspecified"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("169.254.169.254", "cloud metadata"),
    ("0251.0376.0251.0376", "cloud metadata, octal"),
    ("2852039166", "cloud metadata, decimal"),
    ("169.254.43518", "cloud metadata, two-part"),
    ("[::ffff:169.254.169.254]", "cloud metadata, IPv4-mapped"),
    ("[fd00:ec2::254]", "cloud metadata, IPv6 (AWS)"),
    ("[fe80::1]", "IPv6 link-local"),
    ("[64:ff9b::a9fe:a9fe]", "cloud metadata behind well-known NAT64"),
    ("[64:ff9b:1::a9fe:a9fe]", "cloud metadata behind local-use NAT64"),
    ("[2002:a9fe:a9fe::]", "cloud metadata in 6to4"),
    ("[::a9fe:a9fe]", "cloud metadata, IPv4-compatible IPv6"),
    ("[::7f00:1]", "loopback, IPv4-compatible IPv6"),
    ("[::ffff:0:7f00:1]", "loopback, IPv4-translated IPv6"),
    ("224.0.0.1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
]
NAMES = ["localhost", "LocalHost", "ip6-localhost", "ip6-loopback"]


def hosts_file() -> dict[str, set[str]]:
    """Names in /etc/hosts and their addresses: the only names these tests resolve, so that no
    lookup leaves the machine (a name missing there would go to the DNS server)."""
    names: dict[str, set[str]] = {}
    try:
        text = Path("/etc/hosts").read_text()
    except OSError:
        return names
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            names.setdefault(name.lower(), set()).add(fields[0])
    return names


@pytest.mark.parametrize(("host", "why"), ADDRESSES, ids=[f"{h} ({w})" for h, w in ADDRESSES])
def test_non_public_address_is_refused_before_connecting(
    host: str, why: str, public_gateway: Server, upstream: Server, watch: LeakWatch
) -> None:
    port = urlsplit(upstream.url).port
    url = f"http://{host}:{port}/v1/record"
    normalized = scheme.normalize_upstream(url)
    assert normalized is not None
    split = Target.from_url(normalized)
    assert split is not None
    with pytest.raises(ForbiddenAddress):
        check_literal(split[1])
    before = upstream_requests(upstream)
    signer = RecordingSigner(watch, KEY_ID, SECRET, public_gateway.url)
    responses = roundtrip(public_gateway.port, signed_bytes(signer.sign("GET", url)), watch)
    assert [(r.status, r.error_code) for r in responses] == [(403, "upstream_not_allowed")]
    assert upstream_requests(upstream) == before


@pytest.mark.parametrize("name", NAMES)
def test_names_that_resolve_to_private_addresses_are_refused(
    name: str, public_gateway: Server, upstream: Server, watch: LeakWatch
) -> None:
    addresses = hosts_file().get(name.lower())
    if not addresses:
        pytest.skip(f"{name} is not in /etc/hosts here; resolving it would ask a DNS server off this machine")
    assert not any(is_public(a) for a in addresses), f"{name} is a public address here: {addresses}"
    port = urlsplit(upstream.url).port
    before = upstream_requests(upstream)
    signer = RecordingSigner(watch, KEY_ID, SECRET, public_gateway.url)
    responses = roundtrip(
        public_gateway.port, signed_bytes(signer.sign("GET", f"http://{name}:{port}/v1/record")), watch
    )
    assert [(r.status, r.error_code) for r in responses] == [(403, "upstream_not_allowed")]
    assert upstream_requests(upstream) == before


# -- redirects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_passed_back_never_followed(
    code: int, gateway: Server, upstream: Server, elsewhere: Server, watch: LeakWatch
) -> None:
    signer = RecordingSigner(watch, KEY_ID, SECRET, gateway.url)
    for to in (f"{elsewhere.url}/collect", "http://169.254.169.254/latest/meta-data/"):
        redirect = f"{upstream.url}/v1/redirect?code={code}&to={to}"
        responses = roundtrip(gateway.port, signed_bytes(signer.sign("POST", redirect, body="payload")), watch)
        assert [(r.status, r.header("location")) for r in responses] == [(code, to)]
        assert responses[0].error_code is None
    assert server_stats(elsewhere).get("/collect", 0) == 0


def test_relayed_answers_carry_one_date(gateway: Server, upstream: Server, watch: LeakWatch) -> None:
    # Date is a singleton field; the upstream's and uvicorn's own both went out (docs/protocol.md
    # says the upstream's is dropped).
    signer = RecordingSigner(watch, KEY_ID, SECRET, gateway.url)
    responses = roundtrip(gateway.port, signed_bytes(signer.sign("GET", f"{upstream.url}/v1/record")), watch)
    assert [k.lower() for k, _ in responses[0].headers].count("date") == 1
