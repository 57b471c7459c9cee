"""CPU per request of the gateway's own code, without sockets: a quick before/after check.

Times, in µs per call, on one realistic signed request (a small JSON POST with its body and
content-type bound, as a backend signs an LLM call, and the GET the gateway benchmark reuses):

- ``parse_query`` and ``Verifier.verify``;
- ``Gateway._http`` up to the point where it would call the upstream (``_relay`` answers at
  once here), the access log line included and written to a file, as ``signgate serve`` does;
- ``Gateway._record`` alone: the metrics and one access log line.

Run: ``.venv/bin/python bench/bench_hot_path.py`` (add ``--logging`` to time the access log
through the ``logging`` module, as an embedding application configures it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from signgate import Signer
from signgate.gateway import app as gateway_app
from signgate.gateway.accesslog import AccessLogWriter
from signgate.gateway.config import GatewayConfig, KeyConfig, UpstreamPrefix
from signgate.gateway.exchange import Exchange
from signgate.verifier import parse_query

KEY_ID, SECRET = "bench", "bench-secret-0123456789"
UPSTREAM = "https://api.openai.com/v1/chat/completions"
GATEWAY = "http://127.0.0.1:3000"
BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a red crossover under 30k"}], "max_tokens": 200},
    separators=(",", ":"),
).encode()


class _NoRelay(gateway_app.Gateway):
    """The gateway with the upstream call replaced by an empty 200: times what comes before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._relay = _answer_at_once  # type: ignore[assignment]


async def _answer_at_once(scope: Any, receive: Any, send: Any, ex: Any, forward: Any) -> None:
    forward.body.release()
    ex.status, ex.code = 200, "ok"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def requests() -> dict[str, tuple[dict[str, Any], bytes]]:
    signer = Signer(KEY_ID, SECRET, GATEWAY, expires_in=3600)
    post = signer.sign("POST", UPSTREAM, body=BODY.decode(), headers={"Content-Type": "application/json"})
    get = signer.sign("GET", "https://api.openai.com/v1/models")
    out = {}
    for name, req, body in (("POST json", post, BODY), ("GET", get, b"")):
        headers = [
            (b"host", b"127.0.0.1:3000"),
            (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"),
            (b"accept", b"*/*"),
            (b"accept-language", b"en-GB,en;q=0.9"),
            (b"accept-encoding", b"gzip, deflate, br"),
            (b"origin", b"https://app.example.com"),
            (b"referer", b"https://app.example.com/"),
            (b"connection", b"keep-alive"),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in req.headers.items()]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "method": req.method,
            "path": "/",
            "query_string": urlsplit(req.url).query.encode(),
            "headers": headers,
        }
        out[name] = (scope, body)
    return out


def best(stmt: Callable[[], Any], number: int, repeat: int = 7) -> tuple[float, float]:
    """(min, median) µs per call over ``repeat`` runs of ``number`` calls."""
    runs = [t / number * 1e6 for t in timeit.repeat(stmt, number=number, repeat=repeat)]
    return min(runs), statistics.median(runs)


def http_per_call(gw: gateway_app.Gateway, scope: dict[str, Any], body: bytes, number: int) -> list[float]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def run() -> list[float]:
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(number):
                await gw._http(scope, receive, send)
            await asyncio.sleep(0)  # let a buffered access log flush, as the server's loop would
            runs.append((time.perf_counter() - t0) / number * 1e6)
        return runs

    return _run(run())


def _run(coro: Any) -> Any:
    """On uvloop, as ``signgate serve`` runs."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="calls per run")
    parser.add_argument("--logging", action="store_true", help="access log through `logging`, not signgate serve's")
    args = parser.parse_args()

    key = KeyConfig(
        id=KEY_ID,
        secrets=(SECRET,),
        headers=(("Authorization", "Bearer sk-bench"),),
        allow_upstreams=(UpstreamPrefix.parse("https://api.openai.com/v1/", "bench"),),
    )
    config = GatewayConfig(keys={KEY_ID: key}, cors_origins=("https://app.example.com",))
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115
    gw = _configure(config, log, args.logging)

    print(f"python {sys.version.split()[0]}; µs per call, min / median of 7 runs of {args.n:,}")
    for name, (scope, body) in requests().items():
        query = scope["query_string"].decode("latin-1")
        params = parse_query(query)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        verify = gw._settings.verifier.verify
        for label, stmt in (
            ("parse_query", lambda q=query: parse_query(q)),
            ("Verifier.verify", lambda p=params, h=headers, b=body, m=scope["method"], v=verify: v(p, m, h, b)),
        ):
            lo, mid = best(stmt, args.n)
            print(f"  {name:10} {label:28} {lo:7.2f} / {mid:7.2f}")
        runs = http_per_call(gw, scope, body, args.n)
        print(f"  {name:10} {'Gateway._http before relay':28} {min(runs):7.2f} / {statistics.median(runs):7.2f}")

    ex = Exchange("c63ce2f63df44ed8", "POST", time.perf_counter(), config.keys[KEY_ID])
    ex.upstream_host, ex.status, ex.code = "api.openai.com", 200, "ok"
    ex.bytes_in, ex.bytes_out, ex.ttfb = 412, 5310, 0.3012

    async def record() -> tuple[float, float]:
        result = best(lambda: gw._record(ex), args.n)
        await asyncio.sleep(0)
        return result

    lo, mid = _run(record())
    print(f"  {'':10} {'Gateway._record':28} {lo:7.2f} / {mid:7.2f}")
    log.seek(0)
    lines = log.read().splitlines()
    assert lines and all(json.loads(line)["request_id"] for line in lines[-3:]), "no access log was written"


def _configure(config: GatewayConfig, log: Any, through_logging: bool) -> gateway_app.Gateway:
    """The gateway as ``signgate serve`` sets it up, its access log going to ``log``."""
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("signgate.access")
    access.handlers[:] = [handler]
    access.setLevel(logging.INFO)
    access.propagate = False
    return _NoRelay(config) if through_logging else _NoRelay(config, access_log=AccessLogWriter(log))


if __name__ == "__main__":
    main()
