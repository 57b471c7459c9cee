"""The gateway against nginx ``proxy_pass`` and Signway: small requests, added latency, streams, memory.

One signgate worker, one nginx worker and the Signway server (v0.4.8, Rust), side by side in one
run, in front of the same local upstreams: nginx serving a static 1 KB file, and
``_sse_upstream.py`` (a uvloop raw-protocol SSE server). The proxy under test runs on core 0; the
load generator (wrk, or ``_sse_load.py`` for streams) and the upstreams share core 1. Every figure
is min / median / max over the runs, and each ratio is taken within a run, against a baseline
measured in that same run.

Needs nginx and wrk (``bench/ensure-tools.sh`` installs them) and Signway built by
``scripts/build-signway.sh`` (``make bench`` runs both; without cargo, Signway's rows are left out
with a note). Run: ``.venv/bin/python bench/bench_gateway.py`` (about 13 minutes; ``--quick`` for a
smoke run).

The revocation check is measured apart (``--only revocation``, about two minutes; needs
redis-server): the same small requests, signed with a user and a tenant, through gateways with
the memory store and with Redis, with no revocation in force and with 10,000 (of other subjects,
so every request is still served: the cost measured is the lookup's).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _procs import CLK_TCK, NOFILE, free_port, progress, raise_nofile
from _report import ROOT, git_revision, machine, summary, write_section

from signgate import Signer
from signgate.revocation import Attribution, RevocationTable

HERE = Path(__file__).resolve().parent
PROXY_CORE, LOAD_CORE = "0", "1"
KEY_ID, SECRET, API_KEY = "bench", "bench-secret-not-for-production", "sk-bench"
EVENTS, STREAM_MS, RAMP = 20, 3000, 1000  # per stream; its length; streams opened per 100 ms
LEVELS = (1000, 5000, 9000)
CORES = len(os.sched_getaffinity(0))
ALL_CORES = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
#: signgate's --workers beyond one, measured beside the one pinned worker: up to the cores available.
WORKER_COUNTS = sorted({n for n in (2, 4, 8, 16, CORES) if 2 <= n <= CORES})


def workers_row(n: int) -> str:
    """A multi-worker signgate's name in the small-request tables."""
    return f"signgate, --workers {n} (all cores)"


def workers_proxy(n: int) -> str:
    """A multi-worker signgate's name in the stream tables."""
    return f"signgate ×{n}"


# -- processes and CPU accounting ----------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out += [int(child), *descendants(int(child))]
    except OSError:
        pass
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def core_times() -> dict[str, tuple[int, int]]:
    """(busy, total) clock ticks per core, from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if re.fullmatch(r"cpu\d+", name):
            ticks = [int(v) for v in values[:8]]
            idle = ticks[3] + ticks[4]
            out[name[3:]] = (sum(ticks) - idle, sum(ticks))
    return out


@dataclass
class Proc:
    """A server started by the benchmark, pinned with taskset; its output goes to files in ``tmp``."""

    name: str
    argv: list[str]
    port: int
    tmp: Path
    cores: str
    env: dict[str, str] = field(default_factory=dict)
    stdout: Path | None = None
    signs: bool = False  # verifies SW1 signatures, so its requests must be signed
    probe: tuple[str, str] = ("GET", "/healthz")  # the request that answers 200 once it is up
    popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> Proc:
        log = self.tmp / f"{self.name}.log"
        out = self.stdout or log
        with log.open("ab") as err, out.open("ab") as std:
            self.popen = subprocess.Popen(
                ["taskset", "-c", self.cores, *self.argv],
                stdout=std,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                preexec_fn=raise_nofile,
            )
        LIVE.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{log.read_text()[-3000:]}")
            method, path = self.probe
            try:
                probe = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
                with urllib.request.urlopen(probe, timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def workers(self) -> list[int]:
        """The processes doing the work: nginx's worker, uvicorn's workers, or the process itself."""
        return descendants(self.pid) or [self.pid]

    def stop(self) -> None:
        if self in LIVE:
            LIVE.remove(self)
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


LIVE: list[Proc] = []


@contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        for p in procs:
            p.start()
        yield
    finally:
        for p in reversed(procs):
            p.stop()


def our_cpu() -> float:
    """CPU seconds used so far by this benchmark: itself, its finished children, its live servers."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = cpu_seconds([pid for p in LIVE for pid in (p.pid, *descendants(p.pid))])
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + live


class Window:
    """CPU accounting over one measurement: the proxy's own CPU seconds, how busy each core was,
    and how much CPU processes outside the benchmark took meanwhile (the machine may be shared)."""

    def __init__(self, proxy_pids: Sequence[int]) -> None:
        self.pids = list(proxy_pids)

    def __enter__(self) -> Window:
        self.started, self.cores, self.proxy, self.ours = (
            time.monotonic(),
            core_times(),
            cpu_seconds(self.pids),
            our_cpu(),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.started
        self.proxy_cpu = cpu_seconds(self.pids) - self.proxy
        cores = core_times()
        self.busy = {c: (cores[c][0] - b[0]) / max(1, cores[c][1] - b[1]) for c, b in self.cores.items()}
        busy_s = sum(cores[c][0] - b[0] for c, b in self.cores.items()) / CLK_TCK
        self.other = max(0.0, busy_s - (our_cpu() - self.ours)) / self.wall  # in cores

    def stats(self) -> dict[str, float]:
        return {
            "proxy_cpu_s": self.proxy_cpu,
            "wall_s": self.wall,
            "core0": self.busy.get("0", 0.0),
            "core1": self.busy.get("1", 0.0),
            "other": self.other,
        }


# -- the servers ----------------------------------------------------------------------------------


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginx(name: str, tmp: Path, port: int, http: str, cores: str) -> Proc:
    """One nginx master with one worker, configured in ``tmp``."""
    conf = tmp / f"{name}.conf"
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp}/{name}-{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"""worker_processes 1;
worker_rlimit_nofile {NOFILE};
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections {NOFILE - 100}; }}
http {{
{temp_paths}
    keepalive_requests 1000000;
    keepalive_timeout 65;
{http}
}}
"""
    )
    return Proc(
        name, [nginx_bin(), "-p", str(tmp), "-e", str(tmp / f"{name}-error.log"), "-c", str(conf)], port, tmp, cores
    )


def static_upstream(tmp: Path) -> Proc:
    """nginx serving a 1 KB file on the load core: never the bottleneck for the proxies."""
    www = tmp / "www"
    www.mkdir()
    (www / "1k").write_bytes(b"x" * 1023 + b"\n")
    (www / "healthz").write_bytes(b"ok\n")
    port = free_port()
    http = f"""    access_log off;
    open_file_cache max=16;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
        default_type application/octet-stream;
    }}"""
    return nginx("upstream-nginx", tmp, port, http, LOAD_CORE)


def sse_upstream(tmp: Path) -> Proc:
    port = free_port()
    return Proc("sse-upstream", [sys.executable, str(HERE / "_sse_upstream.py"), str(port)], port, tmp, LOAD_CORE)


def nginx_proxy(tmp: Path, static_port: int, sse_port: int, name: str = "nginx-proxy") -> Proc:
    """The baseline: proxy_pass over HTTP/1.1 keep-alive, buffering off for streams, an access log."""
    port = free_port()
    http = f"""    access_log {tmp}/{name}-access.log;
    upstream static {{ server 127.0.0.1:{static_port}; keepalive 64; keepalive_requests 1000000; }}
    upstream sse {{ server 127.0.0.1:{sse_port}; keepalive 1024; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Authorization "Bearer {API_KEY}";
        location = /healthz {{ return 200 "ok\\n"; }}
        location /sse {{ proxy_pass http://sse; proxy_buffering off; }}
        location / {{ proxy_pass http://static; }}
    }}"""
    return nginx(name, tmp, port, http, PROXY_CORE)


def gateway(tmp: Path, upstreams: Sequence[int], workers: int = 1, name: str = "signgate") -> Proc:
    """``signgate serve`` as in production: access log on (to a file), an allowlist, an API key added."""
    port = free_port()
    argv = [sys.executable, "-m", "signgate", "serve", "--id", KEY_ID, "--secret-env", "BENCH_SECRET"]
    argv += ["--header-env", "Authorization=Bearer ${BENCH_API_KEY}", "--allow-private-upstreams"]
    argv += [a for p in upstreams for a in ("--allow-upstream", f"http://127.0.0.1:{p}/")]
    argv += ["--max-streams", "10000", "--port", str(port), "--workers", str(workers)]
    return Proc(
        name,
        argv,
        port,
        tmp,
        PROXY_CORE if workers == 1 else ALL_CORES,
        env={"BENCH_SECRET": SECRET, "BENCH_API_KEY": API_KEY},
        stdout=tmp / f"{name}-access.log",
        signs=True,
    )


def signway_bin() -> Path:
    """Where scripts/build-signway.sh puts Signway: SIGNWAY_CACHE (relative to the repository) or .cache/signway."""
    cache = Path(os.environ.get("SIGNWAY_CACHE", ".cache/signway"))
    return (cache if cache.is_absolute() else ROOT / cache) / "bin" / "signway-v0.4.8"


def signway(tmp: Path, name: str = "signway") -> Proc:
    """The Signway server as its README runs it, with the same key and API key as signgate. It logs a
    JSON line per request on stdout (no flag turns that off), to a file like the others' access logs.
    Its tokio runtime starts a worker thread per core; pinned, they share core 0."""
    port = free_port()
    argv = [str(signway_bin()), KEY_ID, SECRET, "--header", f"Authorization: Bearer {API_KEY}", "--no-bytes-monitor"]
    return Proc(
        name,
        argv,
        port,
        tmp,
        PROXY_CORE,
        env={"PORT": str(port), "SIGNWAY_BIND_ADDR": "127.0.0.1"},
        stdout=tmp / f"{name}-access.log",
        signs=True,
        probe=("OPTIONS", "/"),  # Signway has no health endpoint; it answers a CORS preflight
    )


def signed(gateway_port: int, upstream_url: str) -> str:
    """One signed GET URL with a long expiry, reused: the gateway still verifies it every time."""
    return Signer(KEY_ID, SECRET, f"http://127.0.0.1:{gateway_port}", expires_in=3600).sign("GET", upstream_url).url


# -- load generators ------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk(url: str, connections: int, seconds: float, headers: Sequence[str] = ()) -> dict[str, float]:
    """Requests per second and latency percentiles (ms) from one wrk run on the load core;
    ``headers`` ('Name: value') are sent with every request."""
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s"]
    argv += [a for h in headers for a in ("-H", h)]
    argv += ["--latency", "--timeout", "5s", url]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 30, check=True, preexec_fn=raise_nofile
    ).stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if "Non-2xx" in out or (errors and any(int(e) for e in errors.groups())):
        raise RuntimeError(f"wrk saw errors against {url.split('?')[0]}:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    percentiles = {pct: re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M) for pct in ("50", "90", "99")}
    if rps is None or None in percentiles.values():
        raise RuntimeError(f"cannot read wrk's output against {url.split('?')[0]}:\n{out}")
    result = {"rps": float(rps[1])}
    for pct, found in percentiles.items():
        assert found is not None
        result[f"p{pct}"] = float(found[1]) * _UNITS[found[2]]
    return result


def sse_load(port: int, target: str, n: int, pids: Sequence[int], ms: int = STREAM_MS) -> dict[str, Any]:
    """Run the stream client on the load core; its JSON result (see _sse_load.py)."""
    argv = ["taskset", "-c", LOAD_CORE, sys.executable, str(HERE / "_sse_load.py"), "--port", str(port)]
    argv += ["--target", target, "-n", str(n), "--events", str(EVENTS), "--rate", str(RAMP)]
    argv += ["--stream-s", str(ms / 1000), "--timeout", "40"]
    argv += [a for p in pids for a in ("--pid", str(p))]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, preexec_fn=raise_nofile)
    if out.returncode != 0:
        raise RuntimeError(f"the stream client failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def stream_target(proxy: Proc, sse_port: int, ms: int) -> str:
    """The request target for EVENTS events over ``ms``: signed for signgate and Signway, plain for nginx."""
    path = f"/sse?n={EVENTS}&ms={ms}"
    if not proxy.signs:
        return path
    return signed(proxy.port, f"http://127.0.0.1:{sse_port}{path}").removeprefix(f"http://127.0.0.1:{proxy.port}")


# -- the three parts ------------------------------------------------------------------------------


@dataclass
class Plan:
    runs: int
    wrk_s: float
    latency_s: float
    stream_runs: int
    wait_s: float  # how long the whole run may wait, in total, for other work on the machine to pause

    def settle(self) -> None:
        """Before a measurement: wait, within the budget, until processes outside the benchmark
        leave the cores idle (a shared machine runs other jobs in bursts)."""
        while self.wait_s > 0:
            with Window([]) as window:
                time.sleep(0.5)
            if window.other < 0.2:
                return
            self.wait_s -= window.wall
            progress(f"    waiting for other work on the machine ({window.other:.1f} cores busy)")


Targets = dict[str, tuple[str, Callable[[], list[int]]]]
Runs = dict[str, list[dict[str, float]]]  # per target, one wrk result per run


def wrk_runs(plan: Plan, targets: Targets, label: str, connections: int, seconds: float) -> Runs:
    """wrk against each target in turn, every run, so drift touches them all alike."""
    results: Runs = {name: [] for name in targets}
    for run in range(plan.runs):
        for name, (url, pids) in targets.items():
            progress(f"  {label}, run {run + 1}/{plan.runs}: {name}")
            plan.settle()
            with Window(pids()) as window:
                result = wrk(url, connections, seconds)
            results[name].append(result | window.stats())
    return results


def small_requests(plan: Plan, targets: Targets) -> Runs:
    """wrk -c 64 against each target, after a warm-up of each."""
    for name, (url, _) in targets.items():
        progress(f"  warm-up: {name}")
        wrk(url, 64, 1)
    return wrk_runs(plan, targets, "small requests", 64, plan.wrk_s)


def added_latency(plan: Plan, targets: Targets) -> Runs:
    """One connection, one request at a time: the median is what a proxy adds to each call."""
    return wrk_runs(plan, targets, "one request at a time", 1, plan.latency_s)


def stream_run(proxy: Proc, sse_port: int, n: int) -> dict[str, Any]:
    """A fresh proxy: warm it up with 200 short streams, let it settle, then ``n`` streams."""
    with running(proxy):
        sse_load(proxy.port, stream_target(proxy, sse_port, 200), 200, [], ms=200)
        time.sleep(0.5)
        pids = proxy.workers()
        log = proxy.tmp / f"{proxy.name}-access.log"
        logged = log.stat().st_size if log.exists() else 0
        with Window(pids) as window:
            result = sse_load(proxy.port, stream_target(proxy, sse_port, STREAM_MS), n, pids)
    result["logged"] = logged_outcomes(log, logged)
    return result | window.stats()


def logged_outcomes(log: Path, offset: int) -> dict[str, int]:
    """What the proxy's access log says about the requests after ``offset``: status (and
    signgate's outcome code, or Signway's message) -> count. Tells a proxy's refusals from
    connections it never read."""
    outcomes: Counter[str] = Counter()
    with log.open("rb") as f:
        f.seek(offset)
        for line in f:
            if line.startswith(b"{"):
                entry = json.loads(line)
                if "status" in entry:  # signgate
                    outcomes[f"{entry['status']} {entry['code']}"] += 1
                else:  # Signway: {"level": ..., "fields": {"message": "Id bench provided a valid signature, ..."}}
                    outcomes[entry.get("fields", {}).get("message", "?").split(":")[0][:60]] += 1
            elif len(fields := line.split(b'"')) > 2:
                outcomes[fields[2].split()[0].decode()] += 1  # nginx: '... "GET / HTTP/1.1" 200 ...'
    return dict(outcomes)


def stream_proxy(tmp: Path, static_port: int, sse_port: int, name: str) -> Proc:
    """A fresh proxy for one stream run, by its name in the stream tables."""
    if name == "nginx":
        return nginx_proxy(tmp, static_port, sse_port, name="nginx-streams")
    if name == "Signway":
        return signway(tmp, name="signway-streams")
    if name == "signgate":
        return gateway(tmp, [sse_port], name="signgate-streams")
    workers = int(name.rsplit("×", 1)[1])
    return gateway(tmp, [sse_port], workers=workers, name=f"signgate-w{workers}-streams")


def streams(
    plan: Plan, tmp: Path, static_port: int, sse_port: int, proxies: Sequence[str]
) -> dict[tuple[int, str], list[dict[str, Any]]]:
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for n in LEVELS:
        for run in range(plan.stream_runs):
            for name in proxies:
                progress(f"  {n:,} streams, run {run + 1}/{plan.stream_runs}: {name}")
                plan.settle()
                proxy = stream_proxy(tmp, static_port, sse_port, name)
                result = stream_run(proxy, sse_port, n)
                if result["completed"] != n or result["errors"]:
                    progress(
                        f"    only {result['completed']:,} of {n:,} complete; client saw {result['errors']}; "
                        f"{name}'s access log: {result['logged']}"
                    )
                results.setdefault((n, name), []).append(result)
    return results


# -- the report -----------------------------------------------------------------------------------


def fmt(values: Sequence[float], spec: str = ".2f") -> str:
    lo, med, hi = summary(values)
    return f"{lo:{spec}} / **{med:{spec}}** / {hi:{spec}}"


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=True)]


def med(runs: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in runs))


def kb_per_stream(result: dict[str, Any]) -> float:
    """Resident memory the proxy grew by at the plateau, per stream in flight then (KiB)."""
    grown = sum(result["rss_plateau_kb"]) - sum(result["rss_idle_kb"])
    return float(grown / max(1, result["plateau_streams"]))


def us_per_event(result: dict[str, Any]) -> float:
    return float(result["proxy_cpu_s"] / max(1, result["events"]) * 1e6)


def other_load(*sections: dict[Any, list[dict[str, Any]]]) -> str:
    values = [r["other"] for section in sections for runs in section.values() for r in runs]
    return f"median {statistics.median(values):.2f}, max {max(values):.2f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


NGINX, SIGNWAY, GW1, DIRECT = "nginx proxy_pass", "Signway v0.4.8", "signgate, 1 worker", "direct upstream"


def versus(values: Sequence[float], base: Sequence[float] | None, spec: str) -> str:
    """A ratio cell against a baseline of the same runs; a dash for the baseline itself or when absent."""
    if base is None or values is base:
        return "—"
    return fmt(ratios(values, base), spec) + "×"


def report(
    plan: Plan,
    command: str,
    small: Runs,
    latency: Runs,
    stream: dict[tuple[int, str], list[dict[str, Any]]],
    proxies: Sequence[str],
) -> str:
    has_signway = SIGNWAY in small
    out = [
        f"Measured {time.strftime('%Y-%m-%d')} at {git_revision()} on {machine()}; nginx {nginx_version()}"
        + ("; Signway v0.4.8 built by `scripts/build-signway.sh`." if has_signway else "."),
        "",
        f"Reproduce: `{command}` (`make bench` runs it after `bench/ensure-tools.sh`, `scripts/build-signway.sh` "
        "and the signer benchmark).",
        "",
        "Layout (taskset): the proxy under test, one nginx worker, the Signway process (its tokio runtime's "
        "worker threads share the core) or one signgate worker, has core 0 to itself; the load generator (wrk, "
        "or the asyncio stream client `bench/_sse_load.py`) and the upstreams (nginx serving a static 1 KB "
        "file; `bench/_sse_upstream.py`, a uvloop raw-protocol SSE server) share core 1. Every proxy keeps "
        "HTTP/1.1 connections to the upstream alive, adds an `Authorization` header and writes a log line per "
        "request to a file; signgate and Signway verify the SW1 signature of every request (one signed URL, "
        "reused). Cells are min / **median** / max over the runs; a ratio is taken inside each run, against "
        "the baseline measured in that run. The machine may be shared: *other load* is the CPU, in cores, that "
        "processes outside the benchmark used during the measurements.",
    ]
    if not has_signway:
        out += ["", f"Signway is not in this run: {signway_bin()} was not built (cargo missing)."]

    rps = {name: [r["rps"] for r in runs] for name, runs in small.items()}
    out += [
        "",
        f"### Small requests: 1 KB body, `wrk -t 1 -c 64 -d {plan.wrk_s:g}s`, {plan.runs} runs",
        "",
        "| path | requests/s | vs nginx | vs Signway | p50 ms | p90 ms | p99 ms | proxy CPU µs per request "
        "| core 0 / 1 busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in small.items():
        cpu = "—" if name == DIRECT else fmt([r["proxy_cpu_s"] / r["wall_s"] / r["rps"] * 1e6 for r in runs], ".0f")
        out.append(
            f"| {name} | {fmt(rps[name], ',.0f')} | {fmt(ratios(rps[name], rps[NGINX]), '.3f')}× | "
            f"{versus(rps[name], rps.get(SIGNWAY), '.3f')} | {med(runs, 'p50'):.2f} | "
            f"{med(runs, 'p90'):.2f} | {med(runs, 'p99'):.2f} | {cpu} | "
            f"{med(runs, 'core0'):.0%} / {med(runs, 'core1'):.0%} |"
        )
    gw_ratio = statistics.median(ratios(rps[GW1], rps[NGINX]))
    targets = [f"one signgate worker ≥ 0.10× nginx's requests/s — {verdict(gw_ratio >= 0.10)} ({gw_ratio:.3f}×)"]
    if has_signway:
        vs_sw = statistics.median(ratios(rps[GW1], rps[SIGNWAY]))
        targets.append(f"≥ 0.5× Signway's (issue 18) — {verdict(vs_sw >= 0.5)} ({vs_sw:.3f}×)")
    out += [
        "",
        "Latency percentiles and busy shares are medians over the runs. signgate with `--workers N` is not "
        "pinned: its workers use every core and compete with wrk and the upstream for core 1, so it is not "
        f"comparable with the pinned rows (see *Scaling with --workers* below). Other load: {other_load(small)} "
        "cores.",
        "",
        "Targets: " + "; ".join(targets) + ".",
    ]

    direct = [r["p50"] for r in latency[DIRECT]]
    added = {name: [r["p50"] - d for r, d in zip(runs, direct, strict=True)] for name, runs in latency.items()}
    out += [
        "",
        f"### Added latency over a direct call: one request at a time, `wrk -t 1 -c 1 -d {plan.latency_s:g}s`, "
        f"{plan.runs} runs",
        "",
        "| path | median latency ms | added over direct ms | added vs nginx's | added vs Signway's "
        "| proxy CPU µs per request |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in latency.items():
        is_direct = name == DIRECT
        cpu = "—" if is_direct else fmt([r["proxy_cpu_s"] / r["wall_s"] / r["rps"] * 1e6 for r in runs], ".0f")
        out.append(
            f"| {name} | {fmt([r['p50'] for r in runs], '.3f')} | {'—' if is_direct else fmt(added[name], '.3f')} | "
            f"{'—' if is_direct else versus(added[name], added[NGINX] if name != NGINX else None, '.1f')} | "
            f"{'—' if is_direct else versus(added[name], added.get(SIGNWAY), '.1f')} | {cpu} |"
        )
    gw_added = statistics.median(added[GW1])
    targets = [f"signgate adds ≤ 0.4 ms at the median — {verdict(gw_added <= 0.4)} ({gw_added:.3f} ms)"]
    if has_signway:
        vs_sw = statistics.median(ratios(added[GW1], added[SIGNWAY]))
        targets.append(f"≤ 1.5× what Signway adds (issue 18) — {verdict(vs_sw <= 1.5)} ({vs_sw:.1f}×)")
    out += [
        "",
        "The direct call never leaves core 1; through a proxy every request crosses to core 0 and back, and an "
        f"idle core wakes slowly, so part of what nginx adds is that crossing. Other load: {other_load(latency)} "
        "cores.",
        "",
        "Targets: " + "; ".join(targets) + ".",
    ]

    out += [
        "",
        f"### Streams: SSE, {EVENTS} events over {STREAM_MS / 1000:g} s each, opened {RAMP:,} per 100 ms, "
        f"{plan.stream_runs} runs per level",
        "",
        f"| streams | proxy | complete with all {EVENTS} events (worst run) | most in flight at once (worst run) | "
        "time to first event ms | last stream done s | KB resident per stream | vs nginx | vs Signway | "
        "CPU µs per relayed event | vs nginx | vs Signway |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = []
    for n in LEVELS:
        kb = {name: [kb_per_stream(r) for r in stream[(n, name)]] for name in proxies}
        per_event = {name: [us_per_event(r) for r in stream[(n, name)]] for name in proxies}
        for name in proxies:
            runs = stream[(n, name)]
            worst = min(r["completed"] for r in runs)
            out.append(
                f"| {n:,} | {name} | {worst:,} | {min(r['plateau_streams'] for r in runs):,} | "
                f"{fmt([r['ttfe_ms_median'] or float('nan') for r in runs], '.0f')} | "
                f"{fmt([r['duration_s'] for r in runs], '.1f')} | {fmt(kb[name], '.1f')} | "
                f"{versus(kb[name], kb['nginx'], '.2f')} | {versus(kb[name], kb.get('Signway'), '.2f')} | "
                f"{fmt(per_event[name], '.1f')} | {versus(per_event[name], per_event['nginx'], '.1f')} | "
                f"{versus(per_event[name], per_event.get('Signway'), '.1f')} |"
            )
            if name == "signgate" and n == LEVELS[-1]:
                targets.append(f"all {n:,} complete with every event in every run — {verdict(worst == n)}")
                kb_med = statistics.median(kb[name])
                targets.append(f"≤ 20 KB resident per in-flight stream — {verdict(kb_med <= 20)} ({kb_med:.1f} KB)")
                vs_nginx = statistics.median(ratios(kb[name], kb["nginx"]))
                targets.append(
                    f"KB per stream ≤ nginx's (issue 18) — {verdict(vs_nginx <= 1.0)} ({vs_nginx:.2f}× nginx's)"
                )
    out += [
        "",
        "KB per stream: the proxy's VmRSS at the plateau (the highest of samples taken every 50 ms while "
        "the most streams were receiving) minus its VmRSS idle after a warm-up of 200 short streams, divided by "
        "the streams in flight at that moment; each run starts a fresh proxy. When a proxy cannot start streams "
        "as fast as they arrive, fewer than all are in flight at once and the rest wait (in the listen queue, "
        "then in the proxy): *most in flight* shows it. CPU per event: the proxy's utime + stime (all its "
        "threads) from the first connection to the end of the last stream, divided by the events relayed, so "
        "stream set-up is included. Time to first event counts from the client's connect. "
        f"Other load: {other_load(stream)} cores.",
        "",
        f"Targets (signgate, {LEVELS[-1]:,} streams): " + "; ".join(targets) + ".",
    ]
    out += scaling(small, stream)
    return "\n".join(out)


def scaling(small: Runs, stream: dict[tuple[int, str], list[dict[str, Any]]]) -> list[str]:
    """One worker pinned to its core against --workers N on every core: small requests, and the
    most streams held at once and events relayed per second at the top stream level."""
    if not WORKER_COUNTS:
        return ["", f"*Scaling with --workers*: this machine has {CORES} core, so there is nothing to scale to."]
    top = LEVELS[-1]
    one_rps = [r["rps"] for r in small[GW1]]
    one_streams = stream[(top, "signgate")]

    def events_per_s(runs: list[dict[str, Any]]) -> list[float]:
        return [r["events"] / r["duration_s"] for r in runs]

    out = [
        "",
        f"### Scaling with --workers, 1 to {CORES} (the cores available)",
        "",
        f"| signgate | small requests/s | vs 1 worker | most of {top:,} streams in flight at once | vs 1 worker | "
        "events relayed per s | vs 1 worker | last stream done s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(1, GW1, "signgate")] + [(n, workers_row(n), workers_proxy(n)) for n in WORKER_COUNTS]
    for n, small_name, stream_name in rows:
        rps = [r["rps"] for r in small[small_name]]
        runs = stream[(top, stream_name)]
        held = [float(r["plateau_streams"]) for r in runs]
        rate = events_per_s(runs)
        same = n == 1
        out.append(
            f"| {'1 worker (core 0)' if same else f'{n} workers (all cores)'} | {fmt(rps, ',.0f')} | "
            f"{'—' if same else fmt(ratios(rps, one_rps), '.2f') + '×'} | {fmt(held, ',.0f')} | "
            f"{'—' if same else fmt(ratios(held, [float(r['plateau_streams']) for r in one_streams]), '.2f') + '×'} | "
            f"{fmt(rate, ',.0f')} | {'—' if same else fmt(ratios(rate, events_per_s(one_streams)), '.2f') + '×'} | "
            f"{fmt([r['duration_s'] for r in runs], '.1f')} |"
        )
    out += [
        "",
        "One worker has core 0 to itself while the load generator and the upstreams use core 1; with N workers "
        "the gateway shares every core with them, so on this machine the second worker gains less than a core. "
        "Events relayed per second: all events of all streams over the time from the first connection to the "
        "last stream's end. The workers share one listening socket, each accepting what it can; memory per "
        "stream, in the stream table, is the sum of the workers' growth.",
    ]
    return out


# -- the revocation check ----------------------------------------------------------------------------

REVOKED = 10_000  # revocations in force in the "with" runs, a third each of users, tenants and nonces
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
REVOCATION_ROWS = (
    ("memory store, none revoked", "memory", 0),
    (f"memory store, {REVOKED:,} revoked", "memory", REVOKED),
    ("Redis, none revoked", "redis", 0),
    (f"Redis, {REVOKED:,} revoked", "redis", REVOKED),
)


def redis_server(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server on the load core, without persistence, answering PING."""
    port = free_port()
    argv = ["taskset", "-c", LOAD_CORE, "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with (tmp / "redis.log").open("ab") as log:
        popen = subprocess.Popen([*argv, "--appendonly", "no"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return popen, port
        except OSError:
            time.sleep(0.05)
    popen.kill()
    raise RuntimeError("redis-server did not answer PING in 20 s")


def revocation_gateway(tmp: Path, upstream: int, name: str, store: str | None) -> tuple[Proc, int]:
    """``signgate serve`` as in :func:`gateway`, with its admin endpoint (how the revocations get in)."""
    proc = gateway(tmp, [upstream], name=name)
    admin = free_port()
    proc.argv += ["--admin-port", str(admin), "--admin-token-env", "BENCH_ADMIN_TOKEN"]
    proc.argv += ["--store", store] if store else []
    proc.env["BENCH_ADMIN_TOKEN"] = ADMIN_TOKEN
    return proc, admin


def revoke_many(admin: int, count: int) -> None:
    """``count`` revocations through the admin endpoint, on one kept-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    try:
        for i in range(count):
            kind = ("user", "tenant", "nonce")[i % 3]
            conn.request("POST", "/revoke", json.dumps({kind: f"revoked-{kind}-{i:06d}"}), headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the admin endpoint refused a revocation: {response.status}")
    finally:
        conn.close()


def lookup_ns(entries: int, rounds: int = 200_000) -> float:
    """Nanoseconds one request's lookup takes in the memory store's table of ``entries``
    revocations (a request with a user and a tenant: up to three dictionary reads)."""
    table = RevocationTable()
    now = time.time()
    for i in range(entries):
        kind = ("user", "tenant", "nonce")[i % 3]
        table.add(kind, f"revoked-{kind}-{i:06d}", int(now), int(now) + 3600, now)
    who = Attribution(KEY_ID, "bench-tenant", "bench-user", None, int(now))
    check = (lambda: table and table.covering(who)) if entries else (lambda: table and None)
    best = min(timeit.repeat(check, number=rounds, repeat=5))
    return best / rounds * 1e9


def revocation_check(plan: Plan, tmp: Path, static_port: int) -> tuple[Runs, dict[int, float]]:
    """Small requests (signed with a user and a tenant) through four gateways: memory and Redis,
    with none and with REVOKED revocations in force. Returns the wrk runs and the lookup's ns."""
    redis, redis_port = redis_server(tmp)
    procs: dict[str, tuple[Proc, int]] = {}
    try:
        for name, store, _ in REVOCATION_ROWS:
            url = f"redis://127.0.0.1:{redis_port}/{len(procs)}" if store == "redis" else None
            procs[name] = revocation_gateway(tmp, static_port, f"signgate-rev-{len(procs)}", url)
        with running(*(proc for proc, _ in procs.values())):
            for name, _, count in REVOCATION_ROWS:
                if count:
                    progress(f"  revoking {count:,} subjects through the admin endpoint: {name}")
                    revoke_many(procs[name][1], count)
            one_kb = f"http://127.0.0.1:{static_port}/1k"
            requests = {
                name: Signer(KEY_ID, SECRET, f"http://127.0.0.1:{proc.port}", expires_in=3600).sign(
                    "GET", one_kb, user="bench-user", tenant="bench-tenant"
                )
                for name, (proc, _) in procs.items()
            }
            for name, req in requests.items():
                progress(f"  warm-up: {name}")
                wrk(req.url, 64, 1, [f"{k}: {v}" for k, v in req.headers.items()])
            results: Runs = {name: [] for name in procs}
            for run in range(plan.runs):
                # Every other run in the reverse order, so that drift on the machine favours none.
                order = list(requests.items())
                for name, req in order if run % 2 == 0 else order[::-1]:
                    progress(f"  revocation check, run {run + 1}/{plan.runs}: {name}")
                    plan.settle()
                    proc = procs[name][0]
                    with Window(proc.workers()) as window:
                        result = wrk(req.url, 64, plan.wrk_s, [f"{k}: {v}" for k, v in req.headers.items()])
                    results[name].append(result | window.stats())
                # One request at a time: no read to share, each Redis check a round trip of its own.
                for name in (REVOCATION_ROWS[0][0], REVOCATION_ROWS[2][0]):
                    req = requests[name]
                    progress(f"  revocation check, one at a time, run {run + 1}/{plan.runs}: {name}")
                    plan.settle()
                    with Window(procs[name][0].workers()) as window:
                        result = wrk(req.url, 1, plan.latency_s, [f"{k}: {v}" for k, v in req.headers.items()])
                    results.setdefault(f"{name}, one at a time", []).append(result | window.stats())
    finally:
        redis.terminate()
        redis.wait(10)
    return results, {0: lookup_ns(0), REVOKED: lookup_ns(REVOKED)}


def request_path_us(rounds: int = 5, number: int = 5000) -> dict[int, list[float]]:
    """µs per request of ``Gateway._http`` up to the relay (bench_hot_path's measure, in this
    process, no sockets), for the same signed request with none and with REVOKED revocations in
    the memory store, alternated; the best of 7 timings each round."""
    from urllib.parse import urlsplit

    import bench_hot_path as hot

    from signgate.gateway.accesslog import AccessLogWriter
    from signgate.gateway.config import GatewayConfig, KeyConfig, UpstreamPrefix
    from signgate.gateway.store import MemoryStore

    key = KeyConfig(
        id=hot.KEY_ID,
        secrets=(hot.SECRET,),
        headers=(("Authorization", "Bearer sk-bench"),),
        allow_upstreams=(UpstreamPrefix.parse("https://api.openai.com/v1/", "bench"),),
    )
    config = GatewayConfig(keys={hot.KEY_ID: key})
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115
    gateways = {}
    now = time.time()
    for entries in (0, REVOKED):
        store = MemoryStore()
        for i in range(entries):
            kind = ("user", "tenant", "nonce")[i % 3]
            store.local_revocations.add(kind, f"revoked-{kind}-{i:06d}", int(now), int(now) + 3600, now)
        gateways[entries] = hot._NoRelay(config, store=store, access_log=AccessLogWriter(log))
    signer = Signer(hot.KEY_ID, hot.SECRET, hot.GATEWAY, expires_in=3600)
    req = signer.sign("GET", hot.UPSTREAM, user="bench-user", tenant="bench-tenant")
    headers = [(b"host", b"127.0.0.1:3000"), *((k.encode(), v.encode()) for k, v in req.headers.items())]
    scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "headers": headers,
             "query_string": urlsplit(req.url).query.encode()}  # fmt: skip
    times: dict[int, list[float]] = {0: [], REVOKED: []}
    for _ in range(rounds):
        for entries, gw in gateways.items():
            times[entries].append(min(hot.http_per_call(gw, scope, b"", number)))
    log.close()
    return times


def revocation_report(
    plan: Plan, command: str, runs: Runs, lookups: dict[int, float], path: dict[int, list[float]]
) -> str:
    def cpu(name: str) -> list[float]:
        return [r["proxy_cpu_s"] / r["wall_s"] / r["rps"] * 1e6 for r in runs[name]]

    base_mem, base_redis = REVOCATION_ROWS[0][0], REVOCATION_ROWS[2][0]
    out = [
        f"Measured {time.strftime('%Y-%m-%d')} at {git_revision()} on {machine()}.",
        "",
        f"Reproduce: `{command}`.",
        "",
        f"### Small requests with revocations in force: 1 KB body, `wrk -t 1 -c 64 -d {plan.wrk_s:g}s`, "
        f"{plan.runs} runs",
        "",
        "One signgate worker on core 0 (as above), the request signed with a user and a tenant; wrk, the "
        "upstream and redis-server on core 1. The revocations in force are of other users, tenants and nonces, "
        "so every request is served and pays the whole lookup. With Redis every request asks the store (one "
        "`MGET`; a request with a nonce or limits asks inside the admission script instead): the next request "
        "after a revocation must be refused on every process, so nothing is cached.",
        "",
        "| gateway | requests/s | proxy CPU µs per request | vs memory, none revoked | vs Redis, none revoked |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, store, _ in REVOCATION_ROWS:
        rps = [r["rps"] for r in runs[name]]
        vs_redis = cpu(base_redis) if store == "redis" and name != base_redis else None
        out.append(
            f"| {name} | {fmt(rps, ',.0f')} | {fmt(cpu(name), '.0f')} | "
            f"{versus(cpu(name), cpu(base_mem) if name != base_mem else None, '.3f')} | "
            f"{versus(cpu(name), vs_redis, '.3f')} |"
        )
    one_mem, one_redis = f"{base_mem}, one at a time", f"{base_redis}, one at a time"
    out += [
        "",
        f"One request at a time (`wrk -t 1 -c 1 -d {plan.latency_s:g}s`), where no check shares a read: "
        f"memory store {fmt(cpu(one_mem), '.0f')} µs of CPU per request, median latency "
        f"{fmt([r['p50'] for r in runs[one_mem]], '.3f')} ms; Redis {fmt(cpu(one_redis), '.0f')} µs, "
        f"{fmt([r['p50'] for r in runs[one_redis]], '.3f')} ms ({fmt(ratios(cpu(one_redis), cpu(one_mem)), '.2f')}× "
        "the CPU: redis-py spends about 100 µs on a command). Under load, checks that arrive while a read is in "
        "flight share the next `MGET`, which is why the rows above cost about the same.",
    ]
    with_revoked = statistics.median(ratios(cpu(REVOCATION_ROWS[1][0]), cpu(base_mem)))
    per_request = statistics.median(cpu(base_mem)) * 1000  # ns
    share = lookups[REVOKED] / per_request
    in_process = statistics.median(ratios(path[REVOKED], path[0]))
    out += [
        "",
        "Through sockets the differences between rows are within what other work on the machine moves "
        "(see the min and max). Two measures without sockets, in one process, are finer:",
        "",
        f"- the request path (`Gateway._http` up to the relay, as `bench/bench_hot_path.py` times it; the same "
        f"signed request, best of 7 timings of 5,000, {len(path[0])} rounds alternated): "
        f"{fmt(path[0], '.2f')} µs with none revoked, {fmt(path[REVOKED], '.2f')} µs with {REVOKED:,}: "
        f"{fmt(ratios(path[REVOKED], path[0]), '.3f')}×;",
        f"- the lookup alone (`RevocationTable.covering`, best of 5): {lookups[0]:.0f} ns with none in force (one "
        f"truth test), {lookups[REVOKED]:.0f} ns with {REVOKED:,} (a dictionary read each for the key, the tenant "
        f"and the user): {share:.2%} of the {per_request / 1000:.0f} µs of CPU a request takes through sockets.",
        "",
        "Target: the revocation check costs under 5% of a request's CPU with the memory store — "
        f"{verdict(in_process <= 1.05 and share < 0.05)} (request path {in_process:.3f}×, lookup {share:.2%}; "
        f"through sockets {with_revoked:.3f}×). Other load: {other_load(runs)} cores.",
    ]
    return "\n".join(out)


def nginx_version() -> str:
    out = subprocess.run([nginx_bin(), "-v"], capture_output=True, text=True, check=False).stderr
    return out.strip().rsplit("/", 1)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (default and minimum 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 short runs, 1 stream run per level")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    parser.add_argument(
        "--only", choices=["revocation"], help="run one part alone: the revocation check (about two minutes)"
    )
    args = parser.parse_args()
    if args.quick:
        plan = Plan(runs=2, wrk_s=2, latency_s=1, stream_runs=1, wait_s=15)
    else:
        runs = max(5, args.runs)
        plan = Plan(runs=runs, wrk_s=4, latency_s=2, stream_runs=runs, wait_s=60)
    missing = [tool for tool in ("wrk", "taskset", "redis-server") if shutil.which(tool) is None]
    if not Path(nginx_bin()).exists():
        missing.append("nginx")
    if missing:
        progress(f"bench_gateway: {', '.join(missing)} not found; run bench/ensure-tools.sh first")
        return 2
    if not {int(PROXY_CORE), int(LOAD_CORE)} <= os.sched_getaffinity(0):
        progress(f"bench_gateway: needs cores {PROXY_CORE} and {LOAD_CORE} (proxy on one, load on the other)")
        return 2
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # this script is part of the load side
    command = " ".join([".venv/bin/python bench/bench_gateway.py", *sys.argv[1:]])
    progress(
        f"gateway benchmark: proxy under test on core {PROXY_CORE}; load generator and upstreams on core "
        f"{LOAD_CORE}; signgate with --workers {', '.join(map(str, WORKER_COUNTS)) or '(none: one core)'} on all cores"
    )

    if args.only == "revocation":
        return revocation_only(plan, command, args.no_write)
    has_signway = signway_bin().exists()
    if not has_signway:
        progress(f"bench_gateway: Signway is not built ({signway_bin()}; no cargo?): its rows are left out")
    with tempfile.TemporaryDirectory(prefix="signgate-bench-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)  # nginx workers (user nobody) read the static file
        static, sse = static_upstream(tmp), sse_upstream(tmp)
        one_kb = f"http://127.0.0.1:{static.port}/1k"
        with running(static, sse):
            proxy = nginx_proxy(tmp, static.port, sse.port)
            sw = signway(tmp) if has_signway else None
            gw1 = gateway(tmp, [static.port, sse.port])
            upstreams = [static.port, sse.port]
            several = {n: gateway(tmp, upstreams, workers=n, name=f"signgate-w{n}") for n in WORKER_COUNTS}
            with running(*[p for p in (proxy, sw, gw1, *several.values()) if p is not None]):
                targets: Targets = {
                    DIRECT: (one_kb, list),
                    NGINX: (f"http://127.0.0.1:{proxy.port}/1k", proxy.workers),
                }
                if sw is not None:
                    targets[SIGNWAY] = (signed(sw.port, one_kb), sw.workers)
                targets[GW1] = (signed(gw1.port, one_kb), gw1.workers)
                for n, gw in several.items():
                    targets[workers_row(n)] = (signed(gw.port, one_kb), gw.workers)
                progress("small requests")
                small = small_requests(plan, targets)
                progress("added latency")
                latency = added_latency(plan, {k: v for k, v in targets.items() if "--workers" not in k})
            for log in ("signgate", "signway") if sw is not None else ("signgate",):
                if not (tmp / f"{log}-access.log").stat().st_size:
                    raise RuntimeError(f"{log} wrote no log: the runs must log as in production")
            progress("streams")
            proxies = ["nginx", "Signway", "signgate"] if sw is not None else ["nginx", "signgate"]
            proxies += [workers_proxy(n) for n in WORKER_COUNTS]
            stream = streams(plan, tmp, static.port, sse.port, proxies)
            progress("revocation check")
            revocation_runs, lookups = revocation_check(plan, tmp, static.port)
    path = request_path_us()

    table = report(plan, command, small, latency, stream, proxies)
    revocations = revocation_report(plan, command, revocation_runs, lookups, path)
    print(table + "\n\n" + revocations)
    if not args.no_write:
        write_section("gateway", table)
        write_section("revocation", revocations)
        progress(f"wrote sections 'gateway' and 'revocation' of {(ROOT / 'docs' / 'benchmarks.md').relative_to(ROOT)}")
    return 0


def revocation_only(plan: Plan, command: str, no_write: bool) -> int:
    progress("revocation check")
    with tempfile.TemporaryDirectory(prefix="signgate-bench-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)
        static = static_upstream(tmp)
        with running(static):
            runs, lookups = revocation_check(plan, tmp, static.port)
    progress("revocation check: the request path in this process")
    text = revocation_report(plan, command, runs, lookups, request_path_us())
    print(text)
    if not no_write:
        write_section("revocation", text)
        progress(f"wrote section 'revocation' of {(ROOT / 'docs' / 'benchmarks.md').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
