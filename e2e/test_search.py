"""The AI search as a shopper uses it, and the plain form beside it, on the demo as it ships."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, Route, expect

from .helpers import wait_until
from .stack import Stack

Shoot = Callable[[Page, str], None]


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
