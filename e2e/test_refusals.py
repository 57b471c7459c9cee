"""What the shopper sees when a signed request cannot be answered: it expired on the way, it
was altered on the way, or the model is too slow and the shopper cancels."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from .conftest import running
from .helpers import (
    REFUSED,
    RESULTS_WITH_QUERY,
    ask,
    expect_results,
    is_gateway_call,
    is_sign_call,
    record_responses,
    refused_as_expired_from,
    wait_until,
)
from .stack import Stack

Shoot = Callable[[Page, str], None]
QUERY = "a blue hatchback under $15,000"
BLUE_HATCHBACKS = "body = 'hatchback' AND color = 'blue' AND price <= 15000"


@pytest.fixture(scope="module")
def stack(catalog_path: Path, log_dir: Path) -> Iterator[Stack]:
    """The demo with signed URLs good for 2 seconds (SIGN_EXPIRES), so that one can expire on the way."""
    env = {"SIGN_EXPIRES": "2"}
    with running(lambda: Stack.demo("test_refusals", catalog_path.parent, env=env, log_dir=log_dir)) as started:
        yield started


@pytest.fixture
def standin(stack: Stack) -> Iterator[Stack]:
    """The stack, its stand-in model back to the demo's timing after the test."""
    defaults = stack.standin_config()
    yield stack
    stack.standin_config(**defaults)


def test_an_expired_request_is_signed_again_once(
    page: Page, stack: Stack, db: sqlite3.Connection, shoot: Shoot
) -> None:
    signs = record_responses(page, is_sign_call)
    answers = record_responses(page, is_gateway_call)
    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if is_gateway_call(route.request) and not held:
            held.append(route)  # let go by the test once it has expired
        else:
            route.continue_()

    page.route(f"{stack.gateway_url}/**", hold_the_first)
    page.goto(f"{stack.app_url}/cars")
    ask(page, QUERY)
    wait_until(page, lambda: bool(held), "the signed request is on its way to the gateway")
    expect(page.get_by_test_id("chat-progress")).to_be_visible()
    # The scenario is a wait: the gateway's clock (this machine's) must pass the URL's expiry.
    late = refused_as_expired_from(held[0].request.url) + 0.2 - time.time()
    assert late < 4, "SIGN_EXPIRES is not the 2 s this module set"
    page.wait_for_timeout(max(0.0, late) * 1000)
    held[0].continue_()

    expect(page).to_have_url(RESULTS_WITH_QUERY)
    expect_results(page, db, BLUE_HATCHBACKS)
    shoot(page, "results-after-signing-again")
    assert [r.status for r in signs] == [200, 200]
    assert [(r.status, r.headers.get("x-signgate-error")) for r in answers] == [(401, "expired"), (200, None)]
    assert answers[0].request.url != answers[1].request.url


@pytest.mark.parametrize(
    "altered",
    [
        pytest.param('"a blue hatchback under $95,000"', id="same-length"),
        # The browser sends the new length, so the bound content-length no longer matches its
        # signature either: a bad signature too, not a body_mismatch (docs/protocol.md).
        pytest.param('"a blue hatchback under $150,000"', id="longer"),
    ],
)
def test_a_body_altered_on_the_way_is_refused(page: Page, stack: Stack, shoot: Shoot, altered: str) -> None:
    code = "bad_signature"
    answers = record_responses(page, is_gateway_call)
    asked_upstream = stack.standin_stats()["requests"]

    def raise_the_budget(route: Route) -> None:
        body = route.request.post_data or ""
        if not is_gateway_call(route.request):
            route.continue_()
            return
        assert f'"{QUERY}"' in body
        route.continue_(post_data=body.replace(f'"{QUERY}"', altered))

    page.route(f"{stack.gateway_url}/**", raise_the_budget)
    page.goto(f"{stack.app_url}/cars")
    ask(page, QUERY)

    error = page.get_by_test_id("chat-error")
    expect(error).to_have_text(REFUSED)
    expect(error).to_have_attribute("data-code", code)
    expect(page.get_by_test_id("chat-progress")).to_be_hidden()
    expect(page.get_by_test_id("chat-submit")).to_be_enabled()
    expect(page.get_by_test_id("chat-input")).to_be_focused()
    expect(page).to_have_url(f"{stack.app_url}/cars")
    shoot(page, "refused")
    assert [(r.status, r.headers.get("x-signgate-error")) for r in answers] == [(401, code)]
    assert stack.standin_stats()["requests"] == asked_upstream  # refused before the model was asked


def test_a_slow_model_shows_progress_and_cancel_closes_its_connection(page: Page, standin: Stack, shoot: Shoot) -> None:
    standin.standin_config(delay=30)
    before = standin.standin_stats()
    page.goto(f"{standin.app_url}/cars")
    ask(page, "a green wagon")

    expect(page.get_by_test_id("chat-progress")).to_be_visible()
    expect(page.get_by_test_id("chat")).to_have_attribute("aria-busy", "true")
    expect(page.get_by_test_id("chat-submit")).to_be_disabled()
    expect(page.get_by_test_id("chat-cancel")).to_be_visible()
    wait_until(page, lambda: standin.standin_stats()["streams_started"] > before["streams_started"], "the model starts")
    assert standin.gateway_metric("signgate_streams_in_flight") == 1
    expect(page.get_by_test_id("chat-status")).to_have_text("Waiting for the model…")
    shoot(page, "waiting-for-the-model")

    page.get_by_test_id("chat-cancel").click()
    expect(page.get_by_test_id("chat-status")).to_have_text("Search cancelled.")
    expect(page.get_by_test_id("chat-progress")).to_be_hidden()
    expect(page.get_by_test_id("chat-cancel")).to_be_hidden()
    expect(page.get_by_test_id("chat-submit")).to_be_enabled()
    expect(page.get_by_test_id("chat")).to_have_attribute("aria-busy", "false")
    # The gateway let go of the model's connection at once: the stand-in saw it close.
    wait_until(
        page,
        lambda: standin.standin_stats()["streams_disconnected"] == before["streams_disconnected"] + 1,
        "the stand-in sees the connection close",
    )
    assert standin.standin_stats()["streams_completed"] == before["streams_completed"]
    wait_until(page, lambda: standin.gateway_metric("signgate_streams_in_flight") == 0, "the gateway holds no stream")
    expect(page).to_have_url(f"{standin.app_url}/cars")
    shoot(page, "cancelled")
