"""A lean HTTP/1.1 load generator for the proxy comparison, run as its own process; prints one JSON object.

Raw asyncio protocol on uvloop with httptools parsing, so it costs far less per request than the
servers it drives. The request to send, headers and body included, is read from ``--request``.

- ``rps``: ``--connections`` keep-alive connections, each sending the request again as soon as the
  answer is complete; counts the answers completed in the window after ``--warmup``.
- ``streams``: opens ``--streams`` connections spread over ``--ramp`` seconds, each sending the
  request once and reading the streamed answer to its end (``data: [DONE]``); stops at ``--bound``
  seconds and reports how many completed, and the median time to the first event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httptools
import uvloop
from _procs import raise_nofile

DONE = b"data: [DONE]\n\n"


class Client(asyncio.Protocol):
    """One connection; calls ``done(client, status, ended_with_done)`` after each complete answer."""

    def __init__(self, request: bytes, done: Callable[[Client, int, bool], None]) -> None:
        self.request, self.done = request, done
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        self.sent_at = self.first_byte = 0.0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.tail, self.first_byte, self.sent_at = b"", 0.0, time.monotonic()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        if not self.first_byte:
            self.first_byte = time.monotonic()
        self.tail = (self.tail + body)[-len(DONE) :]

    def on_message_complete(self) -> None:
        self.done(self, self.parser.get_status_code(), self.tail == DONE)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def rps(args: argparse.Namespace, request: bytes) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    begin = time.monotonic()
    start, end = begin + args.warmup, begin + args.warmup + args.duration
    counts = {"ok": 0, "errors": 0, "all": 0}
    latencies: list[float] = []

    def done(client: Client, status: int, _: bool) -> None:
        now = time.monotonic()
        counts["all"] += 1
        if start <= now <= end:
            counts["ok" if status == 200 else "errors"] += 1
            if len(latencies) < 100_000:
                latencies.append(now - client.sent_at)
        if now < end:
            client.send()

    async def connection() -> None:
        while time.monotonic() < end:
            try:
                _, client = await loop.create_connection(lambda: Client(request, done), args.host, args.port)
            except OSError:
                counts["errors"] += 1
                await asyncio.sleep(0.05)
                continue
            try:
                await asyncio.wait_for(asyncio.shield(client.lost), max(0.0, end - time.monotonic()))
            except TimeoutError:
                assert client.transport is not None
                client.transport.close()
                return

    await asyncio.gather(*(connection() for _ in range(args.connections)))
    latencies.sort()
    return {
        "requests_per_second": counts["ok"] / args.duration,
        "ok": counts["ok"],
        "errors": counts["errors"],
        "answers_in_all": counts["all"],
        "latency_median_ms": statistics.median(latencies) * 1000 if latencies else None,
    }


async def streams(args: argparse.Namespace, request: bytes) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    begin = time.monotonic()
    counts = {"completed": 0, "errors": 0}
    first_event: list[float] = []
    clients: list[Client] = []

    def done(client: Client, status: int, ended_with_done: bool) -> None:
        counts["completed" if status == 200 and ended_with_done else "errors"] += 1
        first_event.append(client.first_byte - client.sent_at)
        assert client.transport is not None
        client.transport.close()

    async def one(n: int) -> None:
        await asyncio.sleep(n * args.ramp / args.streams)
        try:
            _, client = await loop.create_connection(lambda: Client(request, done), args.host, args.port)
            clients.append(client)
        except OSError:
            counts["errors"] += 1

    opening = asyncio.gather(*(one(n) for n in range(args.streams)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(opening, args.bound)
    while time.monotonic() - begin < args.bound and counts["completed"] + counts["errors"] < args.streams:
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - begin
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    return {
        "streams": args.streams,
        "completed": counts["completed"],
        "errors": counts["errors"],
        "seconds": elapsed,
        "first_event_median_ms": statistics.median(first_event) * 1000 if first_event else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["rps", "streams"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--request", required=True, help="file holding the raw HTTP request to send")
    parser.add_argument("--connections", type=int, default=50, help="rps: keep-alive connections")
    parser.add_argument("--warmup", type=float, default=0.5, help="rps: seconds before the window")
    parser.add_argument("--duration", type=float, default=3.0, help="rps: seconds measured")
    parser.add_argument("--streams", type=int, default=1000, help="streams: how many to open")
    parser.add_argument("--ramp", type=float, default=1.0, help="streams: seconds over which they open")
    parser.add_argument("--bound", type=float, default=10.0, help="streams: stop after this many seconds")
    args = parser.parse_args()
    raise_nofile()
    request = Path(args.request).read_bytes()
    print(json.dumps(uvloop.run(rps(args, request) if args.mode == "rps" else streams(args, request))))


if __name__ == "__main__":
    main()
