"""The gateway against a naive Flask pass-through proxy: requests per second, and memory per stream.

The Flask proxy (``_apps.proxy_app``) verifies nothing: it adds the API key and relays the
upstream's answer with ``requests`` streaming, under gunicorn (1 worker, class ``gthread``). The
baseline is a signgate gateway (``signgate serve``, 1 worker), which also verifies a signature on
every request. Both sit in front of the same local upstream (``_model.py``) in the same run, each
freshly started per run:

1. small requests: 50 keep-alive connections send a small POST whose upstream answers a short
   JSON at once; completed requests per second (``_rawload.py rps``);
2. streams: 1,000 clients each open one 5-second SSE stream (20 events), spread over 1 s; the
   server's resident memory is sampled throughout. Memory per in-flight stream is the peak RSS over
   the idle RSS just before, divided by the most streams the upstream saw open at once; a proxy
   with N threads holds at most N, and the others wait. How many of the 1,000 completed within
   the bound (9 s: a stream and its ramp, with 3 s to spare) says the rest.

Run: ``.venv/bin/python bench/bench_flask_proxy.py`` (about 3.5 minutes; ``--quick`` for a smoke run).
It measures and reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _procs import HERE, cpu_seconds, free_port, gateway, gunicorn, model, progress, status_kb, wait_children
from _report import git_revision, machine, summary, write_section

from signgate import Signer

SECRET, MODEL_KEY = "bench-secret-not-for-production", "sk-bench-model"
SMALL_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = {
    "model": "gpt-4o-mini",
    "stream": True,
    "messages": [
        {"role": "system", "content": "Turn the user's words into used-car search filters as JSON."},
        {"role": "user", "content": "a red crossover under 30k, newer than 2018"},
    ],
}
GATEWAY = "signgate gateway (baseline)"


@dataclass
class Settings:
    runs: int
    flask_threads: tuple[int, ...]
    connections: int
    rps_seconds: float
    streams: int
    stream_ms: int
    bound: float


def raw_request(port: int, method: str, target: str, body: str) -> bytes:
    data = body.encode()
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(data)}\r\n\r\n".encode() + data


def requests_for(name: str, port: int, model_port: int, s: Settings) -> tuple[bytes, bytes, bytes]:
    """(the small request, a short stream to warm up with, the stream request) for this candidate."""
    small, stream = json.dumps(SMALL_BODY, separators=(",", ":")), json.dumps(STREAM_BODY, separators=(",", ":"))
    calls = [
        ("/v1/small", small),
        ("/v1/chat/completions?ms=300", stream),
        (f"/v1/chat/completions?ms={s.stream_ms}", stream),
    ]
    if name != GATEWAY:
        small_req, warm_req, stream_req = (raw_request(port, "POST", path, body) for path, body in calls)
        return small_req, warm_req, stream_req
    # The gateway gets signed URLs, good for the whole run: it verifies each request all the same.
    signer = Signer("bench", SECRET, f"http://127.0.0.1:{port}", expires_in=900)
    signed = []
    for path, body in calls:
        url = signer.sign(
            "POST", f"http://127.0.0.1:{model_port}{path}", body=body, headers={"Content-Type": "application/json"}
        ).url
        parts = urlsplit(url)
        signed.append(raw_request(port, "POST", f"{parts.path or '/'}?{parts.query}", body))
    return signed[0], signed[1], signed[2]


def model_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        return dict(json.load(response))


def rawload(mode: str, port: int, request: bytes, *options: str, timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(prefix="signgate-bench-request-", delete=False) as f:
        f.write(request)
    try:
        argv = [sys.executable, str(HERE / "_rawload.py"), mode, "--port", str(port), "--request", f.name, *options]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"load generator failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return dict(json.loads(out.stdout))
    finally:
        Path(f.name).unlink(missing_ok=True)


class Sampler(threading.Thread):
    """Samples a process's RSS and the upstream's open streams every 50 ms until stopped."""

    def __init__(self, pid: int, model_port: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.model_port = pid, model_port
        self.peak_kb = self.peak_open = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            self.peak_open = max(self.peak_open, model_stats(self.model_port)["open"])
            self.halt.wait(0.05)

    def stop(self) -> None:
        self.halt.set()
        self.join()


def wait_model_idle(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while model_stats(port)["open"] > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def measure(name: str, threads: int, model_port: int, s: Settings) -> dict[str, float]:
    """One candidate, freshly started: small requests, then the streams."""
    port = free_port()
    if name == GATEWAY:
        server = gateway(port, model_port, SECRET, MODEL_KEY)
    else:
        env = {"BENCH_UPSTREAM": f"http://127.0.0.1:{model_port}", "BENCH_MODEL_KEY": MODEL_KEY}
        server = gunicorn("flask-proxy", "_apps:proxy_app()", port, threads, env)
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/healthz")
        pid = server.pid if name == GATEWAY else wait_children(server.pid, 1)[0]
        pids = {pid, server.pid}
        small, warm, stream = requests_for(name, port, model_port, s)
        options = ["--connections", str(s.connections), "--warmup", "0.5", "--duration", str(s.rps_seconds)]
        cpu_before = sum(cpu_seconds(p) for p in pids)
        fast = rawload("rps", port, small, *options, timeout=s.rps_seconds + 60)
        cpu_per_request = (sum(cpu_seconds(p) for p in pids) - cpu_before) / max(1, fast["answers_in_all"])
        # Warm the streaming path too (a few short streams), so the idle figure is of a warm server.
        rawload("streams", port, warm, "--streams", "4", "--ramp", "0", "--bound", "30", timeout=60)
        wait_model_idle(model_port)
        time.sleep(0.3)
        idle_kb = status_kb(pid, "VmRSS")
        sampler = Sampler(pid, model_port)
        sampler.start()
        options = ["--streams", str(s.streams), "--ramp", "1", "--bound", str(s.bound)]
        try:
            slow = rawload("streams", port, stream, *options, timeout=s.bound + 60)
        finally:
            sampler.stop()
    finally:
        server.stop()
    wait_model_idle(model_port)
    in_flight = max(1, sampler.peak_open)
    return {
        "rps": fast["requests_per_second"],
        "rps errors": fast["errors"],
        "latency ms": fast["latency_median_ms"] or float("nan"),
        "cpu us": cpu_per_request * 1e6,
        "completed": slow["completed"],
        "stream errors": slow["errors"],
        "in flight": sampler.peak_open,
        "idle MB": idle_kb / 1024,
        "peak MB": sampler.peak_kb / 1024,
        "KB per stream": (sampler.peak_kb - idle_kb) / in_flight,
        "first event ms": slow["first_event_median_ms"] or float("nan"),
    }


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    lo, mid, hi = summary(values)
    return fmt(mid) if len(values) == 1 else f"{fmt(mid)} ({fmt(lo)}–{fmt(hi)})"


def report(results: dict[str, list[dict[str, float]]], s: Settings, quick: bool) -> str:
    base = results[GATEWAY]
    cmd = ".venv/bin/python bench/bench_flask_proxy.py" + (" --quick" if quick else "")
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} at {git_revision()} on {machine()}"
        + (" (a `--quick` smoke run: short, 1 run, not a measurement)." if quick else "."),
        f"{s.runs} {'run' if s.runs == 1 else 'runs'}, each candidate freshly started in each; median (min–max) "
        "over the runs, ratios taken within a run against the gateway of that run.",
        f"Reproduce: `{cmd}`.",
        "",
        f"Small requests: {s.connections} keep-alive connections, a 70-byte POST answered at once by the "
        f"upstream, {s.rps_seconds:g} s after a 0.5 s warm-up. The gateway also checks a signature on each. "
        "*Server CPU*: the server's processes (gunicorn's master and worker), warm-up included, over every "
        "answer; less sensitive than requests/s to what else the machine runs.",
        "",
        "| server (1 worker) | requests/s | vs gateway | server CPU µs / request | vs gateway | median latency ms "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        ratio = [r["rps"] / b["rps"] for r, b in zip(runs, base, strict=True)]
        cpu_ratio = [r["cpu us"] / b["cpu us"] for r, b in zip(runs, base, strict=True)]
        lines.append(
            f"| {name} | {spread([r['rps'] for r in runs], lambda v: f'{v:,.0f}')} | "
            f"{spread(ratio, lambda v: f'{v:.2f}×')} | {summary([r['cpu us'] for r in runs])[1]:,.0f} | "
            f"{spread(cpu_ratio, lambda v: f'{v:.1f}×')} | "
            f"{summary([r['latency ms'] for r in runs])[1]:.1f} | "
            f"{sum(r['rps errors'] for r in runs):,.0f} |"
        )
    lines += [
        "",
        f"Streams: {s.streams:,} clients each open one SSE stream of 20 events over {s.stream_ms / 1000:.0f} s, "
        f"spread over 1 s; stopped after {s.bound:.0f} s. *In flight*: the most streams the upstream saw open "
        "at once. *Memory per stream*: peak RSS of the worker process over its RSS when idle just before, "
        "divided by the streams in flight.",
        "",
        f"| server (1 worker) | completed of {s.streams:,} in {s.bound:.0f} s | in flight | idle RSS MB | "
        "peak RSS MB | KB per stream in flight | vs gateway | first event ms (served streams) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        col = {k: [r[k] for r in runs] for k in runs[0]}
        ratio = [r["KB per stream"] / b["KB per stream"] for r, b in zip(runs, base, strict=True)]
        lines.append(
            f"| {name} | {summary(col['completed'])[1]:,.0f} | {summary(col['in flight'])[1]:,.0f} | "
            f"{summary(col['idle MB'])[1]:.1f} | {summary(col['peak MB'])[1]:.1f} | "
            f"{spread(col['KB per stream'], lambda v: f'{v:,.0f}')} | {spread(ratio, lambda v: f'{v:.1f}×')} | "
            f"{summary(col['first event ms'])[1]:,.0f} |"
        )
    lines += [
        "",
        "A thread of the Flask proxy is held for a stream's whole life, so it holds as many streams as it has "
        "threads, and the rest wait in the listen queue: the completed count is the point, the memory per "
        "stream only what those few cost. The gateway holds every stream at once on one event loop.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (default 5, at least 5)")
    parser.add_argument(
        "--flask-threads", default="4,64", help="thread counts of the Flask proxies, comma-separated (default 4,64)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 run, shorter")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    threads = tuple(int(t) for t in args.flask_threads.split(","))
    s = Settings(
        runs=1 if args.quick else max(5, args.runs),
        flask_threads=threads,
        connections=50,
        rps_seconds=1.5 if args.quick else 3.0,
        streams=1000,
        stream_ms=5000,
        bound=9,
    )

    candidates = {GATEWAY: 0} | {f"Flask + requests, gthread {t} threads": t for t in threads}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in candidates}
    model_port = free_port()
    upstream = model(model_port, MODEL_KEY, events=20, seconds=s.stream_ms / 1000)
    started = time.monotonic()
    try:
        upstream.wait_ready(f"http://127.0.0.1:{model_port}/healthz")
        for run in range(1, s.runs + 1):
            for name, n in candidates.items():
                r = measure(name, n, model_port, s)
                results[name].append(r)
                progress(
                    f"  run {run}/{s.runs}, {name}: {r['rps']:,.0f} requests/s; {r['completed']:,.0f} of "
                    f"{s.streams:,} streams completed, {r['KB per stream']:,.0f} KB per stream in flight "
                    f"({time.monotonic() - started:.0f} s elapsed)"
                )
    finally:
        upstream.stop()
    section = report(results, s, args.quick)
    print(section)
    if not args.no_write:
        write_section("flask-proxy", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
