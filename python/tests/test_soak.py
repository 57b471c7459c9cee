"""One minute of ``soak.py`` in CI (``make soak`` runs ten)."""

from __future__ import annotations

import pytest
from soak import run_soak


@pytest.mark.slow
def test_one_minute_soak() -> None:
    result = run_soak(60, concurrency=32)
    print("\n" + result.summary())
    assert not result.problems, result.summary()
    assert result.tally.streams > 500, "too little traffic to judge anything"
    # about 20 at one every 2 s after the warm-up; a loaded machine delays some: a third of them
    # each side is enough to compare medians
    assert len(result.samples) >= 9
