"""Actions and checks that several end-to-end tests repeat."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from calendar import timegm
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Locator, Page, Request, Response, Route, expect

from .traffic import Traffic

#: The text of the chat box's error for a request the gateway refused as altered.
REFUSED = "The gateway refused the request because it no longer matches what the app signed. Try again."
UNAVAILABLE = "The AI search is unavailable; use the filters below."
#: A search on the results page, whatever its query string.
RESULTS_WITH_QUERY = re.compile(r"/cars\?.+")


def ask(page: Page, query: str) -> None:
    """Type ``query`` into the chat box and press its Search button."""
    page.get_by_test_id("chat-input").fill(query)
    page.get_by_test_id("chat-submit").click()


def is_sign_call(request: Request) -> bool:
    """The page asking the app to sign a search."""
    return request.method == "POST" and urlsplit(request.url).path == "/api/search/sign"


def is_gateway_call(request: Request) -> bool:
    """The page sending a signed request (a CORS preflight is not one)."""
    return request.method == "POST" and "X-Sw-Signature=" in request.url


def record_responses(page: Page, which: Callable[[Request], bool]) -> list[Response]:
    """A list that fills with the page's responses to the requests ``which`` picks, as they come."""
    seen: list[Response] = []
    page.on("response", lambda response: seen.append(response) if which(response.request) else None)
    return seen


def matching_ids(db: sqlite3.Connection, where: str, order: str = "id", limit: int = -1, offset: int = 0) -> list[int]:
    """The ids of the cars that satisfy ``where``, by SQL written in the test, not the app's."""
    sql = f"SELECT id FROM cars WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
    return [row[0] for row in db.execute(sql, (limit, offset))]


def has_feature(name: str) -> str:
    """A WHERE clause for cars with the feature ``name``."""
    assert re.fullmatch(r"[a-z_]+", name)
    return f"id IN (SELECT car_id FROM car_features WHERE feature = '{name}')"


def shown_ids(page: Page) -> list[int]:
    """The ids of the cars on the results page, in the order shown."""
    ids: list[str] = page.get_by_test_id("result-row").evaluate_all("rows => rows.map(r => r.dataset.carId)")
    return [int(i) for i in ids]


def expect_results(page: Page, db: sqlite3.Connection, where: str, order: str = "id", page_number: int = 1) -> None:
    """The page lists exactly the cars that ``where`` selects (this page of them, in ``order``)
    and says how many match in all."""
    everything = matching_ids(db, where, order)
    count = page.get_by_test_id("result-count")
    expect(count).to_have_attribute("data-count", str(len(everything)))
    expect(count).to_contain_text(f"{len(everything):,} car")
    assert shown_ids(page) == everything[(page_number - 1) * 24 : page_number * 24]


def chip(page: Page, param: str, value: str) -> Locator:
    """The active-filter chip for ``param=value``."""
    return page.locator(f'[data-testid="chip"][data-param="{param}"][data-value="{value}"]')


def watch_struck_through(page: Page) -> list[str]:
    """A list that fills with the text of every Understood item the page marks as one the search
    will ignore (class ``dropped``), from now until the page is left."""
    struck: list[str] = []
    page.expose_function("noteStruck", lambda text: struck.append(text))
    page.evaluate(
        """() => new MutationObserver(() => {
            for (const li of document.querySelectorAll('[data-testid="understood-item"].dropped')) {
                window.noteStruck(li.textContent);
            }
        }).observe(document.getElementById('understood-list'), {childList: true, subtree: true, attributes: true})"""
    )
    return struck


def tab_to(page: Page, target: Locator, most: int = 10) -> int:
    """Press Tab until ``target`` has the focus (at most ``most`` times); return how many presses."""
    for presses in range(1, most + 1):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return presses
    raise AssertionError(f"{target} did not get the focus in {most} presses of Tab")


def wait_until(page: Page, check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` (something outside the page, such as a server's counters) until it holds.

    Waits with the page's clock, so the page's events keep being handled meanwhile."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
        page.wait_for_timeout(50)


def refused_as_expired_from(url: str) -> float:
    """The first instant (Unix time) at which the gateway refuses the signed ``url`` as expired.

    It accepts a URL until ``X-Sw-Date + X-Sw-Expires``, in whole seconds of its clock, so
    the first refusal comes one second after that."""
    query = parse_qs(urlsplit(url).query)
    signed_at = timegm(time.strptime(query["X-Sw-Date"][0], "%Y%m%dT%H%M%SZ"))
    return signed_at + int(query["X-Sw-Expires"][0]) + 1


def answer_stream(content: str, model: str = "gpt-4o-mini-2024-07-18") -> str:
    """An OpenAI-style streamed chat completion from ``model`` whose answer is ``content``, in one piece."""
    base = {"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 0, "model": model}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"


def answer_with(page: Page, gateway_url: str, traffic: Traffic, content: str, model: str) -> None:
    """Answer the page's signed requests with ``content`` from ``model``, as a real model might
    answer where the stand-in would not. Each request still goes through the real gateway (for
    its status and CORS headers); only the body is swapped, and handed to ``traffic``."""

    def swap(route: Route) -> None:
        if not is_gateway_call(route.request):
            route.continue_()
            return
        real = route.fetch()
        body = answer_stream(content, model)
        traffic.fulfilled(route.request.url, body.encode())
        route.fulfill(response=real, body=body)

    page.route(f"{gateway_url}/**", swap)
