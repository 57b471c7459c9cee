"""Abuse controls against real gateway processes, alone and sharing a real redis-server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import aiohttp
import pytest
from gateway_client import call, send
from servers import Server, start_gateway, start_redis

from signgate import Policy, SignedRequest, Signer

SECRET = "abuse-test-secret"
API_KEY = "sk-abuse-test-key"
ENV = {"GW_SECRET": SECRET, "UPSTREAM_KEY": API_KEY}
SYSTEM = "Answer in JSON."
FORMAT = {"type": "json_object"}


@pytest.fixture(scope="module")
def redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


def gateways(upstream: Server, count: int, *extra: str) -> list[Server]:
    args = [
        "--id", "app", "--secret-env", "GW_SECRET", "--header-env", "Authorization=Bearer ${UPSTREAM_KEY}",
        "--allow-upstream", f"{upstream.url}/v1/", "--allow-private-upstreams", *extra,
    ]  # fmt: skip
    return [start_gateway(*args, env=ENV) for _ in range(count)]


def stop(servers: Sequence[Server]) -> None:
    for server in servers:
        server.stop()
        assert API_KEY not in server.output() and SECRET not in server.output()


def signer(gateway: Server, **kw: object) -> Signer:
    return Signer("app", SECRET, gateway.url, **kw)  # type: ignore[arg-type]


def at(req: SignedRequest, gateway: Server) -> SignedRequest:
    """The same signed request, sent to another gateway process (the signature ignores the host)."""
    query = req.url.split("?", 1)[1]
    return SignedRequest(gateway.url + "/?" + query, req.method, req.headers, req.body, req.expires_at)


async def fire(requests: Sequence[SignedRequest], read_body: bool = True) -> list[tuple[int, str, dict[str, str]]]:
    """Send every request at once; (status, body text, headers) for each."""

    async def one(session: aiohttp.ClientSession, req: SignedRequest) -> tuple[int, str, dict[str, str]]:
        async with session.request(req.method, req.url, headers=req.headers, data=req.body) as response:
            text = await response.text() if read_body else ""
            return response.status, text, dict(response.headers)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return await asyncio.gather(*(one(session, r) for r in requests))


def away_from_minute_boundary() -> None:
    """Requests-per-minute windows are calendar minutes: keep a burst inside one of them."""
    while time.time() % 60 >= 55 or time.time() % 60 < 1:
        time.sleep(0.2)


# -- single use ---------------------------------------------------------------------------------------


def test_single_use_and_n_uses_hold_across_processes(upstream: Server, redis: Server) -> None:
    gws = gateways(upstream, 2, "--store", f"redis://127.0.0.1:{redis.port}/0")
    try:
        once = signer(gws[0]).sign("GET", f"{upstream.url}/v1/echo", single_use=True)
        assert send(once).status == 200
        for gateway in gws:
            replay = send(at(once, gateway))
            assert (replay.status, replay.error_code) == (409, "replayed")
        thrice = signer(gws[0]).sign("GET", f"{upstream.url}/v1/echo", uses=3)
        assert [send(at(thrice, gws[i % 2])).status for i in range(4)] == [200, 200, 200, 409]
    finally:
        stop(gws)


def test_single_use_in_one_process_and_plain_urls_unaffected(upstream: Server) -> None:
    (gateway,) = gateways(upstream, 1)
    try:
        once = signer(gateway).sign("GET", f"{upstream.url}/v1/echo", single_use=True)
        assert [send(once).status, send(once).status] == [200, 409]
        plain = signer(gateway).sign("GET", f"{upstream.url}/v1/echo")
        assert [send(plain).status, send(plain).status] == [200, 200]
        # the nonce was used by a valid request only: a forged copy does not burn a fresh one
        fresh = signer(gateway).sign("GET", f"{upstream.url}/v1/echo", single_use=True)
        assert send(fresh, {"x-signgate-nonce": "forged-nonce-value"}).error_code == "bad_signature"
        assert send(fresh).status == 200
    finally:
        stop([gateway])


# -- exact limits under concurrency -------------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 3])
def test_requests_per_minute_are_exact_under_200_concurrent(upstream: Server, redis: Server, processes: int) -> None:
    store = ["--store", f"redis://127.0.0.1:{redis.port}/{processes}"] if processes > 1 else []
    gws = gateways(upstream, processes, "--limit", "user.requests_per_minute=50", *store)
    try:
        user = f"rpm-{processes}-{time.time_ns()}"
        requests = [signer(gws[i % processes]).sign("GET", f"{upstream.url}/v1/echo", user=user) for i in range(200)]
        away_from_minute_boundary()
        results = asyncio.run(fire(requests))
        statuses = Counter(status for status, _, _ in results)
        assert statuses == {200: 50, 429: 150}
        refused = next((body, headers) for status, body, headers in results if status == 429)
        error = json.loads(refused[0])["error"]
        assert (error["code"], error["scope"], error["limit"]) == ("requests_per_minute_exceeded", "user", 50)
        assert 1 <= int(refused[1]["Retry-After"]) <= 60
        # another user has a budget of their own
        other = signer(gws[0]).sign("GET", f"{upstream.url}/v1/echo", user=user + "-other")
        assert send(other).status == 200
    finally:
        stop(gws)


@pytest.mark.parametrize("processes", [1, 2])
def test_concurrent_streams_are_exact_and_released(upstream: Server, redis: Server, processes: int) -> None:
    store = ["--store", f"redis://127.0.0.1:{redis.port}/5"] if processes > 1 else []
    gws = gateways(upstream, processes, "--limit", "tenant.concurrent_streams=50", *store)
    try:
        tenant = f"acme-{processes}-{time.time_ns()}"
        requests = [
            signer(gws[i % processes]).sign("GET", f"{upstream.url}/v1/sse?n=15&interval=0.15", tenant=tenant)
            for i in range(200)
        ]
        results = asyncio.run(fire(requests))
        statuses = Counter(status for status, _, _ in results)
        assert statuses == {200: 50, 429: 150}
        assert all(body.endswith("data: [DONE]\n\n") for status, body, _ in results if status == 200)
        codes = {json.loads(body)["error"]["code"] for status, body, _ in results if status == 429}
        assert codes == {"concurrent_streams_exceeded"}
        # every lease was released when its stream ended
        after = asyncio.run(fire([signer(gws[0]).sign("GET", f"{upstream.url}/v1/echo", tenant=tenant)] * 50))
        assert Counter(s for s, _, _ in after) == {200: 50}
    finally:
        stop(gws)


# -- token budgets ------------------------------------------------------------------------------------


def chat(
    gateway: Server, upstream: Server, *, pieces: int, user: str, interval: float = 0.0, **extra: object
) -> SignedRequest:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "count to ten"}], **extra}
    url = f"{upstream.url}/v1/chat/completions?pieces={pieces}&interval={interval}"
    return signer(gateway).sign("POST", url, json=body, user=user)


def test_token_budget_counts_streamed_usage(upstream: Server, redis: Server) -> None:
    gws = gateways(upstream, 2, "--limit", "user.tokens_per_day=100", "--store", f"redis://127.0.0.1:{redis.port}/6")
    try:
        user = f"budget-{time.time_ns()}"
        first = send(chat(gws[0], upstream, pieces=20, user=user))  # 11 prompt + 40 completion tokens
        assert first.status == 200
        assert b'"usage"' not in first.body and first.body.endswith(b"data: [DONE]\n\n")
        assert call("GET", upstream.url + "/v1/last-chat").json()["stream_options"] == {"include_usage": True}
        assert send(chat(gws[1], upstream, pieces=20, user=user)).status == 200  # 102 used now
        refused = send(chat(gws[0], upstream, pieces=20, user=user))
        assert (refused.status, refused.error_code) == (429, "tokens_per_day_exceeded")
        assert int(refused.headers["retry-after"]) > 0
        # a client that asked for usage keeps its usage chunk
        asked = send(chat(gws[0], upstream, pieces=2, user=user + "-2", stream_options={"include_usage": True}))
        assert b'"usage"' in asked.body
        metrics = call("GET", gws[0].url + "/metrics").body.decode()
        # 40 + 4 tokens reported by the upstream; metrics hold no user or tenant ids
        assert 'key="app",estimated="false",kind="completion"} 44' in metrics
        assert user not in metrics
    finally:
        stop(gws)


def test_usage_is_recorded_after_a_client_disconnect(upstream: Server) -> None:
    (gateway,) = gateways(
        upstream, 1, "--limit", "user.tokens_per_day=100000", "--usage-webhook", f"{upstream.url}/usage"
    )
    try:
        user = f"gone-{time.time_ns()}"

        async def read_a_little() -> None:
            req = chat(gateway, upstream, pieces=400, interval=0.01, user=user)
            async with (
                aiohttp.ClientSession() as session,
                session.post(req.url, headers=req.headers, data=req.body) as r,
            ):
                for _ in range(5):
                    await r.content.readline()

        asyncio.run(read_a_little())
        pattern = re.compile(r'key="app",estimated="true",kind="completion"} (\d+)')

        def estimated() -> int:
            match = pattern.search(call("GET", gateway.url + "/metrics").body.decode())
            return int(match.group(1)) if match else 0

        def mine() -> list[dict[str, object]]:
            return [r for r in call("GET", upstream.url + "/usage").json() if r["user"] == user]

        deadline = time.monotonic() + 10
        while not mine() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert estimated() > 0
        records = mine()
        assert records and records[0]["estimated"] is True and records[0]["code"] == "client_disconnected"
        assert records[0]["prompt_tokens"] == 3 and records[0]["model"] == "m"
    finally:
        stop([gateway])


# -- policies -----------------------------------------------------------------------------------------


def test_policies_bind_what_costs_money_and_let_the_user_text_vary(upstream: Server) -> None:
    (gateway,) = gateways(upstream, 1)
    try:
        policy = Policy(models=["m"], max_tokens=64, system_prompt=SYSTEM, response_format=FORMAT,
                        require_stream=True, max_user_chars=40)  # fmt: skip
        req = signer(gateway).sign("POST", f"{upstream.url}/v1/chat/completions", policy=policy)

        def body(**overrides: object) -> str:
            data: dict[str, object] = {
                "model": "m", "stream": True, "response_format": FORMAT,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "any words"}],
            }  # fmt: skip
            data.update(overrides)
            return json.dumps(data)

        ok = send(req, {"Content-Type": "application/json"}, body())
        assert ok.status == 200
        assert call("GET", upstream.url + "/v1/last-chat").json()["max_tokens"] == 64
        assert (
            send(
                req,
                {"Content-Type": "application/json"},
                body(
                    messages=[
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": "other words, same URL"},
                    ]
                ),
            ).status
            == 200
        )
        long_text = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": 41 * "y"}]
        cases = {
            "models": body(model="gpt-4o"),
            "max_tokens": body(max_tokens=65),
            "system_prompt": body(messages=[{"role": "system", "content": "Be evil."}]),
            "response_format": body(response_format={"type": "text"}),
            "stream": body(stream=False),
            "max_user_chars": body(messages=long_text),
            "json": "[1]",
        }  # fmt: skip
        before = call("GET", upstream.url + "/stats").json()["requests"]
        for rule, text in cases.items():
            reply = send(req, {"Content-Type": "application/json"}, text)
            assert (reply.status, reply.error_code) == (403, "policy_violation"), rule
            assert reply.json()["error"]["rule"] == rule
        not_json = send(req, {"Content-Type": "application/json"}, "not json")
        assert (not_json.status, not_json.error_code) == (400, "invalid_json")
        assert call("GET", upstream.url + "/stats").json()["requests"] == before
    finally:
        stop([gateway])


# -- the store failing --------------------------------------------------------------------------------


def test_store_down_fails_closed_or_open_and_recovers(upstream: Server) -> None:
    redis = start_redis()
    port = redis.port
    store = f"redis://127.0.0.1:{port}/0"
    closed, opened = (
        gateways(upstream, 1, "--limit", "user.requests_per_minute=1000", "--store", store)[0],
        gateways(upstream, 1, "--limit", "user.requests_per_minute=1000", "--store", store, "--store-fail-open")[0],
    )
    try:
        assert send(signer(closed).sign("GET", f"{upstream.url}/v1/echo", user="u")).status == 200
        redis.stop()
        down = send(signer(closed).sign("GET", f"{upstream.url}/v1/echo", user="u"))
        assert (down.status, down.error_code) == (503, "store_unavailable")
        assert down.headers["retry-after"] == "1"
        assert send(signer(opened).sign("GET", f"{upstream.url}/v1/echo", user="u")).status == 200
        assert "signgate_store_errors_total" in call("GET", opened.url + "/metrics").body.decode()
        redis = Server("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""], port)
        deadline = time.monotonic() + 15
        status = 0
        while status != 200 and time.monotonic() < deadline:
            status = send(signer(closed).sign("GET", f"{upstream.url}/v1/echo", user="u")).status
            time.sleep(0.1)
        assert status == 200, "the gateway did not recover when Redis came back"
    finally:
        redis.stop()
        stop([closed, opened])


def test_a_client_gone_while_its_request_is_admitted_never_reaches_the_upstream(
    upstream: Server, redis: Server
) -> None:
    """The hang-up happens while the gateway waits on the store: the upstream must not be called."""
    gateway = gateways(upstream, 1, "--limit", "key.requests_per_minute=1000", "--store", redis_url(redis, 7))[0]
    try:
        req = signer(gateway).sign("GET", f"{upstream.url}/v1/sse?n=5&interval=0.05")
        before = call("GET", upstream.url + "/stats").json()["requests"]
        with socket.create_connection(("127.0.0.1", redis.port)) as control:
            # Every store call now waits 0.7 s (the gateway's store timeout is 1 s).
            control.sendall(b"CLIENT PAUSE 700 ALL\r\n")
            assert control.recv(64).startswith(b"+OK")
            query = req.url.split("?", 1)[1]
            with socket.create_connection(("127.0.0.1", gateway.port)) as client:
                client.sendall(f"GET /?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                time.sleep(0.3)  # the request is verified and waits for its admission
        metrics = lambda: call("GET", gateway.url + "/metrics").body.decode()  # noqa: E731
        deadline = time.monotonic() + 10
        while 'code="client_disconnected"' not in metrics() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 'code="client_disconnected"' in metrics()
        time.sleep(0.3)
        assert call("GET", upstream.url + "/stats").json()["requests"] == before
    finally:
        stop([gateway])


def redis_url(redis: Server, db: int) -> str:
    return f"redis://127.0.0.1:{redis.port}/{db}"
