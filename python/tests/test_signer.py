from __future__ import annotations

import datetime as dt
import json

import pytest
import sw1_reference as ref
from conftest import FakeClock

from signgate import Signer, SigningError, Verifier, parse_query, sign_url
from signgate.signer import DEFAULT_EXPIRES_IN

GATEWAY = "https://gw.example.com"
UPSTREAM = "https://api.openai.com/v1/chat/completions"


def signer(clock: FakeClock, **kw: object) -> Signer:
    return Signer("app", "s3cret", GATEWAY, clock=clock, **kw)  # type: ignore[arg-type]


def test_json_binds_exact_compact_bytes_and_content_type(clock: FakeClock) -> None:
    req = signer(clock).sign("POST", UPSTREAM, json={"model": "m", "msg": "héllo"})
    assert req.body == '{"model":"m","msg":"héllo"}'
    assert req.headers == {"content-type": "application/json"}
    params = ref.query_params(req.url)
    assert params["X-Sw-SignedHeaders"] == "content-type;content-length"
    assert params["X-Sw-Body"] == "true"
    assert req.to_dict() == {"url": req.url, "method": "POST", "headers": req.headers, "body": req.body}
    json.dumps(req.to_dict())  # JSON-ready


def test_caller_content_type_wins_over_json_default(clock: FakeClock) -> None:
    req = signer(clock).sign("POST", UPSTREAM, headers={"Content-Type": "application/json; charset=utf-8"}, json=[])
    assert req.headers == {"content-type": "application/json; charset=utf-8"}


def test_bytes_body_and_str_body_sign_alike(clock: FakeClock) -> None:
    s = signer(clock)
    assert s.sign("POST", UPSTREAM, body="ü").url == s.sign("POST", UPSTREAM, body="ü".encode()).url


def test_empty_body_is_bound(clock: FakeClock) -> None:
    req = signer(clock).sign("POST", UPSTREAM, body="")
    params = ref.query_params(req.url)
    assert params["X-Sw-Body"] == "true"
    assert params["X-Sw-SignedHeaders"] == "content-length"


def test_clock_is_injected_and_expiry_reported(clock: FakeClock) -> None:
    req = signer(clock, expires_in=30).sign("GET", UPSTREAM)
    assert ref.query_params(req.url)["X-Sw-Date"] == "20231114T221320Z"
    assert req.expires_at == 1_700_000_030
    assert ref.query_params(signer(clock).sign("GET", UPSTREAM, expires_in=5).url)["X-Sw-Expires"] == "5"


def test_gateway_path_prefix_is_kept_but_not_signed(clock: FakeClock) -> None:
    req = Signer("app", "s3cret", "https://example.com/llm/", clock=clock).sign("GET", UPSTREAM)
    assert req.url.startswith("https://example.com/llm/?X-Sw-Algorithm=")
    verifier = Verifier({"app": ["s3cret"]}, clock=clock)
    assert verifier.verify_request("GET", req.url.split("?", 1)[1], {}, path="/llm/").key_id == "app"


def test_caller_content_length_is_bound_once(clock: FakeClock) -> None:
    req = signer(clock).sign("POST", UPSTREAM, headers={"Content-Length": "2"}, body="ab")
    assert ref.query_params(req.url)["X-Sw-SignedHeaders"] == "content-length"
    with pytest.raises(SigningError, match="does not match the body's 2 bytes"):
        signer(clock).sign("POST", UPSTREAM, headers={"Content-Length": "3"}, body="ab")


def test_repr_never_shows_the_secret(clock: FakeClock) -> None:
    assert "s3cret" not in repr(signer(clock))


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"key_id": ""}, "key_id", "non-empty"),
        ({"key_id": "a/b"}, "key_id", "contains '/'"),
        ({"secret": ""}, "secret", "non-empty"),
        ({"gateway_url": "gw.example.com"}, "gateway_url", "absolute"),
        ({"gateway_url": "https://gw/?x=1"}, "gateway_url", "query"),
        ({"expires_in": 0}, "expires_in", "1..4294967295"),
        ({"expires_in": 4_294_967_296}, "expires_in", "1..4294967295"),
        ({"expires_in": True}, "expires_in", "1..4294967295"),
    ],
)
def test_bad_constructor_input(kwargs: dict[str, object], field: str, fragment: str) -> None:
    args: dict[str, object] = {"key_id": "app", "secret": "s3cret", "gateway_url": GATEWAY} | kwargs
    with pytest.raises(SigningError, match=fragment) as info:
        Signer(**args)  # type: ignore[arg-type]
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("call", "field", "fragment"),
    [
        ({"method": "PO ST"}, "method", "method token"),
        ({"upstream_url": "/v1/chat"}, "upstream_url", "absolute http"),
        ({"upstream_url": "ftp://x/"}, "upstream_url", "absolute http"),
        ({"upstream_url": ""}, "upstream_url", "non-empty"),
        ({"headers": {"Bad Name": "v"}}, "headers", "not an HTTP token"),
        ({"headers": {"X-A": "v\r\nX-Evil: 1"}}, "headers", "at index 1: header values must be visible ASCII"),
        ({"headers": {"X-A": "v\x0b"}}, "headers", r"holds '\\x0b' at index 1"),
        ({"headers": {"X-A": "caf\u00e9"}}, "headers", "visible ASCII, spaces and tabs"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "headers", "twice"),
        ({"headers": {"Content-Length": "1"}}, "headers", "no body"),
        ({"body": b"\xff"}, "body", "UTF-8"),
        ({"body": 5}, "body", "str or bytes"),
        ({"body": "x", "json": {}}, "json", "not both"),
        ({"json": {"x": float("nan")}}, "json", "cannot be serialised"),
        ({"expires_in": -1}, "expires_in", "1..4294967295"),
    ],
)
def test_bad_sign_input(clock: FakeClock, call: dict[str, object], field: str, fragment: str) -> None:
    args: dict[str, object] = {"method": "POST", "upstream_url": UPSTREAM} | call
    method, upstream = args.pop("method"), args.pop("upstream_url")
    with pytest.raises(SigningError, match=fragment) as info:
        signer(clock).sign(method, upstream, **args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_sign_url_converts_aware_datetimes_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    aware = sign_url(
        "id", "s", GATEWAY, UPSTREAM, 60, "GET", datetime_override=dt.datetime(2024, 1, 1, 14, tzinfo=paris)
    )
    naive = sign_url("id", "s", GATEWAY, UPSTREAM, 60, "GET", datetime_override=dt.datetime(2024, 1, 1, 12))
    assert aware == naive
    assert ref.query_params(aware)["X-Sw-Date"] == "20240101T120000Z"


def test_sign_url_does_not_mutate_headers() -> None:
    headers = {"X-Foo": "1"}
    sign_url("id", "s", GATEWAY, UPSTREAM, 60, "POST", headers, body="{}")
    assert headers == {"X-Foo": "1"}


def test_sign_url_uses_current_time_by_default() -> None:
    url = sign_url("id", "s", GATEWAY, UPSTREAM, 60, "GET")
    params = parse_query(url.split("?", 1)[1])
    assert abs(params.signed_at - dt.datetime.now(dt.UTC).timestamp()) < 5


# -- what the signer remembers between calls (for speed) never crosses a second, a day or a key ----


def test_one_signer_across_midnight_signs_each_day_with_its_own_key() -> None:
    clock = FakeClock(1_700_006_399)  # 2023-11-14T23:59:59Z
    s = signer(clock)
    before = s.sign("GET", UPSTREAM)
    clock.now += 1
    after = s.sign("GET", UPSTREAM)
    assert ref.query_params(before.url)["X-Sw-Credential"] == "app/20231114"
    assert ref.query_params(after.url)["X-Sw-Credential"] == "app/20231115"
    for req, at in ((before, 1_700_006_399), (after, 1_700_006_400)):
        params = ref.query_params(req.url)
        expected = ref.sign(
            "app", "s3cret", GATEWAY, UPSTREAM, DEFAULT_EXPIRES_IN, "GET", [], None, params["X-Sw-Date"]
        )
        assert req.url == expected.url
        assert Verifier({"app": ["s3cret"]}, clock=lambda at=at: at).verify_request("GET", req.url.split("?")[1], {})


def test_sign_url_keeps_keys_and_gateways_apart() -> None:
    """sign_url reuses one Signer per key and gateway: each URL must still be its own key's."""
    calls = [("a", "s1", GATEWAY), ("a", "s2", GATEWAY), ("b", "s1", GATEWAY), ("a", "s1", "https://other.example")]
    for key_id, secret, host in calls * 2:
        url = sign_url(key_id, secret, host, UPSTREAM, 60, "GET")
        date = ref.query_params(url)["X-Sw-Date"]
        assert url == ref.sign(key_id, secret, host, UPSTREAM, 60, "GET", [], None, date).url
    with pytest.raises(SigningError, match="contains '/'"):
        sign_url("a/b", "s1", GATEWAY, UPSTREAM, 60, "GET")
    with pytest.raises(SigningError) as info:
        sign_url("a", "s1", GATEWAY, UPSTREAM, 0, "GET")
    assert info.value.field == "expires_in"


def test_long_upstream_urls_sign_like_short_ones(clock: FakeClock) -> None:
    """Upstream URLs past the cached length take the uncached path: same checks, same URL."""
    for upstream in (UPSTREAM + "?q=" + "a" * 3000, UPSTREAM + "?q=" + "é" * 1500):
        req = signer(clock).sign("GET", upstream)
        normalized = ref.query_params(req.url)["X-Sw-Proxy"]
        expected = ref.sign(
            "app", "s3cret", GATEWAY, normalized, DEFAULT_EXPIRES_IN, "GET", [], None, "20231114T221320Z"
        )
        assert req.url == expected.url
    with pytest.raises(SigningError) as info:
        signer(clock).sign("GET", "/relative?q=" + "a" * 3000)
    assert info.value.field == "upstream_url"
