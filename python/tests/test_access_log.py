"""The access log: one JSON line per request on standard output under ``signgate serve``, written
in batches without losing a line, and through the ``signgate.access`` logger when embedded."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
from gateway_client import call, send
from servers import Server, start_gateway

from signgate import Signer
from signgate.gateway import GatewayConfig, KeyConfig, create_app
from signgate.gateway.accesslog import AccessLogWriter

SECRET = "access-log-test-secret"
API_KEY = "sk-access-log-key-never-logged"
ENV = {"GW_SECRET": SECRET, "UPSTREAM_KEY": API_KEY}
FIELDS = [
    "ts", "request_id", "method", "key_id", "upstream_host", "status", "code",
    "duration_ms", "ttfb_ms", "bytes_in", "bytes_out",
]  # fmt: skip


def gateway_args(upstream: Server, *extra: str) -> list[str]:
    return [
        "--id", "test", "--secret-env", "GW_SECRET", "--header-env", "Authorization=Bearer ${UPSTREAM_KEY}",
        "--allow-upstream", f"{upstream.url}/v1/", "--allow-private-upstreams", *extra,
    ]  # fmt: skip


def access_lines(server: Server) -> list[dict[str, Any]]:
    """Every access log line so far; a line that is not whole, valid JSON fails the test."""
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


def logged_ids(server: Server) -> list[str]:
    return [entry["request_id"] for entry in access_lines(server)]


def wait_for(predicate: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def gateway(upstream: Server) -> Iterator[Server]:
    server = start_gateway(*gateway_args(upstream), env=ENV)
    yield server
    server.stop()


def test_one_prompt_json_line_per_request_without_secrets(upstream: Server, gateway: Server) -> None:
    signer = Signer("test", SECRET, gateway.url)
    ok = signer.sign("POST", f"{upstream.url}/v1/echo", json={"q": "héllo"})
    bad = signer.sign("GET", f"{upstream.url}/v1/echo")
    replies = [
        send(ok),
        call("GET", bad.url[:-4] + "0000"),  # a wrong signature
        call("GET", gateway.url + "/healthz"),
        call("GET", gateway.url + "/?X-Sw-Proxy=x"),
    ]
    ids = [r.headers["x-request-id"] for r in replies]
    # Lines are written once per event-loop iteration, not when a buffer fills: they show up at once.
    assert wait_for(lambda: set(ids) <= set(logged_ids(gateway)), timeout=2)
    entries = {e["request_id"]: e for e in access_lines(gateway)}
    for entry in entries.values():
        assert list(entry) == FIELDS
    first, wrong, health, malformed = (entries[i] for i in ids)
    assert first["method"] == "POST" and first["key_id"] == "test" and first["upstream_host"] == "127.0.0.1"
    assert (first["status"], first["code"]) == (200, "ok")
    assert first["bytes_in"] == len(ok.body.encode()) and first["bytes_out"] == len(replies[0].body)
    assert isinstance(first["ttfb_ms"], float) and first["duration_ms"] >= first["ttfb_ms"]
    assert abs(first["ts"] - time.time()) < 60
    assert (wrong["status"], wrong["code"], wrong["ttfb_ms"]) == (401, "bad_signature", None)
    assert (health["code"], health["key_id"], health["upstream_host"]) == ("health", "-", "-")
    assert (malformed["status"], malformed["code"]) == (400, "malformed")
    log = gateway.output()
    for needle in (SECRET, API_KEY, ok.url.rsplit("=", 1)[1], bad.url.rsplit("=", 1)[1], "X-Sw-", "Bearer"):
        assert needle not in log
    # The same bytes json.dumps wrote before the log bypassed logging (spaces after ':' and ',').
    assert '"code": "ok"' in log


def test_no_line_is_lost_when_sigterm_arrives_in_a_burst(upstream: Server, gateway: Server) -> None:
    signer = Signer("test", SECRET, gateway.url, expires_in=600)
    targets = [
        signer.sign("GET", f"{upstream.url}/v1/echo").url,
        signer.sign("POST", f"{upstream.url}/v1/echo", json={"n": 1}).url,
        gateway.url + "/healthz",
        gateway.url + "/?X-Sw-Algorithm=x",
    ]
    # Streams that are still running when SIGTERM arrives: their lines are written while draining.
    stream = signer.sign("GET", f"{upstream.url}/v1/sse?n=8&interval=0.1")
    parts = urlsplit(stream.url)
    streams = []
    for _ in range(5):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", f"/?{parts.query}")
        response = conn.getresponse()
        assert response.readline().startswith(b"data: ")
        streams.append((conn, response))

    answered: list[str] = []
    done = threading.Event()

    def one(i: int) -> None:
        url = targets[i % len(targets)]
        try:
            reply = call("POST" if i % len(targets) == 1 else "GET", url, body=b'{"n":1}' if i % 4 == 1 else None)
        except (OSError, http.client.HTTPException):
            return  # refused once the gateway stopped listening
        answered.append(reply.headers["x-request-id"])
        if len(answered) == 150:
            done.set()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(400)]
        assert done.wait(30)
        gateway.proc.send_signal(signal.SIGTERM)  # while the burst goes on
        for future in futures:
            future.result()
    for conn, response in streams:
        answered.append(response.getheader("x-request-id") or "")
        assert response.read().endswith(b"data: [DONE]\n\n")
        conn.close()
    assert gateway.proc.wait(15) in (0, -signal.SIGTERM)
    logged = logged_ids(gateway)
    assert len(logged) == len(set(logged))
    assert set(answered) <= set(logged), f"{len(set(answered) - set(logged))} answered requests were not logged"


def test_workers_write_whole_lines_to_one_stdout(upstream: Server) -> None:
    server = start_gateway(*gateway_args(upstream, "--workers", "2"), env=ENV)
    try:
        signer = Signer("test", SECRET, server.url, expires_in=600)
        url = signer.sign("GET", f"{upstream.url}/v1/echo").url
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: call("GET", url).headers["x-request-id"], range(400)))
        # access_lines fails on a line that two workers' writes broke up
        relayed = lambda: [e["request_id"] for e in access_lines(server) if e["code"] == "ok"]  # noqa: E731
        assert wait_for(lambda: len(relayed()) >= 400)
        assert sorted(relayed()) == sorted(ids)
    finally:
        server.stop()


def test_no_access_log(upstream: Server) -> None:
    server = start_gateway(*gateway_args(upstream, "--no-access-log"), env=ENV)
    try:
        signer = Signer("test", SECRET, server.url)
        assert send(signer.sign("GET", f"{upstream.url}/v1/echo")).status == 200
        assert call("GET", server.url + "/healthz").status == 200
    finally:
        server.stop()
    assert "Finished server process" in server.output()
    assert not access_lines(server)


# -- embedded: the signgate.access logger -------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _get(app: Any, path: str, query: bytes = b"") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send_(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": [(b"host", b"x")]}
    await app(scope, receive, send_)
    return sent


def test_an_embedded_gateway_logs_to_the_signgate_access_logger() -> None:
    app = create_app(GatewayConfig(keys={"k": KeyConfig(id="k", secrets=("s",))}))
    access = logging.getLogger("signgate.access")
    handler = _Collect()
    level, propagate = access.level, access.propagate
    access.addHandler(handler)
    try:
        access.setLevel(logging.INFO)
        asyncio.run(_get(app, "/healthz"))
        asyncio.run(_get(app, "/", b"X-Sw-Signature=00"))
        access.setLevel(logging.WARNING)  # the embedding application turns it off
        asyncio.run(_get(app, "/healthz"))
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
        access.propagate = propagate
    entries = [json.loads(m) for m in handler.messages]
    assert [(e["code"], e["status"]) for e in entries] == [("health", 200), ("malformed", 400)]
    assert all(list(e) == FIELDS for e in entries)


# -- the writer (the line itself: test_exchange.py) -----------------------------------------------


class _Writes(io.StringIO):
    """A stream that remembers the size of each flushed write, as a pipe would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []
        self._pending = 0

    def write(self, s: str) -> int:
        self._pending += len(s)
        return super().write(s)

    def flush(self) -> None:
        if self._pending:
            self.writes.append(self._pending)
            self._pending = 0


def test_the_writer_batches_lines_per_loop_iteration_in_chunks_of_whole_lines() -> None:
    stream = _Writes()
    writer = AccessLogWriter(stream)
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 300)}"}}' for i in range(100)]

    async def burst() -> None:
        for line in lines:
            writer(line)
        assert stream.getvalue() == ""  # nothing yet: the loop has not turned
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(burst())
    assert stream.getvalue().splitlines() == lines
    assert 1 < len(stream.writes) < 20 and max(stream.writes) <= 4096
    writer("outside a loop")
    assert stream.getvalue().endswith("outside a loop\n")
    writer.close()


def test_the_writer_reports_a_failing_stream_once(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    writer = AccessLogWriter(stream)
    stream.close()
    with caplog.at_level(logging.ERROR, logger="signgate.gateway"):
        writer("one")
        writer("two")
    assert [r.getMessage() for r in caplog.records] == [
        "cannot write the access log (I/O operation on closed file): its lines are dropped"
    ]
    writer.close()
