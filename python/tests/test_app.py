"""The application (signgate.gateway.app): ``Gateway.__call__`` runs the steps in order, answers
its own routes and preflights, and refuses whatever needs no body before reading one. Driven in
process through ASGI (asgi_client.Peer); test_gateway.py runs the same application behind a real
server, and test_bypasses.py / test_hostile.py send it hostile bytes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgi_client import Peer, scope
from conftest import FakeClock

from signgate import SignedRequest, Signer
from signgate.gateway import Gateway, GatewayConfig, KeyConfig, UpstreamPrefix, create_app
from signgate.gateway.store import MemoryStore

SECRET = "app-test-secret"
ORIGIN = "https://app.example"
KEY = KeyConfig(
    "app", (SECRET,), allow_upstreams=(UpstreamPrefix.parse("http://127.0.0.1/v1/", "test"),), max_expires=600
)


def config(**changes: Any) -> GatewayConfig:
    settings: dict[str, Any] = {"keys": {"app": KEY}, "cors_origins": (ORIGIN,), "allow_private_upstreams": True}
    return GatewayConfig(**(settings | changes))


def plain_scope(method: str, path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers or []}


def call(app: Gateway, request_scope: dict[str, Any], body: bytes = b"") -> Peer:
    """One request through the application, as a server makes it; the Peer holds the answer."""

    async def main() -> Peer:
        peer = Peer(body)
        await app(request_scope, peer.receive, peer.send)
        return peer

    return asyncio.run(main())


def error(peer: Peer) -> tuple[int, str]:
    code = json.loads(peer.body)["error"]["code"]
    assert peer.headers[b"x-signgate-error"] == code.encode()
    return peer.status, code


def signer(clock: FakeClock | None = None) -> Signer:
    return Signer("app", SECRET, "http://gw.example", clock=clock or (lambda: 1_800_000_000))


# -- the gateway's own answers ------------------------------------------------------------------------


def test_health_and_metrics_answer_at_their_paths() -> None:
    app = create_app(config())
    health = call(app, plain_scope("GET", "/healthz"))
    assert (health.status, health.body) == (200, b'{"status":"ok"}\n')
    assert health.headers[b"cache-control"] == b"no-store" and health.headers[b"x-request-id"]
    head = call(app, plain_scope("HEAD", "/healthz"))
    assert (head.status, head.body, head.headers[b"content-length"]) == (200, b"", b"16")
    metrics = call(app, plain_scope("GET", "/metrics"))
    assert metrics.headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    assert b'code="health",status="200"} 2\n' in metrics.body  # the GET and the HEAD


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/", 400, "malformed"), ("GET", "/v1/chat", 404, "not_found"), ("POST", "/healthz", 404, "not_found")],
)
def test_a_request_without_a_signed_url_is_told_what_the_gateway_answers(
    method: str, path: str, status: int, code: str
) -> None:
    peer = call(create_app(config()), plain_scope(method, path))
    assert error(peer) == (status, code)
    assert "/healthz" in json.loads(peer.body)["error"]["message"]


def test_a_preflight_is_answered_here_with_cors() -> None:
    request = signer().sign("POST", "http://127.0.0.1/v1/chat", json={"a": 1})
    preflight = scope(request, method="OPTIONS")
    preflight["headers"] = [
        (b"origin", ORIGIN.encode()),
        (b"access-control-request-method", b"POST"),
        (b"access-control-request-headers", b"content-type"),
    ]
    peer = call(create_app(config()), preflight)
    assert peer.status == 204 and peer.ended and peer.body == b""
    assert peer.headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert peer.headers[b"access-control-allow-headers"] == b"content-type"
    assert peer.headers[b"x-request-id"]


def test_a_preflight_from_another_origin_is_refused_in_json() -> None:
    request = signer().sign("POST", "http://127.0.0.1/v1/chat")
    preflight = scope(request, method="OPTIONS")
    preflight["headers"] = [(b"origin", b"https://evil.example"), (b"access-control-request-method", b"POST")]
    peer = call(create_app(config()), preflight)
    assert error(peer) == (403, "origin_not_allowed")
    assert b"access-control-allow-origin" not in peer.headers


def test_a_refusal_carries_cors_for_an_allowed_origin() -> None:
    request = Signer("nobody", SECRET, "http://gw.example").sign("GET", "http://127.0.0.1/v1/chat")
    refused = scope(request)
    refused["headers"].append((b"origin", ORIGIN.encode()))
    peer = call(create_app(config()), refused)
    assert error(peer) == (401, "unknown_key")
    assert peer.headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert json.loads(peer.body)["error"]["request_id"] == peer.headers[b"x-request-id"].decode()


# -- what needs no body is refused before the body is read ---------------------------------------------


def untouched(peer: Peer) -> bool:
    """The request's body message is still waiting: the application never read it."""
    return peer.incoming.qsize() == 1


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("unknown key", 401, "unknown_key"),
        ("upstream not allowed", 403, "upstream_not_allowed"),
        ("lifetime past the key's limit", 400, "expiry_too_long"),
        ("bad signature, body not bound", 401, "bad_signature"),
        ("at capacity", 503, "at_capacity"),
        ("upgrade", 400, "upgrade_not_supported"),
    ],
)
def test_cheap_checks_refuse_before_the_body_is_read(case: str, status: int, code: str) -> None:
    app = create_app(config())
    url = "http://127.0.0.1/v1/chat"
    if case == "unknown key":
        request = Signer("nobody", SECRET, "http://gw.example").sign("POST", url)
    elif case == "upstream not allowed":
        request = signer().sign("POST", "http://127.0.0.1/admin")
    elif case == "lifetime past the key's limit":
        request = signer().sign("POST", url, expires_in=601)
    elif case == "bad signature, body not bound":
        request = Signer("app", "another-secret", "http://gw.example").sign("POST", url)
    else:
        request = signer().sign("POST", url)
    request_scope = scope(request)
    if case == "at capacity":
        app.metrics.in_flight = app.config.max_streams
    if case == "upgrade":
        request_scope["headers"].append((b"upgrade", b"websocket"))
    peer = call(app, request_scope, b'{"a": 1}')
    assert error(peer) == (status, code)
    assert untouched(peer)


def test_the_lifetime_limit_is_the_keys_or_else_the_gateways() -> None:
    unlimited = KeyConfig("app", (SECRET,))
    app = create_app(config(keys={"app": unlimited}, max_expires=100))
    peer = call(app, scope(signer().sign("GET", "http://127.0.0.1/v1/chat", expires_in=101)))
    assert error(peer) == (400, "expiry_too_long")
    assert "at most 100 s" in json.loads(peer.body)["error"]["message"]


def test_single_use_urls_need_a_store_shared_by_every_worker() -> None:
    clock = FakeClock(1_800_000_000)
    request = signer(clock).sign("GET", "http://127.0.0.1/v1/chat", single_use=True)
    peer = call(Gateway(config(workers=2), clock=clock), scope(request))
    assert error(peer) == (503, "store_unavailable")
    assert "--store redis://" in json.loads(peer.body)["error"]["message"]


# -- the whole path, to an upstream on a socket --------------------------------------------------------


@asynccontextmanager
async def upstream(answer: bytes) -> AsyncIterator[int]:
    """A raw upstream that answers every request with ``answer``; yields its port."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":", 1)[1]))
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def test_a_single_use_url_is_relayed_once_then_replayed() -> None:
    lines: list[str] = []

    async def main() -> list[Peer]:
        clock = FakeClock(1_800_000_000)
        async with upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok") as port:
            key = KeyConfig("app", (SECRET,))
            app = create_app(config(keys={"app": key}), store=MemoryStore(), clock=clock, access_log=lines.append)
            request: SignedRequest = signer(clock).sign("POST", f"http://127.0.0.1:{port}/v1/chat", single_use=True)
            peers = []
            for _ in range(2):
                peer = Peer()
                await app(scope(request), peer.receive, peer.send)
                peers.append(peer)
            await app.aclose()
            return peers

    first, again = asyncio.run(main())
    assert (first.status, first.body, first.ended) == (200, b"ok", True)
    assert error(again) == (409, "replayed")
    assert [json.loads(line)["code"] for line in lines] == ["ok", "replayed"]


# -- other kinds of connection ---------------------------------------------------------------------------


@pytest.mark.parametrize("server_answers", [True, False], ids=["HTTP answer extension", "close only"])
def test_a_websocket_is_refused(server_answers: bool) -> None:
    async def main() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            sent.append(message)

        extensions: dict[str, Any] = {"websocket.http.response": {}} if server_answers else {}
        await create_app(config())({"type": "websocket", "extensions": extensions}, receive, send)
        return sent

    sent = asyncio.run(main())
    if server_answers:
        start, body = sent
        assert (start["type"], start["status"]) == ("websocket.http.response.start", 400)
        assert json.loads(body["body"])["error"]["code"] == "upgrade_not_supported"
    else:
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": "upgrade_not_supported"}]


def test_lifespan_warns_of_keys_that_may_reach_any_upstream(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> list[str]:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(message["type"])

        await create_app(config(keys={"open": KeyConfig("open", ("s",)), "app": KEY}))(
            {"type": "lifespan"}, receive, send
        )
        return sent

    with caplog.at_level(logging.WARNING, logger="signgate.gateway"):
        assert asyncio.run(main()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert "key 'open' has no allowed upstreams" in caplog.text and "'app'" not in caplog.text
