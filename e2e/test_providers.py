"""The AI search through every LLM API the demo speaks, in Chromium: OpenAI chat completions
and responses, Anthropic messages and Google Gemini, each answering as JSON matching a schema and
as a forced function call (``python -m demo --provider P --answer-as A``), the stand-in speaking
the API. The browser helper reads each API's stream, and the page fills in the filters while
the answer streams, then lists the matching cars.

One stack per combination (module-scoped, parametrized): each starts in a few seconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import running
from .helpers import RESULTS_WITH_QUERY, ask, expect_results, has_feature, is_gateway_call, record_responses
from .stack import Stack

Shoot = Callable[[Page, str], None]
#: (provider, answer as): every API both ways.
COMBINATIONS = [
    (provider, answer_as)
    for provider in ("chat", "responses", "anthropic", "gemini")
    for answer_as in ("schema", "tool")
]
QUESTION = "a red SUV under $25,000 with a sunroof, 2018 or newer"
UNDERSTOOD = ["Body: SUV", "Color: Red", "Year ≥ 2018", "Price ≤ $25,000", "Feature: Sunroof"]
#: What the gateway's answer streams as, by API: every one is server-sent events.
STREAM = "text/event-stream"


@pytest.fixture(scope="module", params=COMBINATIONS, ids=[f"{p}-{a}" for p, a in COMBINATIONS])
def combination(request: pytest.FixtureRequest) -> tuple[str, str]:
    provider, answer_as = request.param
    return provider, answer_as


@pytest.fixture(scope="module")
def stack(combination: tuple[str, str], catalog_path: Path, log_dir: Path) -> Iterator[Stack]:
    provider, answer_as = combination
    name = f"test_providers-{provider}-{answer_as}"
    args = ("--provider", provider, "--answer-as", answer_as)
    with running(lambda: Stack.demo(name, catalog_path.parent, log_dir=log_dir, args=args)) as started:
        yield started


def test_the_search_streams_in_and_lists_the_cars(
    page: Page, stack: Stack, combination: tuple[str, str], db: sqlite3.Connection, shoot: Shoot
) -> None:
    provider, answer_as = combination
    defaults = stack.standin_config()
    # Slow enough that the understood panel is seen half filled, before the page moves on.
    stack.standin_config(chunk_delay=0.05)
    try:
        answers = record_responses(page, is_gateway_call)
        page.goto(f"{stack.app_url}/cars")
        ask(page, QUESTION)
        understood = page.get_by_test_id("understood-item")
        expect(page.get_by_test_id("chat-progress")).to_be_visible()
        if not (provider == "gemini" and answer_as == "tool"):
            # The answer fills in as it streams: the body is understood, the features (last in
            # the answer) not yet, and the page is still the one the question was asked on.
            # (Gemini sends a function call whole, in its last event: nothing to see half way.)
            expect(understood.filter(has_text="Body: SUV")).to_be_visible()
            expect(understood.filter(has_text="Sunroof")).to_have_count(0)
            expect(page).to_have_url(f"{stack.app_url}/cars")
            shoot(page, f"{provider}-{answer_as}-half-filled")
        expect(page).to_have_url(RESULTS_WITH_QUERY)
        expect_results(
            page,
            db,
            "body = 'suv' AND color = 'red' AND price <= 25000 AND year >= 2018 AND " + has_feature("sunroof"),
        )
        expect(understood).to_have_text(UNDERSTOOD)
        # Every API's answer names its model; Gemini's as modelVersion.
        expect(page.get_by_test_id("answered-by")).to_have_text("Answered by signgate-standin")
        shoot(page, f"{provider}-{answer_as}-results")
        assert [r.status for r in answers] == [200]
        assert answers[0].headers["content-type"].startswith(STREAM)
    finally:
        stack.standin_config(**defaults)
