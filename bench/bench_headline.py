"""The headline: an app server that relays a slow model, against the same app server that only signs.

A Flask app under gunicorn (1 worker, class ``gthread``, 4 threads: "sync, 4 threads") serves
AI searches whose model takes 3 s to answer (``_model.py``: 20 SSE events over 3 s), two ways:

- **relay**: the app's endpoint calls the model (``requests``, streaming) and relays the answer;
- **signgate**: the app's endpoint only signs (``Signer.sign(...).to_dict()``), and the simulated
  browser sends that to a signgate gateway (``signgate serve``, 1 worker) in front of the same model.

Simulated users (``_searchload.py``, aiohttp, its own process) loop with no think time at 10, 100
and 1,000 concurrent users. Every (way, users, run) starts fresh servers, warms up, then measures
a fixed window: completed searches per second, latency, the app's CPU and in-request thread time
per search, and peak memory. The headline is signgate's searches/s over the relay's, at the same
users in the same run. Run: ``.venv/bin/python bench/bench_headline.py`` (about 8 minutes;
``--quick`` for a smoke run of a minute and a half). It measures and reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _apps import new_busy_file
from _procs import HERE, Server, free_port, gateway, gunicorn, model, progress, stop_all, wait_children
from _report import ROOT, git_revision, machine, summary, write_section

SECRET, MODEL_KEY = "bench-secret-not-for-production", "sk-bench-model"
EVENTS, MODEL_SECONDS, THREADS = 20, 3.0, 4
WAYS = ("relay", "signgate")
LABEL = {"relay": "(a) relay", "signgate": "(b) signgate"}
IMAGES = ROOT / "docs" / "images"


@dataclass
class Settings:
    users: tuple[int, ...]
    runs: int
    warmup: float
    duration: float


def measure_cell(way: str, users: int, s: Settings) -> dict[str, Any]:
    """One way at one load, on freshly started servers (a relay's queue of waiting users must not
    leak into the next measurement)."""
    model_port, app_port, gateway_port = free_port(), free_port(), free_port()
    with tempfile.NamedTemporaryFile(prefix="signgate-bench-busy-", delete=False) as f:
        busy_file = f.name
    new_busy_file(busy_file)
    servers: list[Server] = []
    try:
        servers.append(model(model_port, MODEL_KEY, EVENTS, MODEL_SECONDS))
        if way == "signgate":
            servers.append(gateway(gateway_port, model_port, SECRET, MODEL_KEY))
        env = {
            "BENCH_MODEL_URL": f"http://127.0.0.1:{model_port}/v1/chat/completions",
            "BENCH_MODEL_KEY": MODEL_KEY,
            "BENCH_SECRET": SECRET,
            "BENCH_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
            "BENCH_BUSY_FILE": busy_file,
        }
        app = gunicorn("app", "_apps:search_app()", app_port, THREADS, env)
        servers.append(app)
        servers[0].wait_ready(f"http://127.0.0.1:{model_port}/healthz")
        if way == "signgate":
            servers[1].wait_ready(f"http://127.0.0.1:{gateway_port}/healthz")
        app.wait_ready(f"http://127.0.0.1:{app_port}/healthz")
        watch = {"app": wait_children(app.pid, 1)[0], "app master": app.pid, "model": servers[0].pid}
        if way == "signgate":
            watch["gateway"] = servers[1].pid
        argv = [sys.executable, str(HERE / "_searchload.py"), "--mode", way, "--app", f"http://127.0.0.1:{app_port}"]
        argv += ["--users", str(users), "--ramp", str(MODEL_SECONDS), "--warmup", str(s.warmup)]
        argv += ["--duration", str(s.duration), "--busy-file", busy_file, "--stall-after", str(2 * MODEL_SECONDS)]
        argv += [f"--watch={name}={pid}" for name, pid in watch.items()]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=s.warmup + s.duration + 120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"load generator failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return dict(json.loads(out.stdout))
    finally:
        stop_all(servers)
        Path(busy_file).unlink(missing_ok=True)


# -- figures --------------------------------------------------------------------------------------


def per_run(cell: dict[str, Any]) -> dict[str, float]:
    """The figures of one measurement."""
    window, done = cell["window"], cell["completed"]
    per = 1000 / done if done else float("nan")
    cpu = cell["cpu"]
    fig = {
        "searches/s": done / window,
        "latency median": cell["latency_median"] or float("nan"),
        "latency p90": cell["latency_p90"] or float("nan"),
        "stalled": cell["stalled_at_end"],
        "errors": sum(cell["errors"].values()),
        "app cpu ms": (cpu["app"] + cpu["app master"]) * per,
        "app busy ms": cell["app_busy"] * per,
        "app busy %": 100 * cell["app_busy"] / (window * THREADS),
        "app cpu %": 100 * (cpu["app"] + cpu["app master"]) / window,
        "app rss MB": cell["peak_rss_kb"]["app"] / 1024,
        "model cpu %": 100 * cpu["model"] / window,
        "load cpu %": 100 * cpu["load generator"] / window,
    }
    if "gateway" in cpu:
        fig["gateway cpu ms"] = cpu["gateway"] * per
        fig["gateway cpu %"] = 100 * cpu["gateway"] / window
        fig["gateway rss MB"] = cell["peak_rss_kb"]["gateway"] / 1024
    return fig


def med(values: Sequence[float]) -> float:
    return summary(values)[1]


def spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    lo, mid, hi = summary(values)
    return fmt(mid) if len(values) == 1 else f"{fmt(mid)} ({fmt(lo)}–{fmt(hi)})"


def num(digits: int) -> Callable[[float], str]:
    def f(value: float) -> str:
        if value != value:  # NaN: nothing completed
            return "–"
        return f"{value:,.{digits}f}"

    return f


def sig(value: float) -> str:
    """Three significant figures, for values from microseconds to seconds."""
    if value != value:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def report(results: dict[tuple[str, int], list[dict[str, float]]], s: Settings, quick: bool) -> tuple[str, str]:
    """(the short summary for the top of the page, the full section)."""
    ratios = {
        users: [
            b["searches/s"] / a["searches/s"] if a["searches/s"] else float("inf")
            for a, b in zip(results["relay", users], results["signgate", users], strict=True)
        ]
        for users in s.users
    }
    cmd = ".venv/bin/python bench/bench_headline.py" + (" --quick" if quick else "")
    big = [u for u in s.users if u >= 100] or list(s.users)
    first, *rest = big
    headline = f"**{med(ratios[first]):,.0f}× as many AI searches per second** at {first:,} concurrent users" + "".join(
        f", and **{med(ratios[u]):,.0f}×** at {u:,}" for u in rest
    )
    if quick:
        how = "a `--quick` smoke run, not a measurement"
    else:
        ranges = " and ".join(f"{summary(ratios[u])[0]:,.0f}–{summary(ratios[u])[2]:,.0f}×" for u in big)
        how = f"median of {s.runs} runs, {time.strftime('%Y-%m-%d')}; min–max {ranges}"
    most = max(s.users)
    relay_wait = most / med([r["searches/s"] for r in results["relay", most]])
    sign_ms = med([r["app cpu ms"] for r in results["signgate", most]])
    share = med([r["searches/s"] for r in results["signgate", most]]) / (most / MODEL_SECONDS)
    ceiling = THREADS / MODEL_SECONDS
    top = "\n".join(
        [
            f"With signgate, one app-server worker with {THREADS} threads completes {headline}, compared with "
            f"relaying the model's answer itself ({how}).",
            "",
            f"The model takes {MODEL_SECONDS:g} s per answer. An app that relays it holds one of its {THREADS} "
            f"threads for the whole answer, so it can never complete more than {THREADS} / {MODEL_SECONDS:g} s = "
            f"{ceiling:.2f} searches per second, however many users wait; each extra user only lengthens the "
            f"queue (at {most:,} users, to a wait of about {relay_wait / 60:,.0f} minutes). With signgate the app "
            f"only signs, {sign_ms:.1f} ms of its CPU per search, and the browser fetches the answer "
            "through the gateway, which holds thousands of streams on one event loop. Completed searches then "
            f"grow with the users, up to users / {MODEL_SECONDS:g} s, until the machine runs out of CPU (at "
            f"{most:,} users, {share:.0%} of that here, with the app, the gateway, the model and the load "
            "generator sharing the machine's cores). So the ratio is about users ÷ threads for as long as the "
            "gateway keeps up; what this measures is that it does, and that signing keeps the app server out "
            "of the way. The work does not vanish, it moves: the gateway spends CPU on every stream (see the "
            "table below), but on an event loop that never blocks, not on a thread that waits.",
            "",
            f"Reproduce: `{cmd}`. Details, tables and plots: [below](#headline-app-server-relay-vs-signgate).",
        ]
    )

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} at {git_revision()} on {machine()}"
        + (" (a `--quick` smoke run: 1 short run per figure, not a measurement)." if quick else "."),
        f"{s.runs} {'run' if s.runs == 1 else 'runs'} per figure, each on freshly started servers: "
        f"users start spread over {MODEL_SECONDS:g} s, and the window opens at {s.warmup:g} s and lasts "
        f"{s.duration:g} s. Ranges are median (min–max) over the runs.",
        f"Reproduce: `{cmd}`.",
        "",
        "App server: Flask under gunicorn, 1 worker, `gthread`, 4 threads. Model: a local SSE server "
        f"that streams {EVENTS} events over {MODEL_SECONDS:.0f} s. Gateway: `signgate serve`, 1 worker, "
        "access log on. Everything runs on the same machine, load generator included.",
        "",
        "| users | ratio (b) / (a) searches/s |",
        "|---:|---:|",
    ]
    lines += [f"| {u:,} | {spread(ratios[u], lambda v: f'{v:,.1f}×')} |" for u in s.users]
    lines += [
        "",
        "| users | way | searches/s | latency median s | latency p90 s | steady-state latency s | stalled at end "
        "| errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for users in s.users:
        for way in WAYS:
            runs = results[way, users]
            col = {k: [r[k] for r in runs] for k in runs[0]}
            lines.append(
                f"| {users:,} | {LABEL[way]} | {spread(col['searches/s'], sig)} | "
                f"{num(2)(med(col['latency median']))} | {num(2)(med(col['latency p90']))} | "
                f"{sig(users / med(col['searches/s']))} | {med(col['stalled']):,.0f} | {sum(col['errors']):,.0f} |"
            )
    lines += [
        "",
        "*Latency median, p90*: of the searches completed in the window. For the relay at many users most "
        "never complete, and the few that do had the front of the queue; the *steady-state latency* is what "
        "every user waits once the queue has formed: users ÷ searches/s (Little's law, as each user always "
        f"has one search running). *Stalled*: users whose search had been running for more than "
        f"{2 * MODEL_SECONDS:.0f} s when the window closed.",
        "",
        "| users | way | app CPU ms / search | app thread time ms / search | app threads busy | app CPU | "
        "app peak RSS MB | gateway CPU ms / search | gateway CPU | gateway peak RSS MB | model CPU | load-gen CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for users in s.users:
        for way in WAYS:
            runs = results[way, users]
            col = {k: [r[k] for r in runs] for k in runs[0]}
            gw = way == "signgate"
            lines.append(
                f"| {users:,} | {LABEL[way]} | {sig(med(col['app cpu ms']))} | {sig(med(col['app busy ms']))} | "
                f"{med(col['app busy %']):.0f} % | {med(col['app cpu %']):.0f} % | {med(col['app rss MB']):.1f} | "
                + (
                    f"{sig(med(col['gateway cpu ms']))} | {med(col['gateway cpu %']):.0f} % | "
                    f"{med(col['gateway rss MB']):.1f} | "
                    if gw
                    else "– | – | – | "
                )
                + f"{med(col['model cpu %']):.0f} % | {med(col['load cpu %']):.0f} % |"
            )
    lines += [
        "",
        "Medians over the runs. *CPU ms / search*: CPU time of the process (gunicorn's master and worker for "
        "the app) during the window, from /proc/PID/task/*/schedstat, over the searches completed in it. "
        "*Thread time*: measured inside the app, from the WSGI call until the response is closed, so a "
        f"relayed answer counts until its last byte; *threads busy* is that over {THREADS} threads × the window. "
        "*CPU* columns are percentages of one core; the machine has "
        f"{os.cpu_count()}, shared by every process here. *Peak RSS*: VmHWM of the gunicorn worker and of the "
        "gateway, which start fresh for each measurement. The relay's memory stays flat because it never "
        "serves more than 4 searches at a time; the gateway's grows with the streams it holds.",
        "",
        "![Completed searches per second against concurrent users](images/bench-headline-throughput.png)",
        "![App-server CPU and thread time per search](images/bench-headline-cpu.png)",
        "![Peak memory of the app server and the gateway](images/bench-headline-memory.png)",
    ]
    return top, "\n".join(lines)


def plot(results: dict[tuple[str, int], list[dict[str, float]]], s: Settings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = list(s.users)
    colors = {"relay": "#c0392b", "signgate": "#2471a3"}

    def series(way: str, key: str) -> tuple[list[float], list[list[float]]]:
        mids, errs = [], [[], []]
        for u in users:
            lo, mid, hi = summary([r[key] for r in results[way, u]])
            mids.append(mid)
            errs[0].append(mid - lo)
            errs[1].append(hi - mid)
        return mids, errs

    IMAGES.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for way in WAYS:
        mids, errs = series(way, "searches/s")
        ax.errorbar(users, mids, yerr=errs, marker="o", capsize=3, color=colors[way], label=LABEL[way])
    ax.plot(
        users,
        [u / MODEL_SECONDS for u in users],
        ":",
        color="gray",
        label=f"users / {MODEL_SECONDS:.0f} s (no waiting)",
    )
    ax.axhline(THREADS / MODEL_SECONDS, ls="--", lw=0.8, color=colors["relay"], alpha=0.6)
    ax.annotate(
        f"{THREADS} threads / {MODEL_SECONDS:.0f} s",
        (users[0], THREADS / MODEL_SECONDS * 1.15),
        color=colors["relay"],
        fontsize=8,
    )
    ax.set(xscale="log", yscale="log", xlabel="concurrent users", ylabel="completed searches per second")
    ax.set_title("Searches per second, one app worker (gthread, 4 threads), model answers in 3 s", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "bench-headline-throughput.png", dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for way in WAYS:
        mids, errs = series(way, "app cpu ms")
        left.errorbar(users, mids, yerr=errs, marker="o", capsize=3, color=colors[way], label=f"app, {LABEL[way]}")
        mids, errs = series(way, "app busy ms")
        right.errorbar(users, mids, yerr=errs, marker="o", capsize=3, color=colors[way], label=f"app, {LABEL[way]}")
    mids, errs = series("signgate", "gateway cpu ms")
    left.errorbar(
        users, mids, yerr=errs, marker="s", ls="--", capsize=3, color="#7d3c98", label="gateway, (b) signgate"
    )
    left.set(xscale="log", xlabel="concurrent users", ylabel="CPU ms per completed search", title="CPU per search")
    left.set_ylim(bottom=0)
    right.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent users",
        ylabel="thread ms per completed search",
        title="App thread time per search",
    )
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "bench-headline-cpu.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for way in WAYS:
        mids, errs = series(way, "app rss MB")
        ax.errorbar(users, mids, yerr=errs, marker="o", capsize=3, color=colors[way], label=f"app worker, {LABEL[way]}")
    mids, errs = series("signgate", "gateway rss MB")
    ax.errorbar(users, mids, yerr=errs, marker="s", ls="--", capsize=3, color="#7d3c98", label="gateway, (b) signgate")
    ax.set(xscale="log", xlabel="concurrent users", ylabel="peak RSS, MB", title="Peak memory")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "bench-headline-memory.png", dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each figure (default 5, at least 5)")
    parser.add_argument(
        "--users", default="10,100,1000", help="concurrent users, comma-separated (default 10,100,1000)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=9.0,
        help="seconds measured per run, rounded to whole model answers of 3 s (default 9)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 run, 6 s windows")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md or plots")
    parser.add_argument("--json", metavar="FILE", help="also save the raw measurements as JSON")
    args = parser.parse_args()
    users = tuple(int(u) for u in args.users.split(","))
    # A relaying thread finishes a search every 3 s, in step with when it took its first one. The
    # window lasts whole answers and opens half an answer after the last user started, so no such
    # lockstep finish sits on its edge, and every thread's searches are counted exactly.
    warmup = 1.5 * MODEL_SECONDS
    duration = MODEL_SECONDS * max(1, round((6.0 if args.quick else args.duration) / MODEL_SECONDS))
    s = Settings(users, runs=1 if args.quick else max(5, args.runs), warmup=warmup, duration=duration)

    results: dict[tuple[str, int], list[dict[str, float]]] = {(w, u): [] for w in WAYS for u in users}
    raw: list[dict[str, Any]] = []
    cells = s.runs * len(users) * len(WAYS)
    started, n = time.monotonic(), 0
    for run in range(1, s.runs + 1):
        for u in users:
            for way in WAYS:
                n += 1
                cell = measure_cell(way, u, s)
                raw.append(cell)
                fig = per_run(cell)
                results[way, u].append(fig)
                progress(
                    f"  [{n}/{cells}] run {run}, {u:,} users, {way}: {fig['searches/s']:.1f} searches/s, "
                    f"p50 {fig['latency median']:.2f} s, app CPU {fig['app cpu ms']:.2f} ms/search "
                    f"({time.monotonic() - started:.0f} s elapsed)"
                )
    top, section = report(results, s, args.quick)
    print(top + "\n\n" + section)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    if not args.no_write:
        plot(results, s)
        write_section("headline-summary", top)
        write_section("headline", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
