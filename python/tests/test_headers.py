"""Which headers travel (signgate.gateway.headers): from the browser to the upstream, and from the
upstream's answer back. test_bypasses.py sends the same attacks through a real gateway; these
check the step itself, name by name."""

from __future__ import annotations

import pytest

from signgate.gateway.config import KeyConfig
from signgate.gateway.headers import RELAYED, downstream, first, not_upstream, relayable, upstream_headers

KEY = KeyConfig("app", ("s",), headers=(("Authorization", "Bearer sk-key"), ("OpenAI-Organization", "org-1")))
PLAIN = KeyConfig("plain", ("s",))


def sent(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in pairs]


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [name.lower() for name, _ in headers]


def test_ordinary_headers_pass_and_the_upstream_is_asked_for_identity() -> None:
    out = upstream_headers(
        sent(("content-type", "application/json"), ("accept", "text/event-stream"), ("x-app-trace", "t1")), PLAIN, {}
    )
    assert out == [
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("x-app-trace", "t1"),
        ("accept-encoding", "identity"),
    ]


HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]
NEVER_UPSTREAM = [
    # what the gateway decides itself, or what identifies the browser's session
    "host", "cookie", "authorization", "content-length", "origin", "referer", "expect", "accept-encoding",
    "proxy-authorization",
    # who the client is, as only an operator's proxy may say
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "true-client-ip", "cf-connecting-ip", "via",
    "x-client-ip", "x-original-host", "x-host",
    # who the user is, as an authenticating proxy says
    "remote-user", "x-remote-user", "x-webauth-user", "x-auth-request-email",
    # another method or path than the signed one
    "x-http-method-override", "x-method-override", "x-original-url", "x-rewrite-url", "x-middleware-subrequest",
    # families
    "x-signgate-user", "sec-fetch-site", "x-envoy-original-path", "proxy-anything",
]  # fmt: skip


@pytest.mark.parametrize("name", HOP_BY_HOP + NEVER_UPSTREAM)
def test_a_header_that_must_not_travel_upstream_is_dropped(name: str) -> None:
    out = upstream_headers(sent((name, "client-value"), ("x-kept", "1")), PLAIN, {})
    assert ("client-value" in dict(out).values()) is False
    assert "x-kept" in names(out)
    assert not_upstream(name)


def test_headers_that_connection_names_are_dropped_whatever_their_case_and_spacing() -> None:
    out = upstream_headers(
        sent(("connection", "x-hop , X-Other\t"), ("x-hop", "1"), ("x-other", "2"), ("x-kept", "3")), PLAIN, {}
    )
    assert names(out) == ["x-kept", "accept-encoding"]


def test_a_header_name_with_an_underscore_never_travels() -> None:
    """CGI-style servers read '_' as '-': X_Forwarded_For would arrive as X-Forwarded-For."""
    out = upstream_headers(sent(("x_forwarded_for", "1.2.3.4"), ("x_custom", "v"), ("x-custom-2", "v")), PLAIN, {})
    assert names(out) == ["x-custom-2", "accept-encoding"]


def test_bound_headers_go_as_verified_even_when_connection_names_them() -> None:
    bound = {"x-user-id": "42", "content-type": "application/json"}
    out = upstream_headers(
        sent(("connection", "x-user-id"), ("x-user-id", "42"), ("content-type", "application/json")), PLAIN, bound
    )
    assert out == [("x-user-id", "42"), ("content-type", "application/json"), ("accept-encoding", "identity")]


def test_a_bound_extension_or_denied_header_is_never_forwarded() -> None:
    """Bound does not mean forwarded: x-signgate-* is the gateway's, cookie is the browser's."""
    bound = {"x-signgate-nonce": "n" * 22, "cookie": "session=1", "x-user-id": "7"}
    out = upstream_headers(sent(*bound.items()), PLAIN, bound)
    assert names(out) == ["x-user-id", "accept-encoding"]


def test_the_keys_headers_replace_the_clients_whatever_the_case_the_key_gives() -> None:
    """Request header names arrive in lower case, as ASGI servers (uvicorn, hypercorn, daphne)
    deliver them; the key's names are compared in lower case."""
    out = upstream_headers(
        sent(("openai-organization", "org-of-the-client"), ("openai-organization", "again"), ("x-kept", "1")), KEY, {}
    )
    assert out == [
        ("x-kept", "1"),
        ("Authorization", "Bearer sk-key"),
        ("OpenAI-Organization", "org-1"),
        ("accept-encoding", "identity"),
    ]


def test_a_bound_header_the_key_also_sets_goes_once_with_the_keys_value() -> None:
    bound = {"openai-organization": "org-of-the-client"}
    out = upstream_headers(sent(*bound.items()), KEY, bound)
    assert [value for name, value in out if name.lower() == "openai-organization"] == ["org-1"]


def test_a_bound_or_key_header_with_an_underscore_has_no_dashed_spelling_upstream() -> None:
    bound = {"x_user": "7"}
    key = KeyConfig("k", ("s",), headers=(("x_api_key", "k1"),))
    out = upstream_headers(sent(("x-user", "evil"), ("x-api-key", "evil"), ("x_user", "7")), key, bound)
    assert out == [("x_user", "7"), ("x_api_key", "k1"), ("accept-encoding", "identity")]


# -- back to the browser ---------------------------------------------------------------------------

NEVER_DOWNSTREAM = [
    "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Date", "Server", "X-Request-Id", "Set-Cookie",
    "Cache-Control", "Expires", "Vary", "Strict-Transport-Security", "Alt-Svc", "Clear-Site-Data", "NEL",
    "Report-To", "Permissions-Policy", "WWW-Authenticate", "Refresh", "Link", "X-Frame-Options",
    "X-Content-Type-Options", "X-Accel-Redirect", "X-Accel-Expires", "X-Sendfile", "X-LiteSpeed-Location",
    "Surrogate-Control", "CDN-Cache-Control", "X-Signgate-Error", "Access-Control-Allow-Origin",
    "Content-Security-Policy-Report-Only", "Cross-Origin-Opener-Policy", "Sec-WebSocket-Accept",
]  # fmt: skip


@pytest.mark.parametrize("name", NEVER_DOWNSTREAM)
def test_an_answer_header_that_would_speak_for_the_gateway_is_dropped(name: str) -> None:
    kept = downstream([(name.encode(), b"v"), (b"Content-Type", b"text/event-stream")])
    assert kept == [(b"Content-Type", b"text/event-stream")]


def test_the_answers_own_headers_reach_the_browser_as_sent() -> None:
    headers = [
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"12"),
        (b"Retry-After", b"7"),
        (b"X-Ratelimit-Remaining-Requests", b"99"),
        (b"openai-processing-ms", b"12"),
    ]
    assert downstream(headers) == headers


def test_every_relayed_answer_is_neither_cached_sniffed_nor_run_as_a_page() -> None:
    relayed = dict(RELAYED)
    assert relayed[b"cache-control"] == b"no-store"
    assert relayed[b"x-content-type-options"] == b"nosniff"
    assert b"sandbox" in relayed[b"content-security-policy"]
    # The upstream's own versions of these never pass, so the browser sees each once.
    assert downstream([(name, b"x") for name in relayed]) == []


@pytest.mark.parametrize(
    ("status", "ok"), [(101, False), (199, False), (200, True), (304, True), (599, True), (600, False)]
)
def test_only_a_final_status_is_relayable(status: int, ok: bool) -> None:
    assert relayable(status, [(b"content-type", b"text/plain")]) is ok


@pytest.mark.parametrize(
    "header",
    [
        (b"bad name", b"v"),
        (b"bad:name", b"v"),
        (b"bad\x00", b"v"),
        (b"x-ok", b"line\nbreak"),
        (b"x-ok", b"carriage\rreturn"),
        (b"x-ok", b"nul\x00"),
        (b"x-ok", b"del\x7f"),
    ],
)
def test_a_header_the_server_would_refuse_to_write_makes_the_answer_unrelayable(header: tuple[bytes, bytes]) -> None:
    assert not relayable(200, [(b"content-type", b"text/plain"), header])


def test_a_tab_in_a_value_is_fine() -> None:
    assert relayable(200, [(b"x-ok", b"a\tb")])


def test_first_finds_a_header_whatever_its_case() -> None:
    headers = [(b"X-One", b"1"), (b"Content-Type", b"text/event-stream"), (b"content-type", b"text/plain")]
    assert first(headers, b"content-type") == "text/event-stream"
    assert first(headers, b"x-missing") == ""


def test_names_a_server_passed_in_another_case_are_filtered_all_the_same() -> None:
    out = upstream_headers(
        sent(("Cookie", "c=1"), ("X-Forwarded-For", "1.2.3.4"), ("Connection", "X-Kept"), ("X-Kept", "1")), PLAIN, {}
    )
    assert ("cookie", "c=1") not in out and all(name != "x-forwarded-for" for name, _ in out)
    assert all(name != "x-kept" for name, _ in out)  # named in Connection: hop-by-hop
