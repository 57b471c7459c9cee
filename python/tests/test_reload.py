"""Reloading a running gateway's configuration (SIGHUP, or the admin endpoint), as real processes:
keys added, removed and rotated for new requests while streams in flight go on untouched, with one
worker or several; a broken file leaves the running configuration in force."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from gateway_client import Reply, call, send
from load import run_pool
from raw_http import Response, fetch
from servers import Server, free_port, start_gateway

from signgate import Signer

ADMIN_TOKEN = "reload-admin-token-0123456789abcdef"
STREAMS = 500
EVENTS = 40  # half a second apart: each stream lasts 20 s, far longer than the reload around it


def toml(upstream: Server, keys: dict[str, list[str]], extra: str = "") -> str:
    tables = "".join(
        f'\n[keys.{key}]\nsecrets = {json.dumps(secrets)}\nallow_upstreams = ["{upstream.url}/v1/"]\n'
        for key, secrets in keys.items()
    )
    return f"[gateway]\nallow_private_upstreams = true\n{extra}\n{tables}"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stats(upstream: Server) -> dict[str, int]:
    return dict(call("GET", f"{upstream.url}/stats").json())


def reloads(gateway: Server, word: str = "reloaded the configuration") -> int:
    return gateway.output().count(word)


def url(gateway: Server, upstream: Server, key: str, secret: str) -> Reply:
    return send(Signer(key, secret, gateway.url).sign("GET", f"{upstream.url}/v1/echo"))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_during_500_held_streams_drops_none_while_new_requests_see_new_keys(
    tmp_path: Path, upstream: Server, workers: int
) -> None:
    config = tmp_path / "gateway.toml"
    # A worker replaced on SIGHUP (uvicorn's way) would cut its 20 s streams after 5 s.
    short = "shutdown_timeout = 5"
    config.write_text(toml(upstream, {"old": ["old-secret"], "kept": ["kept-secret-1"]}, short))
    gateway = start_gateway("--config", str(config), "--workers", str(workers))
    before = stats(upstream)

    async def streams() -> list[Response]:
        def job(i: int) -> Callable[[], object]:
            key, secret = ("old", "old-secret") if i % 2 else ("kept", "kept-secret-1")
            target = f"{upstream.url}/v1/sse?n={EVENTS}&interval=0.5&id=reload-{workers}-{i}"
            signed = Signer(key, secret, gateway.url).sign("GET", target)
            query = signed.url.split("?", 1)[1]
            return lambda: fetch(gateway.port, "GET", "/?" + query, list(signed.headers.items()), timeout=120)

        return await run_pool([job(i) for i in range(STREAMS)], STREAMS)  # type: ignore[arg-type]

    def reload_midway() -> int:
        """Once every stream runs: rewrite the file, SIGHUP, and check new requests; returns how
        many streams were in flight at the signal."""
        wait_for(lambda: stats(upstream)["streams_started"] - before["streams_started"] >= STREAMS, "500 streams")
        now = stats(upstream)
        in_flight = now["streams_started"] - now["streams_completed"] - now["streams_disconnected"]
        config.write_text(toml(upstream, {"kept": ["kept-secret-2", "kept-secret-1"], "new": ["new-secret"]}, short))
        os.kill(gateway.proc.pid, signal.SIGHUP)
        wait_for(lambda: reloads(gateway) >= workers, f"{workers} worker(s) to reload")
        # Every worker serves the new keys (several requests: each may reach either worker).
        for _ in range(4 * workers):
            assert url(gateway, upstream, "new", "new-secret").status == 200
            assert url(gateway, upstream, "kept", "kept-secret-2").status == 200
            assert url(gateway, upstream, "old", "old-secret").error_code == "unknown_key"
        return in_flight

    async def main() -> tuple[list[Response], int]:
        held = asyncio.create_task(streams())
        in_flight = await asyncio.to_thread(reload_midway)
        return await held, in_flight

    try:
        responses, in_flight = asyncio.run(main())
        assert in_flight >= STREAMS // 2, f"only {in_flight} streams were in flight at the SIGHUP"
        broken = [r for r in responses if r.status != 200 or not r.complete or b"[DONE]" not in r.body]
        assert not broken, f"{len(broken)} streams dropped, e.g. {broken[0].status} {broken[0].error}"
        assert all(r.body.count(b"data: {") == EVENTS for r in responses)
        after = stats(upstream)
        assert after["streams_disconnected"] == before["streams_disconnected"]
        output = gateway.output()
        assert "Received SIGHUP, restarting processes" not in output  # uvicorn's own reaction, replaced
        assert "old-secret" not in output and "kept-secret" not in output
    finally:
        gateway.stop()


def test_a_broken_file_is_refused_and_the_old_configuration_stays(tmp_path: Path, upstream: Server) -> None:
    config = tmp_path / "gateway.toml"
    good = toml(upstream, {"app": ["app-secret"]})
    config.write_text(good)
    gateway = start_gateway("--config", str(config))
    try:
        broken_files = [
            ("[keys.app\nsecrets = [", "not valid TOML"),
            (toml(upstream, {"app": ["app-secret"]}, "max_streamz = 3"), "gateway.max_streamz: unknown setting"),
            (toml(upstream, {"app": []}), "keys.app: needs at least one non-empty secret"),
            (good.replace('allow_upstreams = ["', 'allow_upstreams = ["ftp://x/", "'), "is not an http(s) URL"),
        ]
        for count, (text, message) in enumerate(broken_files, start=1):
            config.write_text(text)
            os.kill(gateway.proc.pid, signal.SIGHUP)
            wait_for(lambda n=count: reloads(gateway, "reload refused") >= n, "the refusal")  # type: ignore[misc]
            line = gateway.output().strip().splitlines()[-1]
            assert "reload refused, the running configuration stays" in line and message in line
            assert str(config) in line
            assert url(gateway, upstream, "app", "app-secret").status == 200
        metrics = call("GET", f"{gateway.url}/metrics").body.decode()
        assert re.search(r'signgate_config_reloads_total\{worker="\d+",outcome="failed"\} 4', metrics)
        assert reloads(gateway) == 0

        # A good file again, with a setting a reload cannot change: served, and said so.
        config.write_text(toml(upstream, {"app": ["app-secret-2"]}, "max_streams = 50\nstore_fail_open = true"))
        os.kill(gateway.proc.pid, signal.SIGHUP)
        wait_for(lambda: reloads(gateway) == 1, "the reload")
        assert "store_fail_open changed, which takes a restart" in gateway.output()
        assert url(gateway, upstream, "app", "app-secret-2").status == 200
        assert url(gateway, upstream, "app", "app-secret").error_code == "bad_signature"
    finally:
        gateway.stop()


def test_a_sighup_with_several_workers_and_a_broken_file_changes_nothing(tmp_path: Path, upstream: Server) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(toml(upstream, {"app": ["app-secret"]}))
    gateway = start_gateway("--config", str(config), "--workers", "2")
    try:
        config.write_text("[gateway]\nmax_body = -1\n")
        os.kill(gateway.proc.pid, signal.SIGHUP)
        wait_for(lambda: reloads(gateway, "reload refused") >= 1, "the refusal")
        assert "gateway.max_body" in gateway.output()
        time.sleep(1)  # had the supervisor passed the signal on, the workers would have logged by now
        assert reloads(gateway, "reload refused") == 1 and reloads(gateway) == 0
        assert all(url(gateway, upstream, "app", "app-secret").status == 200 for _ in range(6))
    finally:
        gateway.stop()


def test_secrets_rotate_from_files_and_the_admin_endpoint_reloads(tmp_path: Path, upstream: Server) -> None:
    secret_file = tmp_path / "app.secret"
    secret_file.write_text("first-secret-from-a-file\n")
    secret_file.chmod(0o600)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nallow_private_upstreams = true\n\n[keys.app]\nsecret_file = ["{secret_file}"]\n'
        f'allow_upstreams = ["{upstream.url}/v1/"]\n'
    )
    admin_port = free_port()
    gateway = start_gateway("--config", str(config), "--admin-port", str(admin_port),
                            "--admin-token-env", "ADMIN_TOKEN", env={"ADMIN_TOKEN": ADMIN_TOKEN})  # fmt: skip
    admin = f"http://127.0.0.1:{admin_port}/reload"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        assert url(gateway, upstream, "app", "first-secret-from-a-file").status == 200
        secret_file.write_text("second-secret-from-a-file\n")
        reply = call("POST", admin, auth, b"")
        assert reply.status == 200 and reply.json()["keys"] == ["app"], reply.body
        assert url(gateway, upstream, "app", "second-secret-from-a-file").status == 200
        assert url(gateway, upstream, "app", "first-secret-from-a-file").error_code == "bad_signature"

        secret_file.write_text("")
        reply = call("POST", admin, auth, b"")
        assert (reply.status, reply.error_code) == (400, "config_rejected")
        assert f"the secret file '{secret_file}' is empty" in reply.json()["error"]["message"]
        assert url(gateway, upstream, "app", "second-secret-from-a-file").status == 200
        assert call("POST", f"{gateway.url}/reload", auth, b"").status == 404  # not on the public port
        assert "second-secret-from-a-file" not in gateway.output()
    finally:
        gateway.stop()
