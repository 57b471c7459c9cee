"""The gateway is down: the chat box says so plainly, and the plain filter form still works.

The app runs alone here (``flask run``), configured as the demo configures it but for a gateway
at a port that is bound and never listened on, so the browser's connection is refused. (The
launcher stops everything when one of its children dies, so it cannot leave the app up
without its gateway.)
"""

from __future__ import annotations

import signal
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import running
from .helpers import UNAVAILABLE, ask, expect_results, is_gateway_call, is_sign_call, record_responses
from .stack import Stack

Shoot = Callable[[Page, str], None]


@pytest.fixture(scope="module")
def stack(catalog_path: Path, log_dir: Path) -> Iterator[Stack]:
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # never listen(): a connection to it is refused
        port = dead.getsockname()[1]

        def make() -> Stack:
            return Stack.app_only("test_gateway_down", catalog_path.parent, gateway_port=port, log_dir=log_dir)

        # flask run has no SIGTERM handler of its own: it ends by the signal.
        with running(make, expected_exit=(0, -signal.SIGTERM)) as started:
            yield started


def test_the_chat_box_says_the_gateway_is_down_and_the_form_still_works(
    page: Page, stack: Stack, db: sqlite3.Connection, shoot: Shoot
) -> None:
    signs = record_responses(page, is_sign_call)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url) if is_gateway_call(request) else None)
    page.goto(f"{stack.app_url}/cars")
    ask(page, "a blue hatchback under $15,000")

    error = page.get_by_test_id("chat-error")
    expect(error).to_have_text(UNAVAILABLE)
    expect(error).to_have_attribute("data-code", "network_error")
    expect(page.get_by_test_id("chat-progress")).to_be_hidden()
    expect(page).to_have_url(f"{stack.app_url}/cars")
    shoot(page, "gateway-down")
    assert [r.status for r in signs] == [200]  # the app signed; only the gateway was missing
    assert len(failed) == 1 and failed[0].startswith(stack.gateway_url)

    page.get_by_test_id("filter-body").select_option("hatchback")
    page.get_by_test_id("filter-color").select_option("blue")
    page.get_by_test_id("filter-price_max").fill("15000")
    page.get_by_test_id("filter-submit").click()
    expect(page).to_have_url(f"{stack.app_url}/cars?body=hatchback&color=blue&price_max=15000")
    expect_results(page, db, "body = 'hatchback' AND color = 'blue' AND price <= 15000")
    shoot(page, "form-results")
