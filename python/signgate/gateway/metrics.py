"""Prometheus metrics, kept in plain counters so the hot path pays a dict update, not a lock.

Each worker process keeps its own numbers and labels them with ``worker`` (its pid).
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections import Counter


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(_BUCKETS, seconds)] += 1
        self.sum += seconds

    def render(self, labels: str) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        total = 0
        for bound, count in zip(_BUCKETS, self.counts, strict=False):
            total += count
            lines.append(f'{self.name}_bucket{{{labels},le="{bound}"}} {total}')
        total += self.counts[-1]
        lines.append(f'{self.name}_bucket{{{labels},le="+Inf"}} {total}')
        lines.append(f"{self.name}_sum{{{labels}}} {self.sum:.6f}")
        lines.append(f"{self.name}_count{{{labels}}} {total}")
        return lines


def _task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # rendered outside an event loop
        return 0


class Metrics:
    """What ``GET /metrics`` reports."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()  # (outcome code, status)
        self.in_flight = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_duration = Histogram(
            "signgate_upstream_duration_seconds", "Time from sending upstream to the end of its answer."
        )
        self.store_errors = 0
        self.webhook_failed = 0
        self.webhook_dropped = 0
        self.reloads: Counter[str] = Counter()  # "ok" or "failed"
        self.streams_revoked = 0
        # (key, estimated) -> [prompt, completion]. No tenant or user ids: metrics are readable by
        # whoever can scrape them, and ids would make a series per user (per-user usage goes to
        # the usage hook or webhook instead).
        self.tokens: dict[tuple[str, bool], list[int]] = {}
        self.upstream_ttfb = Histogram(
            "signgate_upstream_ttfb_seconds", "Time from sending upstream to its first response byte."
        )

    def count_tokens(self, key: str, prompt: int, completion: int, estimated: bool) -> None:
        counts = self.tokens.setdefault((key, estimated), [0, 0])
        counts[0] += prompt
        counts[1] += completion

    def render(self) -> str:
        worker = f'worker="{os.getpid()}"'
        lines = [
            "# HELP signgate_requests_total Requests by outcome code and HTTP status.",
            "# TYPE signgate_requests_total counter",
        ]
        for (code, status), count in sorted(self.requests.items()):
            lines.append(f'signgate_requests_total{{{worker},code="{code}",status="{status}"}} {count}')
        lines += [
            "# HELP signgate_streams_in_flight Upstream requests being relayed now.",
            "# TYPE signgate_streams_in_flight gauge",
            f"signgate_streams_in_flight{{{worker}}} {self.in_flight}",
            "# HELP signgate_bytes_in_total Request body bytes received from clients.",
            "# TYPE signgate_bytes_in_total counter",
            f"signgate_bytes_in_total{{{worker}}} {self.bytes_in}",
            "# HELP signgate_bytes_out_total Response body bytes sent to clients.",
            "# TYPE signgate_bytes_out_total counter",
            f"signgate_bytes_out_total{{{worker}}} {self.bytes_out}",
            "# HELP signgate_tasks asyncio tasks alive in the worker (the scrape's own included); "
            "a number that grows with traffic and never falls back is a leak.",
            "# TYPE signgate_tasks gauge",
            f"signgate_tasks{{{worker}}} {_task_count()}",
        ]
        lines += [
            "# HELP signgate_tokens_total Tokens used, by key and kind; estimated when the upstream reported none.",
            "# TYPE signgate_tokens_total counter",
        ]
        for (key, estimated), (prompt, completion) in sorted(self.tokens.items()):
            base = f'{worker},key="{_label(key)}",estimated="{str(estimated).lower()}"'
            lines.append(f'signgate_tokens_total{{{base},kind="prompt"}} {prompt}')
            lines.append(f'signgate_tokens_total{{{base},kind="completion"}} {completion}')
        lines += [
            "# HELP signgate_store_errors_total Store calls that failed.",
            "# TYPE signgate_store_errors_total counter",
            f"signgate_store_errors_total{{{worker}}} {self.store_errors}",
            "# HELP signgate_usage_webhook_failures_total Usage records the webhook refused or did not answer.",
            "# TYPE signgate_usage_webhook_failures_total counter",
            f"signgate_usage_webhook_failures_total{{{worker}}} {self.webhook_failed}",
            "# HELP signgate_usage_webhook_dropped_total Usage records dropped because the queue was full.",
            "# TYPE signgate_usage_webhook_dropped_total counter",
            f"signgate_usage_webhook_dropped_total{{{worker}}} {self.webhook_dropped}",
            "# HELP signgate_config_reloads_total Configuration reloads, by outcome (failed: the old one stayed).",
            "# TYPE signgate_config_reloads_total counter",
            f'signgate_config_reloads_total{{{worker},outcome="ok"}} {self.reloads["ok"]}',
            f'signgate_config_reloads_total{{{worker},outcome="failed"}} {self.reloads["failed"]}',
            "# HELP signgate_streams_revoked_total Live streams ended because a revocation covered them.",
            "# TYPE signgate_streams_revoked_total counter",
            f"signgate_streams_revoked_total{{{worker}}} {self.streams_revoked}",
        ]
        lines += self.upstream_duration.render(worker)
        lines += self.upstream_ttfb.render(worker)
        return "\n".join(lines) + "\n"
