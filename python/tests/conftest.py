from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import Server, start_upstream

VECTORS = Path(__file__).parent / "sw1-vectors.json"


def load_vectors() -> list[dict[str, Any]]:
    """The public SW1 vectors, vendored from shared/reference (test_vectors checks the copy)."""
    return list(json.loads(VECTORS.read_text()))


class FakeClock:
    """A settable clock for the signer and verifier (epoch seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    """The test upstream (python/tests/fake_upstream.py) as a real process, one per test module."""
    server = start_upstream()
    yield server
    server.stop()
