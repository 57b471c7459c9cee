"""Simulated users for the headline benchmark, run as their own process; prints one JSON object.

``python _searchload.py --mode relay|signgate --app URL --users N --warmup W --duration D ...``

Each user loops with no think time: one search is either one call to the app's relay endpoint
(``relay``) or a call to its sign endpoint and then the signed call to the gateway (``signgate``),
both read to the model's ``data: [DONE]``. Each user has its own aiohttp session (its own
connections, as a browser has), and the users start evenly spread over ``--ramp`` seconds so
their searches do not finish in lockstep.

Measured over the window [start + warmup, start + warmup + duration], by this process so the
clock is the one the searches are timed with: searches completed in it and their latencies, the
users whose search has run longer than ``--stall-after`` at its end, the CPU time of each
``--watch`` process (``_procs.cpu_seconds``), their peak resident memory (VmHWM at the end: the
peak since the process started, which for these freshly started servers is the peak of this
load), and the app's in-request thread time from ``--busy-file``. It stops by itself at the
window's end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from typing import Any

import aiohttp
import uvloop
from _apps import read_busy
from _procs import cpu_seconds, raise_nofile, status_kb

DONE = b"data: [DONE]\n\n"


class Search:
    __slots__ = ("end", "error", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.end: float | None = None
        self.error: str | None = None


async def read_to_done(response: aiohttp.ClientResponse) -> None:
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    tail = b""
    async for data in response.content.iter_any():
        tail = (tail + data)[-len(DONE) :]
    if tail != DONE:
        raise RuntimeError("stream ended before [DONE]")


async def one_search(session: aiohttp.ClientSession, mode: str, app: str, query: str) -> None:
    if mode == "relay":
        async with session.post(f"{app}/api/search/relay", json={"query": query}) as response:
            await read_to_done(response)
        return
    async with session.post(f"{app}/api/search/sign", json={"query": query}) as response:
        if response.status != 200:
            raise RuntimeError(f"sign: HTTP {response.status}")
        signed = await response.json()
    async with session.request(
        signed["method"], signed["url"], headers=signed["headers"], data=signed["body"].encode()
    ) as response:
        await read_to_done(response)


async def user(number: int, args: argparse.Namespace, searches: list[Search], stop_at: float) -> None:
    await asyncio.sleep(number * args.ramp / args.users)
    connector = aiohttp.TCPConnector(limit=2, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        i = 0
        while time.monotonic() < stop_at:
            search = Search(time.monotonic())
            searches.append(search)
            try:
                await one_search(session, args.mode, args.app, f"red crossover under 30k #{number}-{i}")
            except Exception as exc:
                search.error = type(exc).__name__ + (f": {exc}" if isinstance(exc, RuntimeError) else "")
                await asyncio.sleep(0.05)  # a failing server must not turn this into a busy loop
            search.end = time.monotonic()
            i += 1


def snapshot(watch: dict[str, int], busy_file: str | None) -> dict[str, Any]:
    cpu = {name: cpu_seconds(pid) for name, pid in watch.items()}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu["load generator"] = usage.ru_utime + usage.ru_stime
    snap: dict[str, Any] = {"t": time.monotonic(), "cpu": cpu}
    if busy_file:
        snap["requests"], snap["busy"] = read_busy(busy_file)
    return snap


async def run(args: argparse.Namespace) -> dict[str, Any]:
    watch = {name: int(pid) for name, _, pid in (w.partition("=") for w in args.watch)}
    searches: list[Search] = []
    begin = time.monotonic()
    window_start, window_end = begin + args.warmup, begin + args.warmup + args.duration
    tasks = [asyncio.create_task(user(n, args, searches, window_end)) for n in range(args.users)]
    await asyncio.sleep(window_start - time.monotonic())
    first = snapshot(watch, args.busy_file)
    await asyncio.sleep(window_end - time.monotonic())
    last = snapshot(watch, args.busy_file)
    peaks = {name: status_kb(pid, "VmHWM") for name, pid in watch.items()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    start, end = first["t"], last["t"]
    done = [s for s in searches if s.end is not None and start <= s.end <= end]
    ok = [s.end - s.start for s in done if s.error is None and s.end is not None]
    errors: dict[str, int] = {}
    for s in done:
        if s.error is not None:
            errors[s.error] = errors.get(s.error, 0) + 1
    waiting = [end - s.start for s in searches if s.end is None or s.end > end]
    ok.sort()
    result: dict[str, Any] = {
        "mode": args.mode,
        "users": args.users,
        "window": end - start,
        "completed": len(ok),
        "errors": errors,
        "latency_median": statistics.median(ok) if ok else None,
        "latency_p90": ok[min(len(ok) - 1, int(0.9 * len(ok)))] if ok else None,
        "latency_max": ok[-1] if ok else None,
        "stalled_at_end": sum(1 for age in waiting if age > args.stall_after),
        "longest_wait": max(waiting, default=0.0),
        "cpu": {name: last["cpu"][name] - first["cpu"][name] for name in last["cpu"]},
        "peak_rss_kb": peaks,
    }
    if args.busy_file:
        result["app_requests"] = last["requests"] - first["requests"]
        result["app_busy"] = last["busy"] - first["busy"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["relay", "signgate"], required=True)
    parser.add_argument("--app", required=True, help="the app server's base URL")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--ramp", type=float, default=3.0, help="users start spread over this many seconds")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before the window opens")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds the window stays open")
    parser.add_argument("--watch", action="append", default=[], metavar="NAME=PID", help="a process to measure")
    parser.add_argument("--busy-file", help="the app's BusyMeter file")
    parser.add_argument(
        "--stall-after", type=float, default=6.0, help="a search still running this long at the end has stalled"
    )
    args = parser.parse_args()
    raise_nofile()
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
