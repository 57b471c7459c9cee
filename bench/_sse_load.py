"""The stream load generator of the gateway benchmark, run as its own process.

``python _sse_load.py --port P --target /sse?... -n 9000 --pid PROXY_PID`` opens ``n`` SSE streams
with a bounded ramp, counts every event of every stream (httptools parses the chunked framing,
so an event split across reads or chunks is counted once), and prints one JSON object:
completion, time to first event, and the proxy's resident memory (VmRSS from ``/proc/PID``)
just before the first connection and at the plateau: the samples, every 50 ms, taken while the
most streams were receiving at once (all of them, when the proxy keeps up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from collections import Counter
from typing import cast

import httptools
import uvloop


def rss_kb(pid: int) -> int:
    """Resident set size (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Load:
    """Shared counters of one run."""

    def __init__(self, n: int, events: int) -> None:
        self.n = n
        self.events = events
        self.started = [0.0] * n
        self.first = [0.0] * n
        self.counts = [0] * n
        self.complete = [False] * n
        self.errors: Counter[str] = Counter()
        self.receiving = 0  # streams that have had their first event and have not ended


class Stream(asyncio.Protocol):
    def __init__(self, load: Load, i: int, request: bytes, done: asyncio.Future[None]) -> None:
        self.load = load
        self.i = i
        self.request = request
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.newline = False  # the body so far ends with "\n"
        self.receiving = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.finish("bad_http")

    def on_headers_complete(self) -> None:
        if self.parser.get_status_code() != 200:
            self.finish(f"status_{self.parser.get_status_code()}")

    def on_body(self, body: bytes) -> None:
        load, i = self.load, self.i
        found = body.count(b"\n\n") + (1 if self.newline and body[:1] == b"\n" else 0)
        self.newline = body[-1:] == b"\n"
        if found:
            if load.counts[i] == 0:
                load.first[i] = time.perf_counter()
                load.receiving += 1
                self.receiving = True
            load.counts[i] += found

    def on_message_complete(self) -> None:
        self.load.complete[self.i] = self.load.counts[self.i] == self.load.events
        self.finish(None if self.load.complete[self.i] else "wrong_event_count")

    def connection_lost(self, exc: Exception | None) -> None:
        # Before the end of the response: the proxy closed (or reset) the connection.
        self.finish("closed_early" if exc is None else f"closed_early_{type(exc).__name__}")

    def finish(self, error: str | None) -> None:
        if self.done.done():
            return
        if error is not None:
            self.load.errors[error] += 1
        if self.receiving:
            self.load.receiving -= 1
            self.receiving = False
        self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()


async def one(load: Load, i: int, host: str, port: int, request: bytes, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    load.started[i] = time.perf_counter()
    transport = None
    try:
        async with asyncio.timeout_at(deadline):
            transport, _ = await loop.create_connection(lambda: Stream(load, i, request, done), host, port)
            await done
    except TimeoutError:
        load.errors["timeout"] += 1
    except OSError as exc:
        load.errors[type(exc).__name__] += 1
    finally:
        if transport is not None:
            transport.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    load = Load(args.n, args.events)
    request = (
        f"GET {args.target} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    pids: list[int] = args.pid
    idle = [rss_kb(p) for p in pids]
    plateau: list[tuple[int, list[int]]] = []  # (streams receiving, RSS per pid)
    ramp = args.n / args.rate * 0.1
    deadline = loop.time() + ramp + args.stream_s + args.timeout

    async def sample() -> None:
        while True:
            await asyncio.sleep(args.sample_ms / 1000)
            plateau.append((load.receiving, [rss_kb(p) for p in pids]))

    sampler = loop.create_task(sample())
    started = time.perf_counter()
    batch = max(1, args.rate // 10)  # launch every 10 ms: `rate` streams per 100 ms
    tasks = []
    for k, first in enumerate(range(0, args.n, batch)):
        delay = started + k * 0.01 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        for i in range(first, min(args.n, first + batch)):
            tasks.append(loop.create_task(one(load, i, args.host, args.port, request, deadline)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started  # first connection to last stream's end
    sampler.cancel()

    most = max((r for r, _ in plateau), default=0)
    at_plateau = [rss for r, rss in plateau if r == most] or [idle]
    ttfe = [(f - s) * 1000 for s, f in zip(load.started, load.first, strict=True) if f]
    return {
        "n": args.n,
        "completed": sum(load.complete),
        "events": sum(load.counts),
        "errors": dict(load.errors),
        "ttfe_ms_median": statistics.median(ttfe) if ttfe else None,
        "ttfe_ms_max": max(ttfe) if ttfe else None,
        "rss_idle_kb": idle,
        "rss_plateau_kb": [max(column) for column in zip(*at_plateau, strict=True)],
        "plateau_streams": most,
        "duration_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="request target, e.g. /sse?n=20&ms=3000")
    parser.add_argument("-n", type=int, required=True, help="streams to open")
    parser.add_argument("--events", type=int, default=20, help="events each stream must deliver")
    parser.add_argument("--rate", type=int, default=1000, help="streams opened per 100 ms")
    parser.add_argument("--stream-s", type=float, default=3.0, help="how long one stream lasts")
    parser.add_argument("--timeout", type=float, default=20.0, help="grace after the last stream should end")
    parser.add_argument("--pid", type=int, action="append", default=[], help="process to measure (repeatable)")
    parser.add_argument("--sample-ms", type=float, default=50.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    json.dump(uvloop.run(run(args)), sys.stdout)
    print()


if __name__ == "__main__":
    main()
