"""Where a proxied request's CPU goes, layer by layer: from a bare Python proxy to signgate serve.

The small-request load of ``bench_gateway.py`` (``wrk -c 64`` for a 1 KB file behind nginx, the
proxy pinned to core 0, wrk and the upstream on core 1) against servers that each add one layer
of machinery (see ``_layers.py``): a bare uvloop + llhttp proxy in callbacks; the same with a
task per request; uvicorn around a ten-line ASGI relay; ``signgate serve`` itself. nginx and
Signway are measured beside them, in the same rounds, and every candidate takes its turn in each
round, so the differences between rows are the layers' and not the machine's drift.

Run: ``.venv/bin/python bench/bench_layers.py`` (about 3 minutes; ``--quick`` for a smoke run);
it rewrites the ``layers`` section of docs/benchmarks.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import bench_gateway as bg
from _procs import free_port, progress
from _report import git_revision, machine, write_section

HERE = Path(__file__).resolve().parent

# (row, what it is, the row its CPU is compared with); the proxies are started in main().
ROWS: list[tuple[str, str, int | None]] = [
    ("nginx proxy_pass", "the baseline: C, one worker", None),
    ("Signway v0.4.8", "Rust (hyper, tokio): verifies SW1, adds the key's header, logs a JSON line", None),
    ("bare", "Python's floor: uvloop + llhttp in callbacks; two reads, two writes, two parses", None),
    ("task", "*bare* + a coroutine per request, awaiting a future for the upstream's answer", 2),
    ("uvicorn", "*task* + uvicorn's request cycle, ASGI scope and messages (a ten-line relay app)", 3),
    ("signgate serve", "*task* + signgate's protocol and application: the gateway as deployed, one worker", 3),
]


def layer(tmp: Path, name: str, upstream: int) -> bg.Proc:
    """One of _layers.py's servers on the proxy core; it answers the upstream's /1k once up."""
    port = free_port()
    argv = [sys.executable, str(HERE / "_layers.py"), name, str(port), str(upstream)]
    return bg.Proc(f"layer-{name}", argv, port, tmp, bg.PROXY_CORE, probe=("GET", "/1k"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="rounds (default and minimum 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 short rounds")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    runs, seconds = (2, 2.0) if args.quick else (max(5, args.runs), 4.0)
    if not bg.signway_bin().exists():
        progress(f"bench_layers: Signway is not built ({bg.signway_bin()}): run scripts/build-signway.sh")
        return 2
    with tempfile.TemporaryDirectory(prefix="signgate-layers-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)
        static = bg.static_upstream(tmp)
        one_kb = f"http://127.0.0.1:{static.port}/1k"
        with bg.running(static):
            procs: dict[str, bg.Proc] = {
                ROWS[0][0]: bg.nginx_proxy(tmp, static.port, static.port),
                ROWS[1][0]: bg.signway(tmp),
                ROWS[2][0]: layer(tmp, "bare", static.port),
                ROWS[3][0]: layer(tmp, "task", static.port),
                ROWS[4][0]: layer(tmp, "uvicorn", static.port),
                ROWS[5][0]: bg.gateway(tmp, [static.port]),
            }
            with bg.running(*procs.values()):
                url: dict[str, str] = {}
                for row, proc in procs.items():
                    url[row] = bg.signed(proc.port, one_kb) if proc.signs else f"http://127.0.0.1:{proc.port}/1k"
                    bg.wrk(url[row], 64, 1)  # warm-up
                rps: dict[str, list[float]] = {row: [] for row in procs}
                cpu: dict[str, list[float]] = {row: [] for row in procs}
                for run in range(runs):
                    for row, proc in procs.items():
                        progress(f"  round {run + 1}/{runs}: {row}")
                        with bg.Window(proc.workers()) as window:
                            result = bg.wrk(url[row], 64, seconds)
                        rps[row].append(result["rps"])
                        cpu[row].append(window.proxy_cpu / window.wall / result["rps"] * 1e6)
    table = report(rps, cpu, runs, seconds, "bench/bench_layers.py")
    print(table)
    if not args.no_write:
        write_section("layers", table)
        progress("wrote section 'layers' of docs/benchmarks.md")
    return 0


def report(rps: dict[str, list[float]], cpu: dict[str, list[float]], runs: int, seconds: float, script: str) -> str:
    fmt: Callable[[list[float], str], str] = bg.fmt
    signway = rps[ROWS[1][0]]
    out = [
        f"Measured {bg.time.strftime('%Y-%m-%d')} at {git_revision()} on {machine()}.",
        "",
        f"Reproduce: `.venv/bin/python {script}`. `wrk -t 1 -c 64 -d {seconds:g}s` for the 1 KB file, {runs} "
        "rounds, every row taking its turn in each round; the proxy on core 0, wrk and the upstream (nginx) on "
        "core 1. CPU is the proxy's (user + system) per request; *added* is the median of the per-round "
        "differences from the row it names.",
        "",
        "| server | what it is | requests/s | vs Signway | CPU µs per request | added µs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row, what, base in ROWS:
        added = "—"
        if base is not None:
            diffs = [a - b for a, b in zip(cpu[row], cpu[ROWS[base][0]], strict=True)]
            added = f"{statistics.median(diffs):+.0f} over *{ROWS[base][0]}*"
        out.append(
            f"| {row} | {what} | {fmt(rps[row], ',.0f')} | {fmt(bg.ratios(rps[row], signway), '.2f')}× | "
            f"{fmt(cpu[row], '.0f')} | {added} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
