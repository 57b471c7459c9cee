"""The AI search as a shopper uses it, and the plain form beside it, on the demo as it ships."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, Route, expect

from .conftest import Recorders
from .helpers import (
    RESULTS_WITH_QUERY,
    answer_with,
    ask,
    chip,
    expect_results,
    has_feature,
    is_gateway_call,
    is_sign_call,
    matching_ids,
    record_responses,
    tab_to,
    wait_until,
    watch_struck_through,
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
    struck = watch_struck_through(page)

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
    # A value half received ("Sunr") is not marked as one the search will ignore: every
    # value here is good, so none was ever struck through.
    assert struck == []
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


NEWEST_FIRST = "year DESC, price ASC, id ASC"


def test_remove_a_chip_edit_the_understood_filters_and_turn_pages(
    page: Page, stack: Stack, db: sqlite3.Connection, shoot: Shoot
) -> None:
    page.goto(f"{stack.app_url}/cars")
    ask(page, "a white sedan under $20,000, newest first")
    expect(page).to_have_url(f"{stack.app_url}/cars?body=sedan&color=white&price_max=20000&sort=year_desc")
    expect_results(page, db, "body = 'sedan' AND color = 'white' AND price <= 20000", NEWEST_FIRST)

    chip(page, "price_max", "20000").click()
    expect(page).to_have_url(f"{stack.app_url}/cars?body=sedan&color=white&sort=year_desc")
    expect_results(page, db, "body = 'sedan' AND color = 'white'", NEWEST_FIRST)
    expect(chip(page, "price_max", "20000")).to_have_count(0)
    shoot(page, "chip-removed")

    # The form holds what was understood: change one field and search again.
    body = page.get_by_test_id("filter-body")
    expect(body).to_have_value("sedan")
    expect(page.get_by_test_id("filter-color")).to_have_value("white")
    expect(page.get_by_test_id("filter-sort")).to_have_value("year_desc")
    body.select_option("suv")
    page.get_by_test_id("filter-submit").click()
    # Only the fields that are set go into the URL (the script drops the empty ones).
    expect(page).to_have_url(f"{stack.app_url}/cars?body=suv&color=white&sort=year_desc")
    white_suvs = "body = 'suv' AND color = 'white'"
    expect_results(page, db, white_suvs, NEWEST_FIRST)
    pages = -(-len(matching_ids(db, white_suvs)) // 24)
    assert pages >= 3
    expect(page.get_by_test_id("page-current")).to_have_text(f"Page 1 of {pages}")
    expect(page.get_by_test_id("page-prev")).to_have_count(0)

    page.get_by_test_id("page-next").click()
    expect(page.get_by_test_id("page-current")).to_have_text(f"Page 2 of {pages}")
    expect_results(page, db, white_suvs, NEWEST_FIRST, page_number=2)
    shoot(page, "page-2")
    page.get_by_test_id("page-prev").click()
    expect(page.get_by_test_id("page-current")).to_have_text(f"Page 1 of {pages}")
    expect_results(page, db, white_suvs, NEWEST_FIRST)


def test_without_javascript_the_plain_form_searches(
    new_page: Callable[..., Page], stack: Stack, db: sqlite3.Connection, shoot: Shoot
) -> None:
    page = new_page(java_script_enabled=False)
    page.goto(f"{stack.app_url}/cars")
    # (Not checked: the <noscript> note. Chromium with script execution turned off through
    # DevTools still parses <noscript> as if scripts ran, so it never shows here.)
    expect(page.get_by_test_id("chat")).to_be_hidden()

    page.get_by_test_id("filter-make").select_option("Toyota")
    page.get_by_test_id("filter-price_max").fill("15000")
    page.get_by_test_id("filter-feature-backup_camera").check()
    page.get_by_test_id("filter-sort").select_option("price_asc")
    page.get_by_test_id("filter-submit").click()
    expect(page).to_have_url(
        re.compile(r"/cars\?make=Toyota&.*price_max=15000&.*features=backup_camera&sort=price_asc")
    )
    cheapest = "price ASC, id ASC"
    expect_results(page, db, "make = 'Toyota' AND price <= 15000 AND " + has_feature("backup_camera"), cheapest)
    shoot(page, "form-results")

    chip(page, "make", "Toyota").click()
    expect(chip(page, "make", "Toyota")).to_have_count(0)
    expect_results(page, db, "price <= 15000 AND " + has_feature("backup_camera"), cheapest)
    page.get_by_test_id("page-next").click()
    expect(page.get_by_test_id("page-current")).to_contain_text("Page 2 of")
    expect_results(page, db, "price <= 15000 AND " + has_feature("backup_camera"), cheapest, page_number=2)


def test_keyboard_only(page: Page, standin: Stack, db: sqlite3.Connection, shoot: Shoot) -> None:
    page.goto(f"{standin.app_url}/cars")
    chat_input = page.get_by_test_id("chat-input")
    expect(chat_input).to_be_visible()
    # The first stop is the skip link to the results.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to results")).to_be_focused()
    tab_to(page, chat_input)
    page.keyboard.type("a black pickup with a tow package")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{standin.app_url}/cars?body=pickup&color=black&features=tow_package")
    expect_results(page, db, "body = 'pickup' AND color = 'black' AND " + has_feature("tow_package"))

    # The results of a search take the focus, at their heading; from there Tab goes through the
    # chips, then the pages.
    expect(page.get_by_test_id("results-title")).to_be_focused()
    chips = page.get_by_test_id("chip")
    expect(chips).to_have_count(3)
    for index in range(3):
        page.keyboard.press("Tab")
        expect(chips.nth(index)).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("chips-clear")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("page-next")).to_be_focused()
    shoot(page, "focus-on-next-page")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(chips.nth(2)).to_be_focused()
    page.keyboard.press("Enter")  # removes the tow-package chip
    expect(page).to_have_url(f"{standin.app_url}/cars?body=pickup&color=black")
    expect_results(page, db, "body = 'pickup' AND color = 'black'")

    # Escape cancels a search that is waiting for a slow model.
    standin.standin_config(delay=30)
    tab_to(page, chat_input)
    page.keyboard.press("Control+A")
    page.keyboard.type("a green wagon")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("chat-progress")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("chat-status")).to_have_text("Search cancelled.")
    expect(page.get_by_test_id("chat-progress")).to_be_hidden()
    expect(chat_input).to_be_focused()
    expect(page).to_have_url(f"{standin.app_url}/cars?body=pickup&color=black")


def test_a_value_the_model_made_up_is_marked_and_ignored(
    page: Page, stack: Stack, db: sqlite3.Connection, shoot: Shoot, recorders: Recorders
) -> None:
    """The stand-in only answers with options, so here the gateway's real answer is swapped
    for one with a colour the catalog does not have, as a real model might give."""
    answer = '{"filters": {"body": "suv", "color": "teal"}}'
    answer_with(page, stack.gateway_url, recorders.of(page), answer, "gpt-4o-mini-2024-07-18")
    page.goto(f"{stack.app_url}/cars")
    ask(page, "a teal SUV")
    expect(page).to_have_url(f"{stack.app_url}/cars?body=suv&color=teal")
    expect_results(page, db, "body = 'suv'")
    expect(page.get_by_test_id("ignored-notice")).to_be_visible()
    ignored = page.get_by_test_id("ignored-item")
    expect(ignored).to_have_count(1)
    expect(ignored).to_have_attribute("data-param", "color")
    expect(ignored).to_have_attribute("data-reason", "not_an_option")
    understood = page.get_by_test_id("understood-item")
    expect(understood).to_have_text(["Body: SUV", "Color: teal"])
    expect(understood.nth(0)).not_to_have_class("dropped")
    expect(understood.nth(1)).to_have_class("dropped")
    expect(page.get_by_test_id("chip")).to_have_text(["Body: SUV ×"])
    shoot(page, "made-up-value-ignored")
