"""Run every benchmark, one after the other; each writes its own section of docs/benchmarks.md.

``make bench`` runs this; ``make bench BENCH_ARGS=--quick`` passes ``--quick`` through for a smoke
run of a few minutes whose numbers are not measurements. A benchmark that is not in this checkout
is skipped with a note; one that fails does not stop the others, but makes the exit status 1.

.venv/bin/python bench/run_all.py [--quick] [--no-write] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (name, script, rough minutes of a full run on a quiet 2-core machine, of a --quick run)
BENCHMARKS = [
    ("signer", "bench_signer.py", 0.5, 0.2),
    ("gateway", "bench_gateway.py", 11.0, 2.5),
    ("layers", "bench_layers.py", 3.5, 0.7),
    ("flask-proxy", "bench_flask_proxy.py", 3.5, 0.7),
    ("headline", "bench_headline.py", 8.3, 1.5),
]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of every benchmark")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    parser.add_argument(
        "--only", action="append", choices=[b[0] for b in BENCHMARKS], help="run only this benchmark (repeatable)"
    )
    args = parser.parse_args()
    passed = [flag for flag in ("--quick", "--no-write") if getattr(args, flag[2:].replace("-", "_"))]
    chosen = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
    present = []
    for bench in chosen:
        if (HERE / bench[1]).exists():
            present.append(bench)
        else:
            progress(f"bench: skipping {bench[0]}: bench/{bench[1]} is not in this checkout")
    estimate = sum(b[3] if args.quick else b[2] for b in present)
    progress(f"bench: {len(present)} benchmarks, about {estimate:.0f} minutes{' (--quick)' if args.quick else ''}")

    failed: list[str] = []
    started = time.monotonic()
    for i, (name, script, *_) in enumerate(present, 1):
        progress(f"bench [{i}/{len(present)}] {name}: bench/{script} {' '.join(passed)}".rstrip())
        t0 = time.monotonic()
        code = subprocess.run([sys.executable, str(HERE / script), *passed], check=False).returncode
        took = time.monotonic() - t0
        if code != 0:
            failed.append(name)
            progress(f"bench [{i}/{len(present)}] {name} FAILED (exit {code}) after {took:.0f} s")
        else:
            progress(f"bench [{i}/{len(present)}] {name} done in {took:.0f} s")
    total = time.monotonic() - started
    if failed:
        progress(f"bench: {', '.join(failed)} failed; total {total / 60:.1f} minutes")
        return 1
    where = "printed only" if args.no_write else "docs/benchmarks.md updated"
    progress(f"bench: all done in {total / 60:.1f} minutes; {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
