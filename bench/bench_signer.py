"""Sign and verify speed: signgate against signway-sdk's sign_url and botocore's S3 presign.

Every figure is measured in the same run and reported as min / median / max over the repeats,
with the ratio to signway-sdk (the baseline). Run: ``.venv/bin/python bench/bench_signer.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import sys
import time
import timeit
from collections.abc import Callable

from _report import git_revision, machine, summary, write_section

import signgate
from signgate import Signer, Verifier

BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Turn the user's words into search filters as JSON."},
            {"role": "user", "content": "a red crossover under 30k, newer than 2018, with leather and a sunroof"},
        ],
        "max_tokens": 200,
    },
    separators=(",", ":"),
)
UPSTREAM = "https://api.openai.com/v1/chat/completions"
GATEWAY = "https://gateway.example.com"
HEADERS = {"Content-Type": "application/json"}
BASELINE = "signway-sdk sign_url (baseline)"


def candidates() -> dict[str, Callable[[], object]]:
    from botocore.session import get_session
    from signway_sdk import sign_url as sdk_sign_url

    signer = Signer("app", "s3cret", GATEWAY, expires_in=30)
    # The verified URL outlives the run (the rounds take longer than a 30 s expiry).
    signed = Signer("app", "s3cret", GATEWAY, expires_in=3600).sign("POST", UPSTREAM, headers=HEADERS, body=BODY)
    query = signed.url.split("?", 1)[1]
    sent = {"content-type": "application/json", "content-length": str(len(BODY.encode()))}
    raw = BODY.encode()
    verifier = Verifier({"app": ["s3cret"]})

    session = get_session()
    s3 = session.create_client(
        "s3", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
    )
    key = hashlib.sha256(b"k").digest()

    def bare() -> object:
        hashlib.sha256(BODY.encode()).hexdigest()
        hmac.digest(b"SW1-HMAC-SHA256s3cret", b"20240101", "sha256")
        return hmac.new(key, BODY.encode(), "sha256").hexdigest()

    return {
        BASELINE: lambda: sdk_sign_url(
            "app", "s3cret", GATEWAY, UPSTREAM, 30, "POST", dict(HEADERS), BODY, dt.datetime.utcnow()
        ),
        "signgate Signer.sign": lambda: signer.sign("POST", UPSTREAM, headers=HEADERS, body=BODY),
        "signgate sign_url (drop-in)": lambda: signgate.sign_url(
            "app", "s3cret", GATEWAY, UPSTREAM, 30, "POST", HEADERS, BODY
        ),
        "signgate Verifier.verify_request": lambda: verifier.verify_request("POST", query, sent, raw),
        "botocore S3 generate_presigned_url": lambda: s3.generate_presigned_url(
            "put_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=30
        ),
        "bare SHA-256 + two HMACs": bare,
    }


def measure(candidates: dict[str, Callable[[], object]], repeats: int, budget: float) -> dict[str, list[float]]:
    """CPU µs per call of each candidate, ``repeats`` times. The candidates take turns within each
    round, so a burst of other work on the machine touches them all alike, and each round's ratios
    compare numbers taken seconds apart. The clock is this thread's CPU time, not the wall: on a
    shared machine the time a process waits for a core says nothing about the code it runs."""
    timers = {name: timeit.Timer(fn, timer=time.thread_time) for name, fn in candidates.items()}
    numbers = {name: max(1, int(budget / max(t.timeit(50) / 50, 1e-7))) for name, t in timers.items()}
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for round_ in range(repeats):
        print(f"  round {round_ + 1}/{repeats}", file=sys.stderr, flush=True)
        for name, t in timers.items():
            results[name].append(t.timeit(numbers[name]) / numbers[name] * 1e6)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9, help="rounds of timed runs (default 9)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 short rounds")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    repeats, budget = (5, 0.05) if args.quick else (max(5, args.repeats), 0.3)

    results = measure(candidates(), repeats, budget)
    base = results[BASELINE]

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} at {git_revision()} on {machine()}.",
        f"POST with one bound header and a {len(BODY.encode())}-byte JSON body; CPU time per call; {repeats} "
        f"rounds, the candidates taking turns in each; {load_note()}",
        "Reproduce: `.venv/bin/python bench/bench_signer.py`.",
        "",
        "| operation | min µs | median µs | max µs | speed vs signway-sdk: min / **median** / max of the rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in results.items():
        lo, med, hi = summary(values)
        speed = summary([b / v for b, v in zip(base, values, strict=True)])
        lines.append(
            f"| {name} | {lo:.2f} | {med:.2f} | {hi:.2f} | {speed[0]:.1f} / **{speed[1]:.1f}** / {speed[2]:.1f}× |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        write_section("signer", table)
    return 0


def load_note() -> str:
    """The machine's load average as the run ends: other work shows in the spread of the rounds."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores as the run ended."


if __name__ == "__main__":
    sys.exit(main())
