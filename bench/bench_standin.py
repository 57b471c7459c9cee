"""How long the stand-in parser takes per query. A measurement, not a test: it asserts nothing.

.venv/bin/python bench/bench_standin.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from signgate.standin import extract
from signgate.standin.model import MAX_TEXT

TESTS = Path(__file__).resolve().parent.parent / "python" / "tests"


def main() -> None:
    schema = json.loads((TESTS / "standin_car_schema.json").read_text())
    queries = [q["query"] for q in json.loads((TESTS / "standin_queries.json").read_text())["queries"]]
    extract(schema, "warm the schema cache")
    times = []
    for _ in range(20):
        for query in queries:
            start = time.perf_counter()
            extract(schema, query)
            times.append(time.perf_counter() - start)
    times.sort()
    median, p99 = statistics.median(times), times[int(len(times) * 0.99)]
    print(f"{len(times)} queries: median {median * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")
    long_text = (" ".join(queries) * 4)[:MAX_TEXT]
    start = time.perf_counter()
    extract(schema, long_text)
    print(f"one {len(long_text)}-character message (the most it reads): {(time.perf_counter() - start) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
