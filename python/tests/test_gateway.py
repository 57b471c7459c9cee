"""The gateway as a real process on a socket, in front of a real upstream process."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from gateway_client import call, send
from servers import Server, free_port, start_gateway

from signgate import Signer, sign_url

SECRET = "gateway-test-secret"
API_KEY = "sk-upstream-key-never-leaks"
ENV = {"GW_SECRET": SECRET, "UPSTREAM_KEY": API_KEY}
ORIGIN = "http://app.example"


def gateway_args(upstream: Server, *extra: str) -> list[str]:
    return [
        "--id", "test", "--secret-env", "GW_SECRET",
        "--header-env", "Authorization=Bearer ${UPSTREAM_KEY}",
        "--allow-upstream", f"{upstream.url}/v1/",
        "--allow-private-upstreams", "--cors-origin", ORIGIN, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gateway(upstream: Server) -> Iterator[Server]:
    server = start_gateway(*gateway_args(upstream, "--read-timeout", "2", "--max-body", "64k"), env=ENV)
    yield server
    server.stop()
    assert API_KEY not in server.output() and SECRET not in server.output()


@pytest.fixture
def signer(gateway: Server) -> Signer:
    return Signer("test", SECRET, gateway.url)


def upstream_stats(upstream: Server) -> dict[str, int]:
    return dict(call("GET", upstream.url + "/stats").json())


def wait_for(predicate: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


# -- forwarding ------------------------------------------------------------------------------------


def test_forwarding_injects_the_key_and_strips_client_headers(signer: Signer, upstream: Server) -> None:
    req = signer.sign("POST", f"{upstream.url}/v1/echo", headers={"X-User": "u1"}, json={"q": "héllo"})
    reply = send(
        req,
        headers={
            "Cookie": "session=abc",
            "Authorization": "Bearer from-the-browser",
            "Origin": ORIGIN,
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "drop me",
            "X-Extra": "kept",
        },
    )
    assert reply.status == 200
    echoed = reply.json()
    got = {k.lower(): v for k, v in echoed["headers"]}
    assert got["authorization"] == f"Bearer {API_KEY}"
    assert got["x-user"] == "u1" and got["x-extra"] == "kept"
    for stripped in ("cookie", "origin", "x-hop"):
        assert stripped not in got
    assert [k for k, _ in echoed["headers"]].count("Authorization") == 1
    assert echoed["body"] == '{"q":"héllo"}'
    assert echoed["path"] == "/v1/echo"
    # the response: upstream headers kept, cookies and hop-by-hop dropped, ours added
    assert reply.headers["x-upstream"] == "yes"
    assert "set-cookie" not in reply.headers
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert len(reply.headers["x-request-id"]) == 16


def test_upstream_error_status_passes_through(signer: Signer, upstream: Server) -> None:
    reply = send(signer.sign("POST", f"{upstream.url}/v1/status/429", body="{}"))
    assert reply.status == 429
    assert reply.headers["retry-after"] == "7"
    assert "x-signgate-error" not in reply.headers
    assert reply.json()["error"]["message"] == "upstream says no"


def test_redirects_are_not_followed(signer: Signer, upstream: Server) -> None:
    reply = send(signer.sign("GET", f"{upstream.url}/v1/redirect"))
    assert reply.status == 302
    assert reply.headers["location"] == "http://127.0.0.2:1/elsewhere"


def test_first_event_arrives_before_the_upstream_sends_the_last(signer: Signer, upstream: Server) -> None:
    req = signer.sign("GET", f"{upstream.url}/v1/sse?n=6&interval=0.25&id=first-event")
    parts = urlsplit(req.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"/?{parts.query}")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type") == "text/event-stream"
    first = response.readline()
    received_first = time.time()
    rest = response.read()
    conn.close()
    assert first == b'data: {"i": 0}\n'
    assert rest.endswith(b"data: [DONE]\n\n") and rest.count(b"data: ") == 6
    sent = call("GET", f"{upstream.url}/v1/sent?id=first-event").json()
    assert len(sent) == 6
    assert received_first < sent[-1], "the first event was held back until the upstream had sent the last"


def test_signway_sdk_urls_are_accepted(gateway: Server, upstream: Server) -> None:
    url = sign_url("test", SECRET, gateway.url, f"{upstream.url}/v1/echo", 60, "POST", None, '{"a":1}')
    from signway_sdk import sign_url as sdk_sign_url

    sdk_url = sdk_sign_url("test", SECRET, gateway.url, f"{upstream.url}/v1/echo", 60, "POST", None, '{"a":1}')
    for candidate in (url, sdk_url):
        reply = call("POST", candidate, {"Content-Type": "application/json"}, '{"a":1}')
        assert reply.status == 200, reply.body
        assert reply.json()["body"] == '{"a":1}'


# -- refusals ---------------------------------------------------------------------------------------


def test_allowlist_refuses_before_any_connection(signer: Signer, upstream: Server) -> None:
    before = upstream_stats(upstream)["requests"]
    for target in (f"{upstream.url}/other/echo", f"{upstream.url}/v1", "https://api.example.com/v1/echo"):
        reply = send(signer.sign("GET", target))
        assert (reply.status, reply.error_code) == (403, "upstream_not_allowed"), target
        assert reply.headers["x-signgate-error"] == "upstream_not_allowed"
    assert upstream_stats(upstream)["requests"] == before


def test_private_addresses_are_refused_by_default(upstream: Server) -> None:
    port = urlsplit(upstream.url).port
    server = start_gateway("--id", "test", "--secret-env", "GW_SECRET", "--header-env", "Authorization=x", env=ENV)
    try:
        signer = Signer("test", SECRET, server.url)
        before = upstream_stats(upstream)["requests"]
        targets = [
            f"http://127.0.0.1:{port}/v1/echo",
            f"http://localhost:{port}/v1/echo",  # a name that resolves to loopback
            f"http://2130706433:{port}/v1/echo",  # decimal 127.0.0.1
            f"http://0x7f.1:{port}/v1/echo",  # hex and short form
            f"http://[::ffff:127.0.0.1]:{port}/v1/echo",  # IPv4-mapped IPv6
            "http://169.254.169.254/latest/meta-data/",  # cloud metadata
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://[::1]/",
        ]
        for target in targets:
            reply = send(signer.sign("GET", target))
            assert (reply.status, reply.error_code) == (403, "upstream_not_allowed"), target
        assert upstream_stats(upstream)["requests"] == before
    finally:
        server.stop()


def _with_param(url: str, name: str, value: str) -> str:
    base, query = url.split("?", 1)
    return base + "?" + "&".join(p if not p.startswith(name + "=") else f"{name}={value}" for p in query.split("&"))


def test_every_verification_error_is_json_with_cors(signer: Signer, upstream: Server, gateway: Server) -> None:
    target = f"{upstream.url}/v1/echo"
    req = signer.sign("POST", target, headers={"X-User": "u1"}, body="hello")
    cases = [
        (call("GET", gateway.url + "/?X-Sw-Algorithm=SW1-HMAC-SHA256", {"Origin": ORIGIN}), 400, "malformed"),
        (send(req, {"Origin": ORIGIN}, body="hellO"), 401, "bad_signature"),
        (send(req, {"Origin": ORIGIN}, body="hello!"), 401, "bad_signature"),  # length re-declared: a forgery
        (send(req, {"Origin": ORIGIN}, body=b"\xffello"), 401, "body_mismatch"),  # not UTF-8
        (call("POST", req.url, {"Origin": ORIGIN}, "hello"), 401, "missing_header"),
        (
            call("POST", _with_param(req.url, "X-Sw-Algorithm", "SW2"), {**req.headers, "Origin": ORIGIN}, "hello"),
            400,
            "unsupported_algorithm",
        ),
        (send(Signer("nobody", SECRET, gateway.url).sign("GET", target), {"Origin": ORIGIN}), 401, "unknown_key"),
        (send(signer.sign("GET", target, expires_in=7200), {"Origin": ORIGIN}), 400, "expiry_too_long"),
        (
            send(
                Signer("test", SECRET, gateway.url, clock=lambda: time.time() - 100).sign("GET", target, expires_in=30),
                {"Origin": ORIGIN},
            ),
            401,
            "expired",
        ),
        (
            send(
                Signer("test", SECRET, gateway.url, clock=lambda: time.time() + 600).sign("GET", target),
                {"Origin": ORIGIN},
            ),
            401,
            "not_yet_valid",
        ),
        (call("GET", gateway.url + "/nowhere", {"Origin": ORIGIN}), 404, "not_found"),
    ]
    for reply, status, code in cases:
        assert (reply.status, reply.error_code) == (status, code), reply.body
        assert reply.headers["x-signgate-error"] == code
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["access-control-allow-origin"] == ORIGIN
        assert "x-signgate-error" in reply.headers["access-control-expose-headers"]
        assert SECRET not in reply.body.decode() and "Signature" not in reply.body.decode()
    expired = cases[8][0].json()["error"]
    assert abs(expired["now"] - time.time()) < 5
    assert "70 s ago" in expired["message"] or "71 s ago" in expired["message"]


def test_body_limits(signer: Signer, upstream: Server, gateway: Server) -> None:
    big = "x" * (64 * 1024 + 1)
    reply = send(signer.sign("POST", f"{upstream.url}/v1/echo", body=big))
    assert (reply.status, reply.error_code) == (413, "body_too_large")
    # a declared length over the cap is refused before the body is read
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    req = signer.sign("POST", f"{upstream.url}/v1/echo", body="x")
    sock.sendall(f"POST /?{req.url.split('?', 1)[1]} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n".encode())
    head = sock.recv(4096)
    sock.close()
    assert head.startswith(b"HTTP/1.1 413")
    # an unbound chunked body is counted as it arrives
    unbound = signer.sign("POST", f"{upstream.url}/v1/echo")
    chunked = call("POST", unbound.url, {"Transfer-Encoding": "chunked"}, iter([b"y" * 40000, b"y" * 40000]))  # type: ignore[arg-type]
    assert (chunked.status, chunked.error_code) == (413, "body_too_large")
    # a bound body cannot be chunked: its length is part of the signature
    bound = call("POST", req.url, {"Transfer-Encoding": "chunked"}, iter([b"x"]))  # type: ignore[arg-type]
    assert (bound.status, bound.error_code) == (411, "length_required")


def test_cors_preflight_is_answered_without_forwarding(signer: Signer, upstream: Server) -> None:
    before = upstream_stats(upstream)["requests"]
    req = signer.sign("POST", f"{upstream.url}/v1/echo", json={})
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    reply = call("OPTIONS", req.url, preflight)
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert reply.headers["access-control-allow-methods"] == "POST"
    assert reply.headers["access-control-allow-headers"] == "content-type"
    refused = call("OPTIONS", req.url, {**preflight, "Origin": "http://evil.example"})
    assert (refused.status, refused.error_code) == (403, "origin_not_allowed")
    assert "access-control-allow-origin" not in refused.headers
    assert upstream_stats(upstream)["requests"] == before


def test_upstream_unreachable_and_timeouts(signer: Signer, upstream: Server, gateway: Server) -> None:
    dead = free_port()
    other = start_gateway(
        "--id", "test", "--secret-env", "GW_SECRET", "--allow-private-upstreams", "--read-timeout", "1", env=ENV
    )
    try:
        s = Signer("test", SECRET, other.url)
        reply = send(s.sign("GET", f"http://127.0.0.1:{dead}/v1/x"))
        assert (reply.status, reply.error_code) == (502, "upstream_unreachable")
        reply = send(s.sign("GET", f"{upstream.url}/v1/stall?where=headers"))
        assert (reply.status, reply.error_code) == (504, "upstream_timeout")
        # stalled mid-stream: the client sees the break, not a clean end
        req = s.sign("GET", f"{upstream.url}/v1/stall")
        parts = urlsplit(req.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", f"/?{parts.query}")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        conn.close()
        metrics = call("GET", other.url + "/metrics").body.decode()
        assert 'code="upstream_timeout"' in metrics and 'code="upstream_unreachable"' in metrics
    finally:
        other.stop()


def test_upstream_break_mid_stream_is_not_a_clean_end(signer: Signer, upstream: Server, gateway: Server) -> None:
    req = signer.sign("GET", f"{upstream.url}/v1/broken")
    parts = urlsplit(req.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"/?{parts.query}")
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as info:
        response.read()
    assert info.value.partial == b"data: partial\n\n"
    conn.close()
    assert wait_for(lambda: 'code="upstream_broken"' in call("GET", gateway.url + "/metrics").body.decode())


def read_until(sock: socket.socket, needle: bytes) -> bytes:
    data = b""
    while needle not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def hang_up_mid_stream(signer: Signer, upstream: Server) -> None:
    """Open a 10 s stream through the gateway, hang up after its first event, and check that the
    upstream saw its connection close within 5 s."""
    before = upstream_stats(upstream)["streams_disconnected"]
    req = signer.sign("GET", f"{upstream.url}/v1/sse?n=200&interval=0.05")
    parts = urlsplit(req.url)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(f"GET /?{parts.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert b"data: " in read_until(sock, b"data: ")
    sock.close()
    assert wait_for(lambda: upstream_stats(upstream)["streams_disconnected"] == before + 1, timeout=5)


def test_client_hang_up_closes_the_upstream_stream(signer: Signer, upstream: Server) -> None:
    hang_up_mid_stream(signer, upstream)


def test_hang_up_before_the_upstream_answers_cancels_it(signer: Signer, upstream: Server, gateway: Server) -> None:
    req = signer.sign("GET", f"{upstream.url}/v1/stall?where=headers")
    parts = urlsplit(req.url)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(f"GET /?{parts.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert wait_for(
        lambda: (
            "signgate_streams_in_flight{" in (m := call("GET", gateway.url + "/metrics").body.decode())
            and "} 1\n" in m.split("signgate_streams_in_flight{", 1)[1][:40]
        )
    )
    sock.close()
    assert wait_for(lambda: 'code="client_disconnected"' in call("GET", gateway.url + "/metrics").body.decode())


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_embedded_under_stock_uvicorn_a_hang_up_still_cancels_the_upstream(http: str, upstream: Server) -> None:
    """Without signgate serve's protocol to report the loss, a task waits for http.disconnect."""
    port = free_port()
    script = Path(__file__).with_name("embedded_gateway.py")
    argv = [sys.executable, str(script), str(port), http, "--", *gateway_args(upstream)]
    server = Server("embedded-gateway", argv, port, env=ENV).wait_healthy()
    try:
        hang_up_mid_stream(Signer("test", SECRET, server.url), upstream)
        assert wait_for(lambda: 'code="client_disconnected"' in call("GET", server.url + "/metrics").body.decode())
    finally:
        server.stop()


def test_a_client_that_stops_reading_is_dropped_after_the_client_timeout(upstream: Server) -> None:
    """Megabytes of events to a client that reads only the head: once the gateway cannot write for
    --client-timeout, it drops the connection and the upstream call with it."""
    server = start_gateway(*gateway_args(upstream, "--client-timeout", "1"), env=ENV)
    try:
        before = upstream_stats(upstream)["streams_disconnected"]
        req = Signer("test", SECRET, server.url).sign("GET", f"{upstream.url}/v1/sse?n=2000&interval=0&pad=32768")
        parts = urlsplit(req.url)
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(f"GET /?{parts.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
        # ... and read nothing more.
        assert wait_for(lambda: upstream_stats(upstream)["streams_disconnected"] == before + 1, timeout=20)
        assert "read nothing for 1 s" in server.output()
        sock.close()
    finally:
        server.stop()


def test_at_capacity(upstream: Server) -> None:
    server = start_gateway(*gateway_args(upstream, "--max-streams", "1"), env=ENV)
    try:
        s = Signer("test", SECRET, server.url)
        held = s.sign("GET", f"{upstream.url}/v1/sse?n=40&interval=0.05")
        parts = urlsplit(held.url)
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.sendall(f"GET /?{parts.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert b"data: " in read_until(sock, b"data: ")
        reply = send(s.sign("GET", f"{upstream.url}/v1/echo"), {"Origin": ORIGIN})
        assert (reply.status, reply.error_code) == (503, "at_capacity")
        assert reply.headers["retry-after"] == "1"
        sock.close()
    finally:
        server.stop()


def test_metrics_and_access_log_never_hold_secrets(signer: Signer, upstream: Server, gateway: Server) -> None:
    req = signer.sign("POST", f"{upstream.url}/v1/echo", json={"x": 1})
    assert send(req).status == 200
    metrics = call("GET", gateway.url + "/metrics").body.decode()
    assert 'signgate_requests_total{worker="' in metrics and 'code="ok",status="200"' in metrics
    assert "signgate_upstream_ttfb_seconds_bucket" in metrics
    assert wait_for(
        lambda: json.dumps(req.url.rsplit("=", 1)[1]) not in gateway.output() and '"code": "ok"' in gateway.output()
    )
    log = gateway.output()
    signature = req.url.rsplit("=", 1)[1]
    for needle in (SECRET, API_KEY, signature, "X-Sw-", "Bearer"):
        assert needle not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e["key_id"] == "test" and e["upstream_host"] == "127.0.0.1" and e["status"] == 200 for e in lines)


def test_at_capacity_holds_for_requests_whose_bodies_arrived_together(upstream: Server) -> None:
    # The cap was checked before the body was read: requests that all passed it while their bodies
    # arrived were then all relayed at once (six streams under --max-streams 2).
    server = start_gateway(*gateway_args(upstream, "--max-streams", "2"), env=ENV)
    socks = []
    try:
        s = Signer("test", SECRET, server.url)
        for _ in range(6):
            query = urlsplit(s.sign("POST", f"{upstream.url}/v1/sse?n=40&interval=0.05").url).query
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            head = f"POST /?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
            sock.sendall(head.encode())
            socks.append(sock)
        time.sleep(0.5)  # every head has been read and checked; no body yet
        for sock in socks:
            sock.sendall(b"hello")
        statuses = [int(read_until(sock, b"\r\n").split()[1]) for sock in socks]
        assert sorted(statuses) == [200, 200, 503, 503, 503, 503]
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def test_sigterm_drains_in_flight_streams(upstream: Server) -> None:
    server = start_gateway(*gateway_args(upstream), env=ENV)
    s = Signer("test", SECRET, server.url)
    req = s.sign("GET", f"{upstream.url}/v1/sse?n=10&interval=0.1")
    parts = urlsplit(req.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"/?{parts.query}")
    response = conn.getresponse()
    assert response.readline().startswith(b"data: ")
    server.proc.send_signal(signal.SIGTERM)
    rest = response.read()
    conn.close()
    assert rest.endswith(b"data: [DONE]\n\n") and rest.count(b"data: ") == 10
    # uvicorn re-raises SIGTERM once it has drained, so the exit status is the signal's
    assert server.proc.wait(10) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.output()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)
    server.stop()
