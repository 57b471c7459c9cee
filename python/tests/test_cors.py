"""The CORS component (signgate.gateway.cors): which origins may read answers, and preflights.

Origins arrive here as the configuration holds them: lower case (``check_origin`` lowers them).
"""

from __future__ import annotations

import pytest

from signgate.errors import OriginNotAllowed
from signgate.gateway.config import KeyConfig
from signgate.gateway.cors import EXPOSE, Cors

APP = "https://app.example"
OTHER = "https://evil.example"
PLAIN = KeyConfig("plain", ("s",))
WIDGET = KeyConfig("widget", ("s",), cors_origins=("https://widget.example",))
OPEN_KEY = KeyConfig("open", ("s",), cors_origins=("*",))


def test_a_listed_origin_is_allowed_as_the_browser_sent_it() -> None:
    cors = Cors([APP])
    assert cors.allowed(APP, PLAIN) == APP
    assert cors.allowed("https://APP.example", PLAIN) == "https://APP.example"  # compared in lower case
    assert cors.allowed(APP, None) == APP  # an unknown key still gets the gateway's origins


@pytest.mark.parametrize(
    "origin",
    [OTHER, "http://app.example", "https://app.example:8443", "https://app.example.evil", "null", ""],
)
def test_other_origins_are_not_allowed(origin: str) -> None:
    assert Cors([APP]).allowed(origin, PLAIN) is None


def test_no_origin_no_cors() -> None:
    cors = Cors(["*"])
    assert cors.allowed(None, PLAIN) is None
    assert cors.headers(None, PLAIN) == []


def test_a_wildcard_allows_any_origin_as_star() -> None:
    assert Cors(["*"]).allowed(OTHER, PLAIN) == "*"
    assert Cors([]).allowed(OTHER, OPEN_KEY) == "*"
    assert Cors([]).allowed(OTHER, PLAIN) is None


def test_a_keys_origins_add_to_the_gateways_for_that_key_only() -> None:
    cors = Cors([APP])
    assert cors.allowed("https://widget.example", WIDGET) == "https://widget.example"
    assert cors.allowed(APP, WIDGET) == APP
    assert cors.allowed("https://widget.example", PLAIN) is None
    assert cors.allowed("https://widget.example", None) is None


def test_an_allowed_origin_gets_the_cors_headers_and_vary() -> None:
    assert Cors([APP]).headers(APP, PLAIN) == [
        (b"access-control-allow-origin", APP.encode()),
        (b"access-control-expose-headers", EXPOSE),
        (b"vary", b"origin"),
    ]


def test_what_a_page_may_read_includes_the_refusal_code_and_request_id() -> None:
    exposed = {name.strip() for name in EXPOSE.decode().split(",")}
    assert {"x-signgate-error", "x-request-id", "retry-after"} <= exposed


def test_a_disallowed_origin_gets_vary_only() -> None:
    """A cache in between must not serve one origin's answer (without CORS) to another."""
    assert Cors([APP]).headers(OTHER, PLAIN) == [(b"vary", b"origin")]


def test_a_preflight_from_an_allowed_origin() -> None:
    headers = Cors([APP]).preflight(APP, PLAIN, "POST", "content-type, x-user-id")
    assert headers == [
        (b"access-control-allow-origin", APP.encode()),
        (b"access-control-allow-methods", b"POST"),
        (b"access-control-max-age", b"600"),
        (b"vary", b"origin"),
        (b"content-length", b"0"),
        (b"access-control-allow-headers", b"content-type, x-user-id"),
    ]


def test_a_preflight_without_requested_headers_allows_none() -> None:
    headers = dict(Cors(["*"]).preflight(OTHER, None, "GET", ""))
    assert headers[b"access-control-allow-origin"] == b"*"
    assert b"access-control-allow-headers" not in headers


@pytest.mark.parametrize("origin", [OTHER, None])
def test_a_preflight_from_another_origin_is_refused(origin: str | None) -> None:
    with pytest.raises(OriginNotAllowed) as refused:
        Cors([APP]).preflight(origin, PLAIN, "POST", "")
    assert (refused.value.status, refused.value.code) == (403, "origin_not_allowed")
    assert "--cors-origin" in refused.value.message  # names the fix


def test_a_keys_origin_may_preflight_for_that_key_only() -> None:
    cors = Cors([])
    assert dict(cors.preflight("https://widget.example", WIDGET, "POST", ""))[b"access-control-allow-origin"] == (
        b"https://widget.example"
    )
    with pytest.raises(OriginNotAllowed):
        cors.preflight("https://widget.example", PLAIN, "POST", "")


def test_origins_configured_in_code_match_whatever_their_case() -> None:
    key = KeyConfig("app", ("s",), cors_origins=("https://Per-Key.Example",))
    cors = Cors(["https://App.Example"])
    assert cors.allowed("https://app.example", None) == "https://app.example"
    assert cors.allowed("https://per-key.example", key) == "https://per-key.example"
