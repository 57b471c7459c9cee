"""signway-sdk (the official Python SDK, installed from PyPI) against signgate."""

from __future__ import annotations

import datetime as dt

import pytest
import sw1_reference as ref
from signway_sdk import sign_url as sdk_sign_url

from signgate import BadSignature, Signer, Verifier, scheme

MOMENT = dt.datetime(2024, 3, 9, 16, 5, 7)
EPOCH = int(MOMENT.replace(tzinfo=dt.UTC).timestamp())

CASES = [
    ("GET", "https://api.example.com/v1/models", None, None),
    ("POST", "https://api.openai.com/v1/chat/completions", {"Content-Type": "application/json"}, '{"model":"m"}'),
    ("POST", "https://api.example.com/v1/x?a=1&b=two", {"X-A": "1", "X-B": " padded "}, ""),
    ("PUT", "http://127.0.0.1:8080/path/%7Euser/", None, "plain ascii body"),
]


def _headers_for(headers: dict[str, str] | None, body: str | None) -> dict[str, str]:
    sent = {k.lower(): v for k, v in (headers or {}).items()}
    if body is not None:
        sent["content-length"] = str(len(body.encode()))
    return sent


@pytest.mark.parametrize(("method", "upstream", "headers", "body"), CASES)
def test_sdk_urls_verify(method: str, upstream: str, headers: dict[str, str] | None, body: str | None) -> None:
    url = sdk_sign_url(
        "sdk-id", "sdk-secret", "http://localhost:3000", upstream, 60, method, headers and dict(headers), body, MOMENT
    )
    verifier = Verifier({"sdk-id": ["sdk-secret"]}, clock=lambda: EPOCH)
    encoded = body.encode() if body is not None else None
    verified = verifier.verify_request(method, url.split("?", 1)[1], _headers_for(headers, body), encoded)
    assert verified.forward_url == scheme.normalize_upstream(upstream)


@pytest.mark.parametrize(("method", "upstream", "headers", "body"), CASES)
def test_our_urls_are_what_the_scheme_says(
    method: str, upstream: str, headers: dict[str, str] | None, body: str | None
) -> None:
    ours = Signer("sdk-id", "sdk-secret", "http://localhost:3000", clock=lambda: EPOCH).sign(
        method, upstream, headers=headers, body=body, expires_in=60
    )
    normalized = scheme.normalize_upstream(upstream)
    assert normalized is not None
    expected = ref.sign(
        "sdk-id",
        "sdk-secret",
        "http://localhost:3000",
        normalized,
        60,
        method,
        list((headers or {}).items()),
        body,
        scheme.long_date(EPOCH),
    )
    assert ours.url == expected.url
    # For these inputs the SDK has none of its defects, so it agrees with us byte for byte.
    assert ours.url == sdk_sign_url(
        "sdk-id", "sdk-secret", "http://localhost:3000", normalized, 60, method, headers and dict(headers), body, MOMENT
    )


def test_sdk_non_normalized_upstream_is_accepted_and_forwarded_normalized() -> None:
    url = sdk_sign_url("i", "s", "http://gw", "HTTPS://API.Example.COM:443", 60, "GET", None, None, MOMENT)
    verified = Verifier({"i": ["s"]}, clock=lambda: EPOCH).verify_request("GET", url.split("?", 1)[1], {})
    assert verified.upstream_url == "https://API.Example.COM:443"  # as the SDK signed it
    assert verified.forward_url == "https://api.example.com/"


def test_sdk_path_prefix_and_plus_spaces_are_accepted() -> None:
    url = sdk_sign_url("i", "s", "http://gw/llm", "https://x.example/q?a=b c", 60, "GET", None, None, MOMENT)
    assert "/llm/?" in url and "+" in url
    verified = Verifier({"i": ["s"]}, clock=lambda: EPOCH).verify_request("GET", url.split("?", 1)[1], {}, path="/llm/")
    assert verified.forward_url == "https://x.example/q?a=b%20c"


def test_sdk_non_ascii_body_cannot_verify() -> None:
    """The SDK counts characters, so its content-length never matches the bytes sent."""
    url = sdk_sign_url("i", "s", "http://gw", "https://x.example/", 60, "POST", None, "héllo", MOMENT)
    body = "héllo".encode()
    with pytest.raises(BadSignature):
        Verifier({"i": ["s"]}, clock=lambda: EPOCH).verify_request(
            "POST", url.split("?", 1)[1], {"content-length": str(len(body))}, body
        )
