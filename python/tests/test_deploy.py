"""docs/deploy.md's recipes, run as written with real processes on loopback: nginx terminating
TLS in front of one and two gateways, a shared redis-server, a Redis Cluster and a Sentinel
fail-over.

The nginx site file is deploy/nginx/signgate.conf itself, with only its ports and certificate
paths replaced (tests/deploy_servers.py).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from deploy_servers import Certificate, Nginx, RedisCluster, SentinelGroup, cli, self_signed
from gateway_client import Reply, call, send
from servers import Server, free_port, start_gateway, start_redis

from signgate import SignedRequest, Signer

SECRET = "deploy-test-secret"
API_KEY = "sk-deploy-test-key"
ENV = {"GW_SECRET": SECRET, "UPSTREAM_KEY": API_KEY}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


def gateway_args(upstream: Server, *extra: str) -> list[str]:
    return [
        "--id", "app", "--secret-env", "GW_SECRET", "--header-env", "Authorization=Bearer ${UPSTREAM_KEY}",
        "--allow-upstream", f"{upstream.url}/v1/", "--allow-private-upstreams", "--host", "127.0.0.1", *extra,
    ]  # fmt: skip


def gateways(upstream: Server, count: int, *extra: str) -> list[Server]:
    return [start_gateway(*gateway_args(upstream, *extra), env=ENV) for _ in range(count)]


def stop(servers: Sequence[Server]) -> None:
    for server in servers:
        server.stop()
        assert API_KEY not in server.output() and SECRET not in server.output()


def sign(base: str, method: str, url: str, **kw: object) -> SignedRequest:
    return Signer("app", SECRET, base).sign(method, url, **kw)  # type: ignore[arg-type]


def https(nginx: Nginx, req: SignedRequest) -> Reply:
    """Send a signed request through nginx over verified TLS."""
    target = req.url.split(f":{nginx.port}", 1)[1]
    conn = http.client.HTTPSConnection("localhost", nginx.port, context=nginx.cert.context(), timeout=60)
    try:
        body = req.body.encode() if req.body is not None else None
        conn.request(req.method, target, body=body, headers=req.headers)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


async def fire(requests: Sequence[SignedRequest], nginx: Nginx | None = None) -> list[tuple[int, str]]:
    """Send every request at once, through nginx if given; (status, body) for each."""

    async def one(session: aiohttp.ClientSession, req: SignedRequest) -> tuple[int, str]:
        async with session.request(req.method, req.url, headers=req.headers, data=req.body) as response:
            return response.status, await response.text()

    connector = aiohttp.TCPConnector(limit=0, ssl=nginx.cert.context() if nginx else False)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await asyncio.gather(*(one(session, r) for r in requests))


def at(req: SignedRequest, gateway: Server) -> SignedRequest:
    """The same signed request, sent to another gateway process (the signature ignores the host)."""
    return SignedRequest(gateway.url + "/?" + req.url.split("?", 1)[1], req.method, req.headers, req.body)


def metric(gateway: Server, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry ``labels``, read from the gateway's private port."""
    total = 0.0
    for line in call("GET", gateway.url + "/metrics").body.decode().splitlines():
        sample, _, value = line.rpartition(" ")
        if (sample == name or sample.startswith(name + "{")) and all(f'{k}="{v}"' in sample for k, v in labels.items()):
            total += float(value)
    return total


def away_from_minute_boundary() -> None:
    """Requests-per-minute windows are calendar minutes: keep a burst inside one of them."""
    while time.time() % 60 >= 50 or time.time() % 60 < 1:
        time.sleep(0.2)


def poll(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


# -- nginx: TLS, unbuffered streams, private /metrics ---------------------------------------------------


@pytest.fixture(scope="module")
def one_behind_nginx(
    upstream: Server, cert: Certificate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Nginx, Server]]:
    (gateway,) = gateways(upstream, 1)
    try:
        nginx = Nginx(tmp_path_factory.mktemp("nginx"), [gateway.port], cert)
    except BaseException:
        stop([gateway])
        raise
    yield nginx, gateway
    nginx.stop()
    stop([gateway])


def test_tls_in_front_forwards_signed_requests_as_signed(
    one_behind_nginx: tuple[Nginx, Server], upstream: Server
) -> None:
    nginx, _ = one_behind_nginx
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "ünïcode & spaces?"}]}
    req = sign(nginx.url, "POST", f"{upstream.url}/v1/chat/completions?pieces=3&note=a%20b", json=body)
    reply = https(nginx, req)
    assert reply.status == 200, reply.body
    assert reply.body.endswith(b"data: [DONE]\n\n")
    assert call("GET", upstream.url + "/v1/last-chat").json()["messages"] == body["messages"]
    # A changed byte still fails: nginx passed the signed request on, it did not make it valid.
    tampered = SignedRequest(req.url.replace("pieces%3D3", "pieces%3D4"), req.method, req.headers, req.body)
    assert https(nginx, tampered).status == 401


def test_tls_over_http2_with_curl(one_behind_nginx: tuple[Nginx, Server], upstream: Server, tmp_path: Path) -> None:
    """Browsers hold several streams over one HTTP/2 connection; nginx turns each into an HTTP/1.1
    request to the gateway, with the signed body's length."""
    nginx, _ = one_behind_nginx
    req = sign(nginx.url, "POST", f"{upstream.url}/v1/echo", json={"hello": "h2"})
    assert req.body is not None
    (tmp_path / "body").write_text(req.body)
    headers = [arg for name, value in req.headers.items() for arg in ("-H", f"{name}: {value}")]
    done = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(nginx.cert.cert), "-X", "POST", *headers,
         "--data-binary", f"@{tmp_path / 'body'}", "-w", "\n%{http_version} %{http_code}", req.url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    answer, _, status = done.stdout.rpartition("\n")
    assert status == "2 200", done.stdout
    assert json.loads(answer)["body"] == req.body


def test_streams_pass_through_nginx_unbuffered(one_behind_nginx: tuple[Nginx, Server], upstream: Server) -> None:
    nginx, _ = one_behind_nginx
    stream = uuid.uuid4().hex
    req = sign(nginx.url, "GET", f"{upstream.url}/v1/sse?n=6&interval=0.5&id={stream}")

    async def first_event_then_rest() -> tuple[float, bytes]:
        connector = aiohttp.TCPConnector(ssl=nginx.cert.context())
        async with aiohttp.ClientSession(connector=connector) as session, session.get(req.url) as response:
            assert response.status == 200
            first = await response.content.readuntil(b"\n\n")
            arrived = time.time()
            rest = await response.content.read()
            return arrived, first + rest

    arrived, body = asyncio.run(first_event_then_rest())
    assert body.startswith(b'data: {"i": 0}\n\n') and body.endswith(b"data: [DONE]\n\n")
    sent = call("GET", f"{upstream.url}/v1/sent?id={stream}").json()
    assert len(sent) == 6
    assert arrived < sent[-1], "the first event waited in a buffer until the upstream sent the last"


@pytest.mark.parametrize("path", ["/metrics", "/%6Detrics", "/%6d%65%74%72%69%63%73", "/metrics?format=text"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_metrics_stay_private(one_behind_nginx: tuple[Nginx, Server], path: str, method: str) -> None:
    nginx, gateway = one_behind_nginx
    answer = nginx.raw(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]
    assert b"signgate_" not in answer
    # Each path is one the gateway itself answers with metrics: its own port, on loopback or a
    # private network, is where the scraper reads them.
    assert b"signgate_requests_total" in call("GET", gateway.url + path).body


def test_health_is_public(one_behind_nginx: tuple[Nginx, Server]) -> None:
    nginx, _ = one_behind_nginx
    answer = nginx.raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ok"}\n')


# -- several replicas behind nginx, one shared redis-server ---------------------------------------------


def test_replicas_behind_nginx_share_single_use_and_limits(
    upstream: Server, redis: Server, cert: Certificate, tmp_path: Path
) -> None:
    store = ["--store", f"redis://127.0.0.1:{redis.port}/0", "--limit", "user.requests_per_minute=10"]
    replicas = gateways(upstream, 2, *store)
    nginx: Nginx | None = None
    try:
        nginx = Nginx(tmp_path, [g.port for g in replicas], cert)
        once = sign(nginx.url, "GET", f"{upstream.url}/v1/echo", single_use=True)
        assert [https(nginx, once).status for _ in range(3)] == [200, 409, 409]
        # nginx spread the three over both replicas: one refused what the other had admitted
        assert all(metric(g, "signgate_requests_total", code="ok") + metric(g, "signgate_requests_total",
                   code="replayed") >= 1 for g in replicas)  # fmt: skip

        away_from_minute_boundary()
        user = f"lb-{uuid.uuid4().hex}"
        burst = [sign(nginx.url, "GET", f"{upstream.url}/v1/echo", user=user) for _ in range(30)]
        assert Counter(status for status, _ in asyncio.run(fire(burst, nginx))) == {200: 10, 429: 20}
        # each replica admitted some and refused some: they counted together
        for gateway in replicas:
            assert metric(gateway, "signgate_requests_total", code="requests_per_minute_exceeded") >= 1
    finally:
        if nginx is not None:
            nginx.stop()
        stop(replicas)


def test_a_stream_survives_the_other_replicas_restart(
    upstream: Server, redis: Server, cert: Certificate, tmp_path: Path
) -> None:
    """A rolling restart: replica B is stopped (its own stream drains) and started again while a
    stream on replica A goes on, and new requests keep being answered through nginx."""
    replicas = gateways(upstream, 2, "--store", f"redis://127.0.0.1:{redis.port}/1")
    try:
        nginx = Nginx(tmp_path, [g.port for g in replicas], cert)
    except BaseException:
        stop(replicas)
        raise

    def holder() -> Server | None:
        busy = [g for g in replicas if metric(g, "signgate_streams_in_flight") >= 1]
        return busy[0] if len(busy) == 1 else None

    async def stream(path: str) -> tuple[bytes, float]:
        """The whole stream, and when its last byte arrived."""
        req = sign(nginx.url, "GET", f"{upstream.url}{path}")
        connector = aiohttp.TCPConnector(ssl=nginx.cert.context())
        async with aiohttp.ClientSession(connector=connector) as session, session.get(req.url) as response:
            assert response.status == 200
            body = await response.read()
            return body, time.time()

    async def scenario() -> None:
        long = asyncio.create_task(stream("/v1/sse?n=80&interval=0.25"))  # 20 s
        await asyncio.to_thread(poll, lambda: holder() is not None, 30, "the long stream to start")
        a = holder()
        b = replicas[1 - replicas.index(a)]  # type: ignore[arg-type]
        short: asyncio.Task[tuple[bytes, float]] | None = None
        for _ in range(6):  # round robin: the next stream goes to B
            short = asyncio.create_task(stream("/v1/sse?n=12&interval=0.25"))
            await asyncio.to_thread(
                poll, lambda: metric(a, "signgate_streams_in_flight") + metric(b, "signgate_streams_in_flight") == 2,
                30, "the short stream to start",
            )  # fmt: skip
            if metric(b, "signgate_streams_in_flight") == 1:
                break
            await short
        assert short is not None and metric(b, "signgate_streams_in_flight") == 1
        b.proc.send_signal(signal.SIGTERM)
        while b.proc.poll() is None:  # B drains its stream; nginx sends new requests to A
            chat = sign(nginx.url, "POST", f"{upstream.url}/v1/chat/completions", json={"model": "m", "stream": True})
            reply = await asyncio.to_thread(https, nginx, chat)
            assert reply.status == 200, reply.body
            await asyncio.sleep(0.1)
        body, _ = await short
        assert body.count(b"data: {") == 12 and body.endswith(b"data: [DONE]\n\n"), "B cut its stream on SIGTERM"
        stop([b])
        restarted = await asyncio.to_thread(start_gateway, *gateway_args(upstream, "--store",
                                            f"redis://127.0.0.1:{redis.port}/1"), env=ENV, port=b.port)  # fmt: skip
        replicas[replicas.index(b)] = restarted
        back_at = time.time()
        body, ended_at = await long
        assert ended_at > back_at, "the long stream ended before B was back: make it longer"
        assert body.count(b"data: {") == 80 and body.endswith(b"data: [DONE]\n\n")

    try:
        asyncio.run(scenario())

        def serves_again() -> bool:
            assert https(nginx, sign(nginx.url, "GET", f"{upstream.url}/v1/echo")).status == 200
            return all(metric(g, "signgate_requests_total", code="ok") >= 1 for g in replicas)

        poll(serves_again, 30, "nginx to send requests to the restarted replica")
    finally:
        nginx.stop()
        stop(replicas)


# -- Redis Cluster --------------------------------------------------------------------------------------


def test_redis_cluster_store_holds_single_use_and_limits(upstream: Server, tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path)
    gws: list[Server] = []
    try:
        owner = cluster.owner("{signgate}")
        seed = next(node for node in cluster.nodes if node is not owner)  # the client must find the owner
        gws = gateways(upstream, 2, "--store", f"redis+cluster://127.0.0.1:{seed.port}",
                       "--limit", "user.requests_per_minute=20", "--limit", "tenant.concurrent_streams=5")  # fmt: skip
        once = sign(gws[0].url, "GET", f"{upstream.url}/v1/echo", single_use=True)
        assert [send(at(once, g)).status for g in (gws[0], gws[1], gws[0])] == [200, 409, 409]

        away_from_minute_boundary()
        user = f"cluster-{uuid.uuid4().hex}"
        burst = [at(sign(gws[0].url, "GET", f"{upstream.url}/v1/echo", user=user), gws[i % 2]) for i in range(60)]
        assert Counter(status for status, _ in asyncio.run(fire(burst))) == {200: 20, 429: 40}

        tenant = f"cluster-{uuid.uuid4().hex}"
        streams = [at(sign(gws[0].url, "GET", f"{upstream.url}/v1/sse?n=10&interval=0.15", tenant=tenant), gws[i % 2])
                   for i in range(20)]  # fmt: skip
        assert Counter(status for status, _ in asyncio.run(fire(streams))) == {200: 5, 429: 15}
        after = [at(sign(gws[0].url, "GET", f"{upstream.url}/v1/echo", tenant=tenant), gws[i % 2]) for i in range(5)]
        assert Counter(status for status, _ in asyncio.run(fire(after))) == {200: 5}, "leases were not released"

        # Everything is in the one slot of {signgate}, on the node that serves it.
        assert [int(cli(node.port, "DBSIZE")) > 0 for node in cluster.nodes] == [n is owner for n in cluster.nodes]
        for gateway in gws:
            assert metric(gateway, "signgate_store_errors_total") == 0
    finally:
        stop(gws)
        cluster.stop()


# -- Sentinel -------------------------------------------------------------------------------------------


def test_sentinel_fail_over_fails_closed_then_recovers_with_state(upstream: Server, tmp_path: Path) -> None:
    group = SentinelGroup(tmp_path)
    gws: list[Server] = []
    try:
        old_master = group.master.port
        assert group.sentinel is not None and group.replica is not None
        # The first sentinel named is down: the client asks the next one.
        url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{group.sentinel.port}/{group.SERVICE}/0"
        (gateway,) = gws = gateways(upstream, 1, "--store", url, "--limit", "user.tokens_per_day=100")
        user = f"sentinel-{uuid.uuid4().hex}"

        def chat() -> Reply:
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "count"}]}
            return send(
                sign(gateway.url, "POST", f"{upstream.url}/v1/chat/completions?pieces=20", json=body, user=user)
            )

        assert chat().status == 200  # 11 prompt + 40 completion tokens of 100
        once = sign(gateway.url, "GET", f"{upstream.url}/v1/echo", single_use=True)
        twice = sign(gateway.url, "GET", f"{upstream.url}/v1/echo", uses=2)
        assert (send(once).status, send(twice).status) == (200, 200)
        poll(lambda: cli(old_master, "KEYS", "*:tokens:*") != "", 10, "the token count to reach Redis")
        group.wait_in_sync()

        group.master.proc.kill()  # a crash, not a clean shutdown
        statuses: list[tuple[int, str]] = []
        deadline = time.monotonic() + 90
        while not statuses or statuses[-1][0] != 200:
            assert time.monotonic() < deadline, f"the gateway did not recover in 90 s: {statuses[-5:]}"
            probe = send(sign(gateway.url, "GET", f"{upstream.url}/v1/echo", user=f"probe-{len(statuses)}"))
            statuses.append((probe.status, probe.error_code if probe.status != 200 else "ok"))
            time.sleep(0.1)
        assert statuses[0] == (503, "store_unavailable"), statuses[:3]
        assert set(statuses[:-1]) == {(503, "store_unavailable")}
        assert group.master_port() == group.replica.port

        # What the old master knew, the new one knows: single use, uses, the token budget.
        assert [send(once).status, send(twice).status, send(twice).status] == [
            409, 200, 409,
        ]  # fmt: skip
        assert chat().status == 200  # 51 of 100 were used: admitted, now 102
        refused = chat()
        assert (refused.status, refused.error_code) == (429, "tokens_per_day_exceeded")
    finally:
        stop(gws)
        group.stop()
