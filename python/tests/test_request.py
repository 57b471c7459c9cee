"""The head step (signgate.gateway.request): the request head read once from an ASGI scope, and
the checks that need nothing else (size, number of fields, upgrades, bound headers sent twice)."""

from __future__ import annotations

from typing import Any

import pytest

from signgate import Signer, parse_query
from signgate.errors import HeadersTooLarge, MalformedRequest, UpgradeNotSupported
from signgate.gateway.request import MAX_HEADER_FIELDS, read_head


def scope(
    headers: list[tuple[bytes, bytes]], method: str = "GET", path: str = "/", query: bytes = b""
) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers}


def test_the_head_maps_each_name_to_its_value_and_counts_names_and_values() -> None:
    head = read_head(
        scope([(b"host", b"gw"), (b"content-type", b"application/json")], "POST", "/v1", b"X-Sw-Date=1&a=%2F")
    )
    assert (head.method, head.path, head.query) == ("POST", "/v1", "X-Sw-Date=1&a=%2F")
    assert head.headers == {"host": "gw", "content-type": "application/json"}
    assert head.repeated is None
    assert head.size == len("host") + len("gw") + len("content-type") + len("application/json")


def test_a_repeated_header_is_joined_as_a_list_and_named_once_per_repeat() -> None:
    head = read_head(scope([(b"accept", b"a"), (b"x-one", b"1"), (b"accept", b"b"), (b"accept", b"c")]))
    assert head.headers["accept"] == "a, b, c"
    assert head.headers["x-one"] == "1"
    assert head.repeated == ["accept", "accept"]


def test_bytes_outside_ascii_survive_as_latin_1() -> None:
    head = read_head(scope([(b"x-name", "caf\u00e9".encode("latin-1"))], query="q=\u00ff".encode("latin-1")))
    assert head.headers["x-name"] == "caf\u00e9"
    assert head.query == "q=\u00ff"


def test_an_empty_path_reads_as_the_root() -> None:
    assert read_head(scope([], path="")).path == "/"


def test_the_field_cap_counts_fields_not_bytes() -> None:
    at_cap = [(b"x-%d" % i, b"") for i in range(MAX_HEADER_FIELDS)]
    assert len(read_head(scope(at_cap)).headers) == MAX_HEADER_FIELDS
    with pytest.raises(HeadersTooLarge) as refused:
        read_head(scope([*at_cap, (b"x-one-more", b"")]))
    assert (refused.value.status, refused.value.code) == (431, "headers_too_large")
    assert str(MAX_HEADER_FIELDS) in refused.value.message


def test_repeats_of_one_name_count_against_the_field_cap() -> None:
    with pytest.raises(HeadersTooLarge):
        read_head(scope([(b"a", b"")] * (MAX_HEADER_FIELDS + 1)))


def test_the_byte_cap_allows_exactly_the_limit() -> None:
    head = read_head(scope([(b"x-big", b"v" * 95)]))
    assert head.size == 100
    head.check(100)
    with pytest.raises(HeadersTooLarge) as refused:
        head.check(99)
    assert "99 bytes" in refused.value.message


def test_a_protocol_upgrade_is_refused_and_the_connection_closed() -> None:
    head = read_head(scope([(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]))
    with pytest.raises(UpgradeNotSupported) as refused:
        head.check(16 * 1024)
    assert (refused.value.status, refused.value.code, refused.value.close) == (400, "upgrade_not_supported", True)
    assert "HTTP/1.1" in refused.value.message


def test_connection_upgrade_without_an_upgrade_header_is_no_upgrade() -> None:
    read_head(scope([(b"connection", b"upgrade")])).check(16 * 1024)


def test_origin_and_preflight() -> None:
    preflight = read_head(
        scope([(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST")], "OPTIONS")
    )
    assert preflight.origin == "https://app.example"
    assert preflight.is_preflight
    assert not read_head(scope([(b"origin", b"https://app.example")], "OPTIONS")).is_preflight
    assert not read_head(scope([(b"access-control-request-method", b"POST")], "POST")).is_preflight
    assert read_head(scope([])).origin is None


def signed_params(headers: dict[str, str]) -> Any:
    request = Signer("app", "secret", "https://gw.example").sign("POST", "https://api.example/v1/chat", headers=headers)
    return parse_query(request.url.split("?", 1)[1])


def test_a_signed_header_sent_twice_is_refused_naming_it() -> None:
    params = signed_params({"x-user-id": "42"})
    head = read_head(scope([(b"x-user-id", b"42"), (b"x-user-id", b"43")], "POST"))
    with pytest.raises(MalformedRequest) as refused:
        head.check_signed_headers_once(params)
    assert (refused.value.status, refused.value.code, refused.value.param) == (400, "malformed", "x-user-id")
    assert "43" not in refused.value.message  # the message names the header, never its values


def test_an_unsigned_header_may_be_repeated_and_a_signed_one_sent_once_passes() -> None:
    params = signed_params({"x-user-id": "42"})
    read_head(scope([(b"x-user-id", b"42"), (b"accept", b"a"), (b"accept", b"b")])).check_signed_headers_once(params)
    read_head(scope([(b"x-user-id", b"42")])).check_signed_headers_once(params)


def test_header_names_are_read_lower_cased_whatever_the_server_passes() -> None:
    # ASGI servers lower-case names; one that kept the client's case must not get a signed header
    # sent twice (X-User-Id and x-user-id) or an upgrade past the checks.
    scope = {
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(b"X-User-Id", b"a"), (b"x-user-id", b"b"), (b"Upgrade", b"websocket")],
    }
    head = read_head(scope)
    assert head.headers["x-user-id"] == "a, b" and head.repeated == ["x-user-id"]
    with pytest.raises(UpgradeNotSupported):
        head.check(10_000)
