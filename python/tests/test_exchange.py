"""One request as the access log records it (signgate.gateway.exchange): the line's fields, and
never the query (which carries the signature), a header value or a body."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgi_client import Peer, scope
from hypothesis import given
from hypothesis import strategies as st
from servers import free_port

from signgate import SignedRequest, Signer
from signgate.gateway import GatewayConfig, KeyConfig, create_app
from signgate.gateway.exchange import Exchange

FIELDS = [
    "ts", "request_id", "method", "key_id", "upstream_host", "status", "code",
    "duration_ms", "ttfb_ms", "bytes_in", "bytes_out",
]  # fmt: skip


def test_a_new_exchange_has_a_fresh_request_id_and_nothing_known_yet() -> None:
    one, other = Exchange.start("POST"), Exchange.start("POST")
    assert len(one.request_id) == 16 and int(one.request_id, 16) >= 0
    assert one.request_id != other.request_id
    entry = json.loads(one.log_line())
    assert list(entry) == FIELDS
    assert {k: entry[k] for k in FIELDS if k not in ("ts", "request_id", "duration_ms")} == {
        "method": "POST", "key_id": "-", "upstream_host": "-", "status": 0, "code": "-", "ttfb_ms": None,
        "bytes_in": 0, "bytes_out": 0,
    }  # fmt: skip
    assert abs(entry["ts"] - time.time()) < 60 and entry["duration_ms"] >= 0


def test_a_client_chosen_method_or_key_id_is_cut_short() -> None:
    ex = Exchange.start("X" * 100)
    ex.key = KeyConfig("k" * 200, ("s",))
    entry = json.loads(ex.log_line())
    assert (entry["method"], entry["key_id"]) == ("X" * 16, "k" * 64)


def test_the_time_to_first_byte_is_in_milliseconds() -> None:
    ex = Exchange.start("GET")
    ex.ttfb = 0.0123456
    assert json.loads(ex.log_line())["ttfb_ms"] == 12.35


texts = st.text(max_size=80)


@given(
    texts,
    texts,
    texts,
    texts,
    texts,
    st.integers(0, 999),
    st.none() | st.floats(0, 1e6),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
)
def test_the_line_is_what_json_dumps_writes(
    request_id: str,
    method: str,
    key_id: str,
    host: str,
    code: str,
    status: int,
    ttfb: float | None,
    bytes_in: int,
    bytes_out: int,
) -> None:
    started = time.perf_counter()
    ex = Exchange(
        request_id, method, started, KeyConfig(key_id, ("s",)), None, host, status, code, bytes_in, bytes_out, ttfb
    )
    line = ex.log_line()
    entry = json.loads(line)
    assert list(entry) == FIELDS
    expected = {
        "ts": entry["ts"], "request_id": request_id, "method": method[:16], "key_id": key_id[:64],
        "upstream_host": host, "status": status, "code": code, "duration_ms": entry["duration_ms"],
        "ttfb_ms": None if ttfb is None else round(ttfb * 1000, 2), "bytes_in": bytes_in, "bytes_out": bytes_out,
    }  # fmt: skip
    assert line == json.dumps(expected)
    assert line.isascii() and "\n" not in line


# -- what a request leaves in the log ---------------------------------------------------------------

SECRET = "exchange-test-secret"
API_KEY = "sk-exchange-never-logged"


def logged(request: SignedRequest, config: GatewayConfig, *, body: bytes | None = None) -> dict[str, object]:
    """The access log line of ``request`` through a real gateway application, in process."""
    lines: list[str] = []

    async def main() -> None:
        app = create_app(config, access_log=lines.append)
        sent = body if body is not None else (request.body or "").encode()
        peer = Peer(sent)
        await app(scope(request), peer.receive, peer.send)
        await app.aclose()

    asyncio.run(main())
    [line] = lines
    for secret in (SECRET, API_KEY, "secret-path", "api_key", "leak", "X-Sw", "private words", "tok-123"):
        assert secret not in line, secret
    for pair in request.url.split("?", 1)[1].split("&"):
        value = pair.split("=", 1)[1]
        assert len(value) < 8 or value not in line  # no value of the signed query, the signature least
    entry = json.loads(line)
    assert list(entry) == FIELDS
    return dict(entry)


@pytest.fixture
def config() -> GatewayConfig:
    key = KeyConfig("app", (SECRET,), headers=(("authorization", f"Bearer {API_KEY}"),))
    return GatewayConfig(keys={"app": key}, allow_private_upstreams=True, connect_timeout=5)


def sign(url: str) -> SignedRequest:
    return Signer("app", SECRET, "http://gw.example").sign(
        "POST", url, json={"prompt": "private words"}, headers={"x-user-token": "tok-123"}
    )


def test_a_relayed_request_logs_the_upstream_host_only(config: GatewayConfig) -> None:
    port = free_port()  # nothing listens there: the relay is refused, after the log knows the host
    request = sign(f"http://127.0.0.1:{port}/v1/secret-path?api_key=leak")
    entry = logged(request, config)
    assert (entry["key_id"], entry["upstream_host"], entry["method"]) == ("app", "127.0.0.1", "POST")
    assert (entry["status"], entry["code"]) == (502, "upstream_unreachable")
    assert entry["bytes_in"] == len((request.body or "").encode())


def test_a_refused_signature_logs_no_part_of_the_url(config: GatewayConfig) -> None:
    request = sign("http://127.0.0.1:9/v1/secret-path?api_key=leak")
    entry = logged(request, config, body=b'{"prompt":"private words!"}')
    assert (entry["status"], entry["code"]) == (401, "body_mismatch")


def test_request_ids_are_distinct_and_differ_in_a_forked_child() -> None:
    import os

    ids = {Exchange.start("GET").request_id for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the id it would give next
        os.write(write, Exchange.start("GET").request_id.encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 16).decode()
    os.close(read)
    os.close(write)
    assert child != Exchange.start("GET").request_id  # not the parent's sequence replayed
