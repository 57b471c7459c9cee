"""Revocation through real gateway processes: sharing a real redis-server, through the CLI, the
Python API and the admin endpoint, and ending live streams (``--revoke-live``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis as redis_py
from gateway_client import Reply, call, send
from raw_http import fetch
from servers import Server, free_port, start_gateway, start_redis

from signgate import Revoker, SignedRequest, Signer

SECRET = "revocation-test-secret"
ADMIN_TOKEN = "admin-token-for-the-tests-0123456789"
ENV = {"GW_SECRET": SECRET, "SIGNGATE_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture(scope="module")
def redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


def config_file(tmp_path: Path, upstream: Server, gateway: str = "") -> Path:
    """Two keys: ``app`` counts nothing (a revocation is one MGET), ``limited`` has per-user limits
    (a revocation is checked in the admission script)."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
allow_private_upstreams = true
{gateway}

[keys.app]
secret_env = ["GW_SECRET"]
allow_upstreams = ["{upstream.url}/v1/"]

[keys.limited]
secret_env = ["GW_SECRET"]
allow_upstreams = ["{upstream.url}/v1/"]

[keys.limited.limits.user]
requests_per_minute = 1000
"""
    )
    return path


def start(config: Path, *extra: str) -> Server:
    return start_gateway("--config", str(config), *extra, env=ENV)


def stop(servers: Sequence[Server]) -> None:
    for server in servers:
        server.stop()
        output = server.output()
        assert SECRET not in output and ADMIN_TOKEN not in output


def at(req: SignedRequest, gateway: Server) -> SignedRequest:
    """The same signed request, sent to another gateway process (the signature ignores the host)."""
    return SignedRequest(gateway.url + "/?" + req.url.split("?", 1)[1], req.method, req.headers, req.body,
                         req.expires_at)  # fmt: skip


def revoke_cli(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "signgate", "revoke", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def assert_revoked(reply: Reply, scope: str) -> None:
    assert (reply.status, reply.error_code) == (401, "revoked"), reply.body
    assert reply.headers["x-signgate-error"] == "revoked"
    assert reply.json()["error"]["scope"] == scope


def test_a_user_revoked_on_one_gateway_is_refused_on_another_within_one_request(
    tmp_path: Path, upstream: Server, redis: Server
) -> None:
    store = f"redis://127.0.0.1:{redis.port}/0"
    config = config_file(tmp_path, upstream)
    one, two = start(config, "--store", store), start(config, "--store", store)
    try:
        echo = f"{upstream.url}/v1/echo"
        plain = Signer("app", SECRET, one.url).sign("GET", echo, user="u-revoked")
        limited = Signer("limited", SECRET, one.url).sign("GET", echo, user="u-revoked", tenant="acme")
        bystander = Signer("app", SECRET, one.url).sign("GET", echo, user="u-other")
        look_alike = Signer("app", SECRET, one.url).sign("GET", echo, user="U-REVOKED")
        for req in (plain, limited, bystander, look_alike):
            for gateway in (one, two):
                assert send(at(req, gateway)).status == 200

        revocation = revoke_cli("--user", "u-revoked", "--store", store)
        assert (revocation["kind"], revocation["id"]) == ("user", "u-revoked")

        # The very next request, on either process, whichever way it is admitted.
        assert_revoked(send(at(plain, two)), "user")
        assert_revoked(send(at(limited, one)), "user")
        assert_revoked(send(at(limited, two)), "user")
        assert_revoked(send(at(plain, one)), "user")
        for req in (bystander, look_alike):  # another user, and the same letters in another case
            assert send(at(req, two)).status == 200

        # The CLI returned once the revocation's second had passed: a URL signed now works.
        fresh = Signer("app", SECRET, one.url).sign("GET", echo, user="u-revoked")
        assert send(at(fresh, two)).status == 200
        assert send(at(Signer("limited", SECRET, one.url).sign("GET", echo, user="u-revoked"), one)).status == 200
    finally:
        stop([one, two])


def test_tenants_keys_and_nonces_are_revoked_through_the_python_api(
    tmp_path: Path, upstream: Server, redis: Server
) -> None:
    store = f"redis://127.0.0.1:{redis.port}/0"
    config = config_file(tmp_path, upstream)
    one, two = start(config, "--store", store), start(config, "--store", store)
    echo = f"{upstream.url}/v1/echo"
    try:
        tenant_a = Signer("limited", SECRET, one.url).sign("GET", echo, user="u1", tenant="tenant-a")
        tenant_b = Signer("limited", SECRET, one.url).sign("GET", echo, user="u1", tenant="tenant-b")
        once = Signer("app", SECRET, one.url).sign("GET", echo, uses=5)
        other_nonce = Signer("app", SECRET, one.url).sign("GET", echo, uses=5)
        assert [send(at(r, two)).status for r in (tenant_a, tenant_b, once, other_nonce)] == [200] * 4
        with Revoker(store) as revoker:
            revoker.revoke(tenant="tenant-a")
            assert_revoked(send(at(tenant_a, two)), "tenant")
            assert send(at(tenant_b, one)).status == 200

            revoker.revoke(nonce=once.headers["x-signgate-nonce"])
            assert_revoked(send(at(once, one)), "nonce")  # not 409: it had uses left
            assert send(at(other_nonce, two)).status == 200

            key_url = Signer("app", SECRET, one.url).sign("GET", echo)
            revoker.revoke(key="app")
            assert_revoked(send(at(key_url, two)), "key")
            assert send(at(tenant_b, two)).status == 200  # another key
            assert send(at(Signer("app", SECRET, one.url).sign("GET", echo), one)).status == 200
            kinds = {(r.kind, r.id) for r in revoker.revocations()}
            assert {("tenant", "tenant-a"), ("key", "app"), ("nonce", once.headers["x-signgate-nonce"])} <= kinds
    finally:
        stop([one, two])


def test_revocations_expire_once_no_url_they_cover_can_be_valid(
    tmp_path: Path, upstream: Server, redis: Server
) -> None:
    """The gateway announces how long its URLs live (max_expires 2 + skew 1 + 1 s of rounding):
    a revocation made with the Revoker lasts that long, then Redis drops it."""
    namespace_store = f"redis://127.0.0.1:{redis.port}/3"
    config = config_file(tmp_path, upstream, "max_expires = 2\nskew = 1")
    gateway = start(config, "--store", namespace_store)
    client = redis_py.Redis(port=redis.port, db=3)
    try:
        assert client.get("{signgate}:revocation-lifetime") == b"4"
        revocation = revoke_cli("--user", "short", "--store", namespace_store, "--no-wait")
        assert revocation["expires_at"] - revocation["at"] in (4, 5)  # type: ignore[operator]
        assert 0 < client.ttl("{signgate}:revoked:user:short") <= 4
        deadline = time.monotonic() + 15
        while client.exists("{signgate}:revoked:user:short") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not client.exists("{signgate}:revoked:user:short")
        with Revoker(namespace_store) as revoker:
            assert revoker.revocations() == []
        # A URL signed now for that user is served.
        assert send(Signer("app", SECRET, gateway.url, expires_in=2).sign("GET", f"{upstream.url}/v1/echo",
                                                                          user="short")).status == 200  # fmt: skip
    finally:
        client.close()
        stop([gateway])


# -- the admin endpoint ---------------------------------------------------------------------------------


def admin_call(port: int, method: str, path: str, body: object = None, token: str | None = ADMIN_TOKEN,
               scheme: str = "Bearer") -> Reply:  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    data = None if body is None else json.dumps(body)
    return call(method, f"http://127.0.0.1:{port}{path}", headers, data)


def test_the_admin_endpoint_revokes_on_its_own_port_only_and_with_its_token(tmp_path: Path, upstream: Server) -> None:
    admin_port = free_port()
    gateway = start(config_file(tmp_path, upstream), "--admin-port", str(admin_port),
                    "--admin-token-env", "SIGNGATE_ADMIN_TOKEN")  # fmt: skip
    echo = f"{upstream.url}/v1/echo"
    try:
        before = Signer("app", SECRET, gateway.url).sign("GET", echo, user="banned")
        assert send(before).status == 200

        # Without the token, with another, or in another scheme: refused, whatever the path.
        for token, scheme in ((None, "Bearer"), ("wrong-token-0123456789abcdef", "Bearer"), (ADMIN_TOKEN, "Basic"),
                              (ADMIN_TOKEN + "x", "Bearer"), (ADMIN_TOKEN[:-1], "Bearer")):  # fmt: skip
            for path in ("/revoke", "/nowhere"):
                reply = admin_call(admin_port, "POST", path, {"user": "banned"}, token, scheme)
                assert (reply.status, reply.error_code) == (401, "unauthorized")
        # A signed URL sent to the admin port is not relayed there.
        relayed = call("GET", f"http://127.0.0.1:{admin_port}/?" + before.url.split("?", 1)[1], before.headers)
        assert (relayed.status, relayed.error_code) == (401, "unauthorized")
        # Never on the public port, token or not.
        reply = call("POST", f"{gateway.url}/revoke", {"Authorization": f"Bearer {ADMIN_TOKEN}"}, '{"user":"banned"}')
        assert (reply.status, reply.error_code) == (404, "not_found")
        assert send(before).status == 200

        # Bad bodies name what is wrong.
        for body, code in (({"user": "a", "tenant": "b"}, "malformed"), ({"user": "has space"}, "malformed"),
                           ({"group": "x"}, "invalid_json"), ([1], "invalid_json")):  # fmt: skip
            reply = admin_call(admin_port, "POST", "/revoke", body)
            assert (reply.status, reply.error_code) == (400, code), reply.body
        bad = call("POST", f"http://127.0.0.1:{admin_port}/revoke", {"Authorization": f"Bearer {ADMIN_TOKEN}"},
                   '{"user": "a", "user": "b"}')  # fmt: skip
        assert bad.error_code == "invalid_json"

        reply = admin_call(admin_port, "POST", "/revoke", {"user": "banned"})
        assert reply.status == 200, reply.body
        result = reply.json()
        assert result["revoked"]["kind"] == "user" and result["revoked"]["id"] == "banned"
        assert result["streams_ended"] == 0
        assert_revoked(send(before), "user")
        listed = admin_call(admin_port, "GET", "/revocations").json()["revocations"]
        assert [(r["kind"], r["id"]) for r in listed] == [("user", "banned")]

        # The CLI through the admin endpoint (a memory store has no other way in).
        nonce_url = Signer("app", SECRET, gateway.url).sign("GET", echo, uses=3)
        assert send(nonce_url).status == 200
        nonce = nonce_url.headers["x-signgate-nonce"]
        # A nonce may start with '-': given as --nonce=VALUE, argparse cannot take it for an option.
        out = revoke_cli(f"--nonce={nonce}", "--admin", f"http://127.0.0.1:{admin_port}", env=ENV)
        assert out["kind"] == "nonce"
        assert_revoked(send(nonce_url), "nonce")
        assert send(Signer("app", SECRET, gateway.url).sign("GET", echo, user="banned")).status == 200
    finally:
        stop([gateway])


def test_the_admin_endpoint_is_off_by_default_and_refuses_to_start_unsafe(tmp_path: Path, upstream: Server) -> None:
    config = config_file(tmp_path, upstream)
    gateway = start(config)
    try:
        reply = call("POST", f"{gateway.url}/revoke", {"Authorization": f"Bearer {ADMIN_TOKEN}"}, '{"user":"u"}')
        assert reply.status == 404
        assert "admin endpoint on" not in gateway.output()
    finally:
        stop([gateway])
    port = free_port()
    for extra, message in (
        (["--admin-port", str(port)], "--admin-port needs --admin-token-env"),
        (["--admin-port", str(port), "--admin-token-env", "NOT_SET_ANYWHERE"], "NOT_SET_ANYWHERE is not set"),
        (["--admin-port", str(port), "--admin-token-env", "SHORT"], "at least 16 characters"),
        (["--admin-token-env", "SIGNGATE_ADMIN_TOKEN"], "needs --admin-port"),
        (["--port", str(port), "--admin-port", str(port), "--admin-token-env", "SIGNGATE_ADMIN_TOKEN"], "must differ"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "signgate", "serve", "--config", str(config), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **ENV, "SHORT": "short-token"},
        )
        assert out.returncode == 2, out
        assert message in out.stderr and "Traceback" not in out.stderr
        assert ADMIN_TOKEN not in out.stderr and "short-token" not in out.stderr


def test_with_several_workers_a_memory_store_cannot_revoke() -> None:
    admin_port = free_port()
    gateway = start_gateway("--id", "app", "--secret-env", "GW_SECRET", "--workers", "2", "--admin-port",
                            str(admin_port), "--admin-token-env", "SIGNGATE_ADMIN_TOKEN", env=ENV)  # fmt: skip
    try:
        reply = admin_call(admin_port, "POST", "/revoke", {"user": "u"})
        assert (reply.status, reply.error_code) == (503, "store_unavailable")
        assert "--store redis://" in reply.json()["error"]["message"]
    finally:
        stop([gateway])


# -- live streams -----------------------------------------------------------------------------------


async def wait_for_events(upstream: Server, stream_id: str, count: int, timeout: float = 30) -> None:
    """Until the upstream has sent ``count`` events of stream ``stream_id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = json.loads((await asyncio.to_thread(call, "GET", f"{upstream.url}/v1/sent?id={stream_id}")).body)
        if len(sent) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the upstream did not send {count} events of {stream_id}")


def stream(gateway: Server, upstream: Server, user: str, stream_id: str, n: int = 40) -> SignedRequest:
    url = f"{upstream.url}/v1/sse?n={n}&interval=0.25&id={stream_id}"
    return Signer("app", SECRET, gateway.url).sign("GET", url, user=user)


def test_revoke_live_ends_a_users_streams_on_every_gateway_sharing_redis(
    tmp_path: Path, upstream: Server, redis: Server
) -> None:
    store = f"redis://127.0.0.1:{redis.port}/4"
    config = config_file(tmp_path, upstream)
    one = start(config, "--store", store, "--revoke-live")
    two = start(config, "--store", store, "--revoke-live")
    tag = str(time.time_ns())

    async def main() -> None:
        target = stream(one, upstream, "live-user", f"a{tag}")
        other = stream(one, upstream, "live-other", f"b{tag}", n=12)
        port = two.port
        query = target.url.split("?", 1)[1]
        revoked_stream = asyncio.create_task(fetch(port, "GET", "/?" + query, list(target.headers.items())))
        other_stream = asyncio.create_task(
            fetch(port, "GET", "/?" + other.url.split("?", 1)[1], list(other.headers.items()))
        )
        await wait_for_events(upstream, f"a{tag}", 2)
        started = time.monotonic()
        await asyncio.to_thread(revoke_cli, "--user", "live-user", "--store", store)
        response = await revoked_stream
        ended_after = time.monotonic() - started
        assert response.status == 200 and not response.complete  # broken off, never ended cleanly
        text = response.body.decode()
        event = text.rsplit("event: signgate-error\ndata: ", 1)[1].split("\n", 1)[0]
        data = json.loads(event)
        error = data["error"]
        assert (error["code"], error["scope"], data["status"]) == ("revoked", "user", 401)
        assert '"i": 39' not in text and ended_after < 8  # long before its 10 s were over
        bystander = await other_stream
        assert bystander.complete and b"[DONE]" in bystander.body

    try:
        asyncio.run(main())
        log = two.output()
        assert '"code": "revoked"' in log and "live stream(s) covered by a revocation" in log
    finally:
        stop([one, two])


def test_revoke_live_through_the_admin_endpoint_ends_streams_at_once(tmp_path: Path, upstream: Server) -> None:
    admin_port = free_port()
    gateway = start(config_file(tmp_path, upstream), "--revoke-live", "--admin-port", str(admin_port),
                    "--admin-token-env", "SIGNGATE_ADMIN_TOKEN")  # fmt: skip
    tag = str(time.time_ns())

    async def main() -> None:
        target = stream(gateway, upstream, "admin-live", f"c{tag}")
        task = asyncio.create_task(
            fetch(gateway.port, "GET", "/?" + target.url.split("?", 1)[1], list(target.headers.items()))
        )
        await wait_for_events(upstream, f"c{tag}", 2)
        reply = await asyncio.to_thread(admin_call, admin_port, "POST", "/revoke", {"user": "admin-live"})
        assert reply.json()["streams_ended"] == 1
        response = await task
        assert not response.complete and b"event: signgate-error" in response.body

    try:
        asyncio.run(main())
    finally:
        stop([gateway])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "u", "--store", "redis://127.0.0.1:1/0", "--admin", "http://127.0.0.1:1"], "exactly one of"),
        (["--user", "u"], "exactly one of --store"),
        (["--store", "redis://127.0.0.1:1/0"], "name exactly one of key, tenant, user, nonce"),
        (["--user", "u", "--tenant", "t", "--store", "redis://127.0.0.1:1/0"], "name exactly one"),
        (["--user", "has space", "--store", "redis://127.0.0.1:1/0"], "--user: 'has space' can never match"),
        (["--user", "u", "--store", "memory"], "admin endpoint"),
        (["--user", "u", "--store", "redis://:pw-secret@127.0.0.1:1/0"], "ConnectionError"),
        (["--user", "u", "--admin", "http://127.0.0.1:1"], "SIGNGATE_ADMIN_TOKEN is not set"),
        (["--list", "--user", "u", "--store", "redis://127.0.0.1:1/0"], "--list takes no subject"),
    ],
)
def test_signgate_revoke_names_what_is_wrong(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIGNGATE_ADMIN_TOKEN"}
    out = subprocess.run(
        [sys.executable, "-m", "signgate", "revoke", *args], capture_output=True, text=True, timeout=60, env=env,
        check=False,
    )  # fmt: skip
    assert out.returncode == 2, out
    assert message in out.stderr and "Traceback" not in out.stderr
    assert "pw-secret" not in out.stderr
