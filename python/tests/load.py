"""Bounded load against a gateway process, and what to read off that process while it runs.

``run_pool`` runs a fixed list of request jobs with at most ``concurrency`` in flight;
``Resources`` samples a process's open descriptors and resident memory from /proc;
``Metrics`` parses the gateway's ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from raw_http import exchange, parse_responses, request_bytes

T = TypeVar("T")

_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


async def run_pool(jobs: Iterable[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    """Run every job, at most ``concurrency`` at once; results in the jobs' order."""
    queue = list(enumerate(jobs))
    results: list[T | None] = [None] * len(queue)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(queue):
            index, job = queue[position]
            position += 1
            results[index] = await job()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results  # type: ignore[return-value]


@dataclass
class Metrics:
    """One scrape of ``GET /metrics``: requests by (code, status), and the gauges."""

    requests: dict[tuple[str, str], int]
    in_flight: int
    tasks: int

    @classmethod
    def scrape(cls, port: int) -> Metrics:
        raw = exchange(port, request_bytes("GET", "/metrics", [("Connection", "close")]))
        text = parse_responses(raw)[0].body.decode()
        requests: dict[tuple[str, str], int] = {}
        gauges: dict[str, int] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if not match:
                continue
            name, labels, value = match.groups()
            if name == "signgate_requests_total":
                label = dict(_LABEL.findall(labels))
                requests[(label["code"], label["status"])] = int(value)
            elif name in ("signgate_streams_in_flight", "signgate_tasks"):
                gauges[name] = int(value)
        return cls(requests, gauges["signgate_streams_in_flight"], gauges["signgate_tasks"])

    def minus(self, before: Metrics) -> dict[tuple[str, str], int]:
        """Requests counted since ``before``, by (code, status); the scrapes themselves excluded."""
        out = {k: v - before.requests.get(k, 0) for k, v in self.requests.items()}
        out.pop(("metrics", "200"), None)
        return {k: v for k, v in out.items() if v}


@dataclass
class Sample:
    at: float
    fds: int
    rss_kib: int


class Resources:
    """Open descriptors and resident memory of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[Sample] = []

    def fds(self) -> int:
        return len(list(Path(f"/proc/{self.pid}/fd").iterdir()))

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.pid}")

    def sockets_to(self, port: int) -> int:
        """How many of the process's descriptors are TCP connections to ``port`` on this host
        (an upstream's pooled keep-alive connections, for instance)."""
        inodes = set()
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                link = fd.readlink().name
            except OSError:  # closed meanwhile
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        count = 0
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
        return count

    def sample(self) -> Sample:
        sample = Sample(time.monotonic(), self.fds(), self.rss_kib())
        self.samples.append(sample)
        return sample

    async def sample_every(self, seconds: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)


def settle(port: int, resources: Resources, baseline_fds: int | None = None, timeout: float = 10) -> Metrics:
    """Wait until the gateway has nothing in flight (and, if given, its descriptors are back
    to ``baseline_fds``); return the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = Metrics.scrape(port)
        quiet = metrics.in_flight == 0 and (baseline_fds is None or resources.fds() <= baseline_fds)
        if quiet or time.monotonic() > deadline:
            return metrics
        time.sleep(0.05)


def thirds_median(values: list[int]) -> tuple[float, float]:
    """Medians of the first and the last third of ``values``."""
    third = max(1, len(values) // 3)
    return statistics.median(values[:third]), statistics.median(values[-third:])
