from __future__ import annotations

import pytest
from conftest import FakeClock

from signgate import (
    BadSignature,
    BodyMismatch,
    Expired,
    ExpiryTooLong,
    MalformedRequest,
    MissingHeader,
    NotYetValid,
    SignedRequest,
    Signer,
    UnknownKey,
    UnsupportedAlgorithm,
    VerificationError,
    Verifier,
    scheme,
)

UPSTREAM = "https://api.example.com/v1/chat"


def _signed(clock: FakeClock, **kw: object) -> SignedRequest:
    return Signer("app", "s3cret", "http://gw", clock=clock).sign("POST", UPSTREAM, **kw)  # type: ignore[arg-type]


def _verify(verifier: Verifier, req: SignedRequest, **override: object) -> object:
    headers = dict(req.headers)
    body = req.body.encode() if req.body is not None else None
    if body is not None:
        headers["content-length"] = str(len(body))
    args: dict[str, object] = {
        "method": req.method,
        "raw_query": req.url.split("?", 1)[1],
        "headers": headers,
        "body": body,
    } | override
    return verifier.verify_request(**args)  # type: ignore[arg-type]


def test_valid_request_reports_what_was_verified(clock: FakeClock) -> None:
    req = _signed(clock, headers={"X-User": " u1 "}, json={"q": "ü"}, expires_in=30)
    verified = _verify(Verifier({"app": ["s3cret"]}, clock=clock), req)
    assert verified.key_id == "app"  # type: ignore[attr-defined]
    assert verified.upstream_url == UPSTREAM  # type: ignore[attr-defined]
    assert verified.expires_at == 1_700_000_030  # type: ignore[attr-defined]
    assert verified.bound_headers == {  # type: ignore[attr-defined]
        "x-user": "u1",
        "content-type": "application/json",
        "content-length": "10",
    }
    assert verified.body == '{"q":"ü"}'  # type: ignore[attr-defined]


def test_rotated_secrets_all_verify(clock: FakeClock) -> None:
    verifier = Verifier({"app": ["new-secret", "s3cret"]}, clock=clock)
    assert _verify(verifier, _signed(clock))


def test_callable_key_lookup(clock: FakeClock) -> None:
    assert _verify(Verifier(lambda key: ["s3cret"] if key == "app" else None, clock=clock), _signed(clock))
    with pytest.raises(UnknownKey):
        _verify(Verifier(lambda key: None, clock=clock), _signed(clock))


def _replace(req: SignedRequest, name: str, value: str) -> str:
    query = req.url.split("?", 1)[1]
    parts = [p if not p.startswith(name + "=") else f"{name}={value}" for p in query.split("&")]
    return "&".join(parts)


@pytest.mark.parametrize(
    ("param", "value", "fragment"),
    [
        ("X-Sw-Date", "2023-11-14", "must look like"),
        ("X-Sw-Date", "20231399T000000Z", "not a valid UTC date"),
        ("X-Sw-Credential", "app", "<key id>/<YYYYMMDD"),
        ("X-Sw-Credential", "app%2F20200101", "<key id>/<YYYYMMDD"),
        ("X-Sw-Expires", "0", "1..4294967295"),
        ("X-Sw-Expires", "4294967296", "1..4294967295"),
        ("X-Sw-Expires", "-5", "1..4294967295"),
        ("X-Sw-Body", "yes", "'true' or 'false'"),
        ("X-Sw-SignedHeaders", "X-Upper", "lower-case"),
        ("X-Sw-SignedHeaders", "a%3Ba", "more than once"),
        ("X-Sw-Signature", "abc", "64 hexadecimal"),
        # 64 characters, not hexadecimal: hmac.compare_digest raised TypeError on the non-ASCII one
        ("X-Sw-Signature", "%C3%A9" * 64, "64 hexadecimal"),
        ("X-Sw-Signature", "g" * 64, "64 hexadecimal"),
        ("X-Sw-Proxy", "%FF", "not valid UTF-8"),
    ],
)
def test_malformed_parameters_are_named(clock: FakeClock, param: str, value: str, fragment: str) -> None:
    req = _signed(clock)
    with pytest.raises(MalformedRequest, match=fragment) as info:
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, raw_query=_replace(req, param, value))
    assert info.value.param == param
    assert info.value.code == "malformed" and info.value.status == 400


@pytest.mark.parametrize("param", scheme.ALL_PARAMS)
def test_each_missing_parameter_is_named(clock: FakeClock, param: str) -> None:
    req = _signed(clock)
    query = "&".join(p for p in req.url.split("?", 1)[1].split("&") if not p.startswith(param + "="))
    with pytest.raises(MalformedRequest, match="is missing") as info:
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, raw_query=query)
    assert info.value.param == param


def test_duplicated_parameter_is_refused(clock: FakeClock) -> None:
    req = _signed(clock)
    query = req.url.split("?", 1)[1] + "&X-Sw-Proxy=https%3A%2F%2Fevil.example%2F"
    with pytest.raises(MalformedRequest, match="more than once"):
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, raw_query=query)


def test_other_query_parameters_are_ignored(clock: FakeClock) -> None:
    req = _signed(clock)
    assert _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, raw_query=req.url.split("?", 1)[1] + "&utm=1&x")


def test_unsupported_algorithm(clock: FakeClock) -> None:
    req = _signed(clock)
    query = _replace(req, "X-Sw-Algorithm", "SW2-HMAC-SHA512")
    with pytest.raises(UnsupportedAlgorithm) as info:
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, raw_query=query)
    assert info.value.code == "unsupported_algorithm"


def test_expired_says_by_how_much(clock: FakeClock) -> None:
    req = _signed(clock, expires_in=30)
    clock.now += 29.999
    assert _verify(Verifier({"app": ["s3cret"]}, clock=clock), req)  # the last valid instant
    clock.now += 0.001
    with pytest.raises(Expired, match="0 s ago"):  # expired from the instant, as Signway decides
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req)
    clock.now += 12
    with pytest.raises(Expired, match="12 s ago") as info:
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req)
    assert (info.value.expired_by, info.value.now, info.value.status) == (12, 1_700_000_042, 401)


def test_future_dates_beyond_skew_are_refused(clock: FakeClock) -> None:
    req = _signed(clock)
    clock.now -= 60
    assert _verify(Verifier({"app": ["s3cret"]}, clock=clock), req)
    clock.now -= 1
    with pytest.raises(NotYetValid, match="61 s in the future") as info:
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req)
    assert info.value.code == "not_yet_valid"
    assert _verify(Verifier({"app": ["s3cret"]}, clock=clock, skew=61), req)


def test_max_expires(clock: FakeClock) -> None:
    with pytest.raises(ExpiryTooLong, match="at most 30 s"):
        _verify(Verifier({"app": ["s3cret"]}, clock=clock, max_expires=30), _signed(clock, expires_in=31))


def test_unknown_key(clock: FakeClock) -> None:
    with pytest.raises(UnknownKey) as info:
        _verify(Verifier({"other": ["s3cret"]}, clock=clock), _signed(clock))
    assert info.value.status == 401


def test_missing_bound_header_is_named(clock: FakeClock) -> None:
    req = _signed(clock, headers={"X-User": "u1"})
    with pytest.raises(MissingHeader, match="'x-user'") as info:
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, headers={})
    assert info.value.header == "x-user"


def test_altered_bound_header_fails_the_signature(clock: FakeClock) -> None:
    req = _signed(clock, headers={"X-User": "u1"})
    with pytest.raises(BadSignature):
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, headers={"x-user": "u2"})


def test_body_length_mismatch(clock: FakeClock) -> None:
    req = _signed(clock, body="hello")
    verifier = Verifier({"app": ["s3cret"]}, clock=clock)
    with pytest.raises(BodyMismatch, match="4 bytes but content-length says 5"):
        _verify(verifier, req, body=b"hell")
    with pytest.raises(BodyMismatch, match="0 bytes"):
        _verify(verifier, req, body=None)


def test_body_must_be_utf8(clock: FakeClock) -> None:
    req = _signed(clock, body="hé")
    with pytest.raises(BodyMismatch, match="UTF-8"):
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, body=b"h\xff\xfe")


def test_altered_body_same_length_fails_the_signature(clock: FakeClock) -> None:
    req = _signed(clock, body="hello")
    with pytest.raises(BadSignature):
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, body=b"jello")


def test_method_is_signed_exactly(clock: FakeClock) -> None:
    with pytest.raises(BadSignature):
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), _signed(clock), method="post")


def test_messages_never_contain_secrets_or_signatures(clock: FakeClock) -> None:
    req = _signed(clock, headers={"X-Token": "tok-123"}, body="payload")
    signature = req.url.rsplit("=", 1)[1]
    verifier = Verifier({"app": ["s3cret"]}, clock=clock)
    cases: list[dict[str, object]] = [
        {"headers": {"x-token": "tok-124", "content-length": "7"}},
        {"body": b"payloax"},
        {"raw_query": _replace(req, "X-Sw-Signature", "0" * 64)},
        {"headers": {"content-length": "7"}},
    ]
    for override in cases:
        with pytest.raises(VerificationError) as info:
            _verify(verifier, req, **override)
        text = str(info.value)
        for secret in ("s3cret", signature, "tok-12", "payload"):
            assert secret not in text


@pytest.mark.parametrize("query_part", ["X-Sw-Proxy=%41\ud800", "X-Sw-Proxy=\ud800", "X-Sw\ud800=1", "\udcff%FF=1"])
def test_lone_surrogates_in_the_query_are_malformed(clock: FakeClock, query_part: str) -> None:
    # A caller that decodes query bytes with surrogateescape hands these over; they are not
    # UTF-8 text, so no signer produced them. They raised UnicodeEncodeError.
    req = _signed(clock)
    query = req.url.split("?", 1)[1] + "&" + query_part
    with pytest.raises(MalformedRequest, match="not valid UTF-8") as info:
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, raw_query=query)
    assert info.value.param == "query"


def test_lone_surrogates_in_method_headers_or_path_fail_the_signature(clock: FakeClock) -> None:
    req = _signed(clock, headers={"X-User": "u1"}, body="b")
    verifier = Verifier({"app": ["s3cret"]}, clock=clock)
    for override in (
        {"method": "POST\udcff"},
        {"headers": {"x-user": "u\ud800", "content-length": "1"}},
        # the path only matters to the legacy forms, tried once the SW1 form has failed
        {"path": "/gw\udcff/", "raw_query": _replace(req, "X-Sw-Signature", "0" * 64)},
    ):
        with pytest.raises(BadSignature):
            _verify(verifier, req, **override)


def test_a_signature_moved_into_another_parameter_is_not_echoed(clock: FakeClock) -> None:
    # Messages go back to the client; one that quoted client input in full could carry a signature
    # (64 hex characters are a valid header name) into a log or a screenshot.
    req = _signed(clock)
    signature = req.url.rsplit("=", 1)[1]
    query = _replace(req, "X-Sw-SignedHeaders", signature)
    with pytest.raises(MissingHeader) as info:
        _verify(Verifier({"app": ["s3cret"]}, clock=clock), req, raw_query=query)
    assert signature not in str(info.value)
    assert info.value.header == signature
