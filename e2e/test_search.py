"""The AI search as a shopper uses it, and the plain form beside it, on the demo as it ships."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, Route, expect

from .helpers import (
    RESULTS_WITH_QUERY,
    ask,
    expect_results,
    has_feature,
    is_gateway_call,
    is_sign_call,
    record_responses,
    wait_until,
)
from .stack import Stack

Shoot = Callable[[Page, str], None]


@pytest.fixture
def standin(stack: Stack) -> Iterator[Stack]:
    """The stack, its stand-in model back to the demo's timing after the test."""
    defaults = stack.standin_config()
    yield stack
    stack.standin_config(**defaults)


def test_the_filters_stream_in_then_the_matching_cars_are_listed(
    page: Page, standin: Stack, db: sqlite3.Connection, shoot: Shoot
) -> None:
    # Slow enough that the understood panel is seen half filled, before the page moves on.
    standin.standin_config(chunk_delay=0.05)
    signs = record_responses(page, is_sign_call)
    answers = record_responses(page, is_gateway_call)
    page.goto(f"{standin.app_url}/cars")
    expect(page.get_by_test_id("standin-note")).to_be_visible()

    ask(page, "a red SUV under $25,000 with a sunroof, 2018 or newer")
    understood = page.get_by_test_id("understood-item")
    expect(page.get_by_test_id("chat-progress")).to_be_visible()
    expect(understood.filter(has_text="Body: SUV")).to_be_visible()
    # Half way: the body is understood, the features (last in the answer) are not yet, and the
    # page is still the one the question was asked on.
    expect(understood.filter(has_text="Sunroof")).to_have_count(0)
    expect(page).to_have_url(f"{standin.app_url}/cars")
    expect(page.get_by_test_id("chat-status")).to_contain_text("Receiving the answer")
    shoot(page, "understood-half-filled")

    expect(page).to_have_url(RESULTS_WITH_QUERY)
    expect_results(
        page,
        db,
        "body = 'suv' AND color = 'red' AND price <= 25000 AND year >= 2018 AND " + has_feature("sunroof"),
    )
    # The results page keeps what was asked and understood, and shows it as removable chips.
    expect(page.get_by_test_id("chat-input")).to_have_value("a red SUV under $25,000 with a sunroof, 2018 or newer")
    expect(understood).to_have_text(["Body: SUV", "Color: Red", "Year ≥ 2018", "Price ≤ $25,000", "Feature: Sunroof"])
    expect(page.get_by_test_id("chip")).to_have_text(
        ["Body: SUV ×", "Color: Red ×", "Year ≥ 2018 ×", "Price ≤ $25,000 ×", "Feature: Sunroof ×"]
    )
    expect(page.get_by_test_id("ignored-notice")).to_have_count(0)
    shoot(page, "results")
    assert [r.status for r in signs] == [200]
    assert [r.status for r in answers] == [200]
    assert answers[0].headers["content-type"].startswith("text/event-stream")


def test_the_chat_box_appears_only_once_it_works(page: Page, stack: Stack) -> None:
    """Before its submit handler exists, the chat box would submit as a plain form: the page
    reloaded with ?query=... and the question was lost. So it stays hidden until then."""
    held: list[Route] = []
    page.route("**/assets/signgate.js", lambda route: held.append(route))
    page.goto(f"{stack.app_url}/cars")
    wait_until(page, lambda: bool(held), "the page asks for the browser helper")
    expect(page.get_by_test_id("filter-form")).to_be_visible()
    expect(page.get_by_test_id("chat")).to_be_hidden()

    held[0].continue_()
    expect(page.get_by_test_id("chat-input")).to_be_visible()
    page.get_by_test_id("chat-submit").click()  # an empty question: the script answers, not the server
    expect(page.get_by_test_id("chat-error")).to_have_attribute("data-code", "empty_query")
    expect(page).to_have_url(f"{stack.app_url}/cars")
