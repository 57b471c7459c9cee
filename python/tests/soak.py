"""Soak the gateway: mixed valid, invalid and faulty traffic for a fixed time, watching its memory
and descriptors. ``python python/tests/soak.py --minutes 10`` (``make soak``); ``test_soak.py``
runs one minute of it in CI.

It starts its own processes on loopback: the gateway, the fake upstream (keep-alive, pooled by the
gateway) and the fault upstream (closes every connection). Traffic, at ``--concurrency`` requests
in flight, in fixed proportions:

- valid: SSE streams (5 to 15 events, 10 ms apart) through both upstreams, and small JSON requests;
- invalid: a body altered after signing, an expired URL, a repeated parameter, an upstream outside
  the key's allowlist;
- faulty: upstream resets, stalls before and after the headers, garbage, a close mid-stream, 429
  and 503.

Every answer must be the one the docs promise, every valid stream must arrive complete with all
its events in order, and no answer and no log line may hold the API key, the signing secret or
a signature. The gateway's resident memory and descriptors are sampled every ``--sample`` seconds.
After the warm-up (the first sixth of the run, but at least 20 s of a one-minute run), the median
RSS of the last third must be within ``RSS_TOLERANCE`` of the first third's; descriptors other
than pooled upstream connections must not grow, and must be back at their idle count once the
traffic stops, as must the gateway's asyncio tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from leaks import ENV, KEY_ARGS, KEY_ID, SECRET, LeakWatch, RecordingSigner, authorization_digest
from load import Resources, settle, thirds_median
from raw_http import Response, fetch
from servers import HERE, Server, free_port, start_gateway, start_upstream

#: Allowed drift of the median RSS, last third against first third, after the warm-up. Measured
#: here: the gateway's RSS grows by 1-2 MiB over its first ~20,000 requests while allocator arenas
#: and caches fill, then stays flat. 5% of its ~47 MiB is about 2.3 MiB: the one-minute run
#: (~10,000 requests here, a third of them between the two medians) fails on a leak of a few
#: hundred bytes per request; the ten-minute run on one ten times smaller.
RSS_TOLERANCE = 0.05
READ_TIMEOUT = 2.0


@dataclass(frozen=True)
class Expect:
    status: int
    code: str | None  # x-signgate-error
    complete: bool
    metric: tuple[str, str]
    events: int | None = None  # a stream: this many data events, then [DONE]


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    wrong: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    metrics: Counter[tuple[str, str]] = field(default_factory=Counter)
    streams: int = 0
    events: int = 0

    def record(self, kind: str, expect: Expect, response: Response) -> None:
        self.sent[kind] += 1
        self.metrics[expect.metric] += 1
        problem = _problem(expect, response)
        if problem:
            self.wrong[kind] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{kind}: {problem}; got {response.raw[:200]!r} {response.error}")
        elif expect.events is not None and expect.complete:
            self.streams += 1
            self.events += expect.events


def _problem(expect: Expect, response: Response) -> str:
    if (response.status, response.error_code, response.complete) != (expect.status, expect.code, expect.complete):
        return f"expected {expect.status} {expect.code} complete={expect.complete}"
    if expect.events is not None and expect.complete:
        wanted = b"".join(b'data: {"i": %d}\n\n' % i for i in range(expect.events)) + b"data: [DONE]\n\n"
        if response.body != wanted:
            return f"stream of {expect.events} events arrived as {response.body[:120]!r}"
    return ""


class Traffic:
    """Builds each kind of request and says what its answer must be."""

    def __init__(self, gateway: Server, upstream: Server, faulty: Server, watch: LeakWatch) -> None:
        self.port = gateway.port
        self.watch = watch
        self.signer = RecordingSigner(watch, KEY_ID, SECRET, gateway.url)
        self.stale = RecordingSigner(watch, KEY_ID, SECRET, gateway.url, clock=lambda: time.time() - 7200)
        self.upstream = upstream.url
        self.faulty = faulty.url
        ok = ("ok", "200")
        unreachable = Expect(502, "upstream_unreachable", True, ("upstream_unreachable", "502"))
        self.kinds: list[tuple[str, int, Callable[[random.Random], Awaitable[tuple[Expect, Response]]]]] = [
            ("stream (pooled upstream)", 25, self.stream_pooled),
            ("stream (fault upstream)", 10, self.stream_closing),
            ("small request", 20, self.small),
            ("bad signature", 4, self.bad_signature),
            ("expired", 4, self.expired),
            ("malformed", 4, self.malformed),
            ("upstream not allowed", 4, self.forbidden),
            ("upstream reset", 4, self.fault("/reset", unreachable)),
            ("upstream garbage", 3, self.fault("/garbage", unreachable)),
            (
                "stall before headers",
                3,
                self.fault("/stall-headers", Expect(504, "upstream_timeout", True, ("upstream_timeout", "504"))),
            ),
            ("stall mid-stream", 3, self.fault("/stall-body", Expect(200, None, False, ("upstream_timeout", "200")))),
            ("close mid-stream", 4, self.fault("/close-mid", Expect(200, None, False, ("upstream_broken", "200")))),
            ("upstream 429", 3, self.fault("/status/429", Expect(429, None, True, ("upstream_status", "429")))),
            ("upstream 503", 3, self.fault("/status/503", Expect(503, None, True, ("upstream_status", "503")))),
            ("fault upstream ok", 2, self.fault("/ok", Expect(200, None, True, ok))),
        ]

    async def send(
        self,
        method: str,
        url: str,
        *,
        signer: RecordingSigner | None = None,
        body: str | None = None,
        send_body: bytes | None = None,
        query: Callable[[str], str] | None = None,
    ) -> Response:
        signed = (signer or self.signer).sign(method, url, body=body)
        target = "/?" + signed.url.split("?", 1)[1]
        if query is not None:
            target = query(target)
        data = send_body if send_body is not None else (signed.body.encode() if signed.body is not None else None)
        response = await fetch(self.port, method, target, list(signed.headers.items()), data, timeout=15)
        self.watch.check(response.raw, "response")
        return response

    async def stream_pooled(self, rng: random.Random) -> tuple[Expect, Response]:
        n = rng.randint(5, 15)
        response = await self.send("GET", f"{self.upstream}/v1/sse?n={n}&interval=0.01")
        return Expect(200, None, True, ("ok", "200"), events=n), response

    async def stream_closing(self, rng: random.Random) -> tuple[Expect, Response]:
        n = rng.randint(5, 15)
        response = await self.send("GET", f"{self.faulty}/sse?n={n}&interval=0.01")
        return Expect(200, None, True, ("ok", "200"), events=n), response

    async def small(self, rng: random.Random) -> tuple[Expect, Response]:
        text = json.dumps({"q": "x" * rng.randint(1, 2000)})
        response = await self.send("POST", f"{self.upstream}/v1/record", body=text)
        expect = Expect(200, None, True, ("ok", "200"))
        if response.status == 200:
            echoed = json.loads(response.body)
            headers = {k.lower(): v for k, v in echoed["headers"]}
            if echoed["body"] != text or headers.get("authorization") != authorization_digest():
                response.status = -1  # reported as a mismatch
        return expect, response

    async def bad_signature(self, rng: random.Random) -> tuple[Expect, Response]:
        text = "hello"
        response = await self.send("POST", f"{self.upstream}/v1/record", body=text, send_body=b"jello")
        return Expect(401, "bad_signature", True, ("bad_signature", "401")), response

    async def expired(self, rng: random.Random) -> tuple[Expect, Response]:
        response = await self.send("GET", f"{self.upstream}/v1/record", signer=self.stale)
        return Expect(401, "expired", True, ("expired", "401")), response

    async def malformed(self, rng: random.Random) -> tuple[Expect, Response]:
        response = await self.send("GET", f"{self.upstream}/v1/record", query=lambda t: t + "&X-Sw-Body=false")
        return Expect(400, "malformed", True, ("malformed", "400")), response

    async def forbidden(self, rng: random.Random) -> tuple[Expect, Response]:
        response = await self.send("GET", f"{self.upstream}/other/echo")
        return Expect(403, "upstream_not_allowed", True, ("upstream_not_allowed", "403")), response

    def fault(self, path: str, expect: Expect) -> Callable[[random.Random], Awaitable[tuple[Expect, Response]]]:
        async def run(rng: random.Random) -> tuple[Expect, Response]:
            return expect, await self.send("GET", f"{self.faulty}{path}")

        return run


@dataclass
class SoakResult:
    seconds: float
    tally: Tally
    samples: list[tuple[float, int, int, int]]  # (seconds since start, fds, pooled upstream sockets, RSS KiB)
    idle_fds: int
    end_fds: int
    end_pooled: int
    metrics_delta: dict[tuple[str, str], int]
    tasks: tuple[int, int]
    log_lines: int
    problems: list[str]

    def summary(self) -> str:
        t = self.tally
        total = sum(t.sent.values())
        lines = [
            f"soak: {self.seconds:.0f} s, {total:,} requests ({total / self.seconds:,.0f}/s), "
            f"{t.streams:,} valid streams complete with {t.events:,} events, "
            f"{sum(t.wrong.values())} unexpected answers",
            "by kind: " + ", ".join(f"{k} {n:,}" for k, n in t.sent.most_common()),
        ]
        if self.samples:
            rss = [s[3] for s in self.samples]
            fds = [s[1] - s[2] for s in self.samples]
            first, last = thirds_median(rss)
            lines.append(
                f"RSS KiB: min {min(rss):,} max {max(rss):,}; median first third {first:,.0f}, last third {last:,.0f} "
                f"({(last - first) / first:+.1%}); {len(self.samples)} samples after warm-up"
            )
            lines.append(
                f"descriptors (without pooled upstream connections): idle {self.idle_fds}, during run "
                f"{min(fds)}..{max(fds)}, after {self.end_fds} (+{self.end_pooled} pooled); "
                f"tasks {self.tasks[0]} -> {self.tasks[1]}; {self.log_lines:,} log lines checked"
            )
        lines += [f"PROBLEM: {p}" for p in self.problems]
        lines += [f"  e.g. {e}" for e in t.examples[:5]]
        return "\n".join(lines)


async def _drive(traffic: Traffic, tally: Tally, seconds: float, concurrency: int, seed: int) -> None:
    kinds = traffic.kinds
    weights = [w for _, w, _ in kinds]
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < deadline:
            kind, _, build = rng.choices(kinds, weights)[0]
            expect, response = await build(rng)
            tally.record(kind, expect, response)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


def _sample(
    resources: Resources,
    upstream_port: int,
    every: float,
    stop: threading.Event,
    out: list[tuple[float, int, int, int]],
    started: float,
    tally: Tally,
    progress: float,
) -> None:
    """Sample in a thread of its own: an event loop busy with the load would delay the samples
    (on a loaded machine, to half of them)."""
    reported = 0.0
    while not stop.is_set():
        sample = (time.monotonic() - started, resources.fds(), resources.sockets_to(upstream_port), resources.rss_kib())
        out.append(sample)
        if progress and sample[0] - reported >= progress:
            reported = sample[0]
            sent, wrong = sum(tally.sent.values()), sum(tally.wrong.values())
            print(
                f"  {sample[0]:4.0f} s: {sent:,} requests, {wrong} unexpected; "
                f"RSS {sample[3]:,} KiB, {sample[1]} descriptors ({sample[2]} pooled upstream)",
                flush=True,
            )
        stop.wait(every)


def run_soak(
    seconds: float, *, concurrency: int = 32, sample_every: float = 2.0, seed: int = 1, progress: float = 0
) -> SoakResult:
    """Start the processes, drive traffic for ``seconds``, stop them, and judge what happened."""
    watch = LeakWatch()
    upstream = start_upstream()
    faulty_port = free_port()
    faulty = Server("faulty", [sys.executable, str(HERE / "fault_upstream.py"), str(faulty_port)], faulty_port)
    faulty.wait_healthy()
    gateway = start_gateway(
        *KEY_ARGS,
        "--allow-private-upstreams",
        "--allow-upstream",
        f"{upstream.url}/v1/",
        "--allow-upstream",
        f"{faulty.url}/",
        "--read-timeout",
        str(READ_TIMEOUT),
        "--client-timeout",
        "5",
        "--header-timeout",
        "5",
        env=ENV,
    )
    upstream_port = urlsplit(upstream.url).port or 0
    problems: list[str] = []
    try:
        resources = Resources(gateway.proc.pid)
        idle = settle(gateway.port, resources)
        idle_fds = resources.fds()
        traffic = Traffic(gateway, upstream, faulty, watch)
        warmup = max(seconds / 6, min(20.0, seconds / 3))

        async def main() -> tuple[Tally, list[tuple[float, int, int, int]]]:
            samples: list[tuple[float, int, int, int]] = []
            tally = Tally()
            stop = threading.Event()
            started = time.monotonic()
            args = (resources, upstream_port, sample_every, stop, samples, started, tally, progress)
            sampler = threading.Thread(target=_sample, args=args, daemon=True)
            sampler.start()
            try:
                await _drive(traffic, tally, seconds, concurrency, seed)
            finally:
                stop.set()
                sampler.join()
            return tally, [s for s in samples if s[0] >= warmup]

        started = time.monotonic()
        tally, samples = asyncio.run(main())
        elapsed = time.monotonic() - started
        end = settle(gateway.port, resources, baseline_fds=idle_fds + concurrency)
        deadline = time.monotonic() + 10
        while resources.fds() - resources.sockets_to(upstream_port) > idle_fds and time.monotonic() < deadline:
            time.sleep(0.1)
        end_pooled = resources.sockets_to(upstream_port)
        end_fds = resources.fds() - end_pooled
    finally:
        gateway.stop()
        faulty.stop()
        upstream.stop()
    log = gateway.output()
    log_lines = log.splitlines()
    for line in log_lines:
        watch.check(line, "gateway log line")
    if "Traceback" in log:
        problems.append("the gateway logged a traceback")

    if tally.wrong:
        problems.append(f"unexpected answers: {dict(tally.wrong)}")
    delta = end.minus(idle)
    if delta != dict(tally.metrics):
        problems.append(f"metrics {delta} do not match what was sent {dict(tally.metrics)}")
    if samples:
        first, last = thirds_median([s[3] for s in samples])
        if last > first * (1 + RSS_TOLERANCE):
            problems.append(f"resident memory grew: median {first:.0f} KiB -> {last:.0f} KiB")
        first_fds, last_fds = thirds_median([s[1] - s[2] for s in samples])
        if last_fds > first_fds + concurrency / 4:
            problems.append(f"descriptors grew during the run: median {first_fds} -> {last_fds}")
    else:
        problems.append("no samples after the warm-up")
    if end_fds > idle_fds:
        problems.append(f"descriptors not released: {idle_fds} idle before, {end_fds} after (+{end_pooled} pooled)")
    if end_pooled > concurrency:
        problems.append(f"{end_pooled} pooled upstream connections for {concurrency} concurrent requests")
    if end.tasks > idle.tasks:
        problems.append(f"tasks not released: {idle.tasks} before, {end.tasks} after")
    return SoakResult(
        seconds=elapsed,
        tally=tally,
        samples=samples,
        idle_fds=idle_fds,
        end_fds=end_fds,
        end_pooled=end_pooled,
        metrics_delta=delta,
        tasks=(idle.tasks, end.tasks),
        log_lines=len(log_lines),
        problems=problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak the gateway with mixed traffic; see the module docstring.")
    parser.add_argument("--minutes", type=float, default=10, help="how long to run (default: 10)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default: 32)")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between samples (default: 2)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"soak: {args.minutes:g} min at concurrency {args.concurrency}", flush=True)
    result = run_soak(
        args.minutes * 60, concurrency=args.concurrency, sample_every=args.sample, seed=args.seed, progress=30
    )
    print(result.summary(), flush=True)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
