"""The public SW1 vectors, checked stage by stage so a failure names the stage that differs."""

from __future__ import annotations

import datetime as dt
import hmac
from pathlib import Path
from typing import Any

import pytest
import sw1_reference as ref
from conftest import VECTORS, load_vectors

from signgate import Signer, Verifier, parse_query, scheme, sign_url

VECTOR_LIST = load_vectors()


def _epoch(vector: dict[str, Any]) -> int:
    return int(dt.datetime.fromisoformat(vector["datetime"].replace("Z", "+00:00")).timestamp())


def test_vendored_vectors_match_shared_reference() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "reference" / "sw1-vectors.json"
    if shared.exists():
        assert shared.read_text() == VECTORS.read_text(), "python/tests/sw1-vectors.json is stale"


@pytest.mark.parametrize("vector", VECTOR_LIST, ids=[v["name"] for v in VECTOR_LIST])
def test_vector_stages(vector: dict[str, Any]) -> None:
    epoch = _epoch(vector)
    long = scheme.long_date(epoch)
    upstream = scheme.normalize_upstream(vector["proxy_url"])
    assert upstream is not None
    headers = list((vector["headers"] or {}).items())
    body = vector["body"]
    expected = ref.sign(
        vector["id"],
        vector["secret"],
        vector["host"],
        upstream,
        vector["expiry"],
        vector["method"],
        headers,
        body,
        long,
    )
    assert expected.url == vector["signed_url"], "the naive reference disagrees with the vector: fix the reference"

    bound = [(k.lower(), v.strip()) for k, v in headers]
    if body is not None:
        bound.append(("content-length", str(len(body.encode()))))
    params = parse_query(vector["signed_url"].split("?", 1)[1])
    canonical = scheme.canonical_request(
        vector["method"],
        scheme.canonical_query(params.pairs()),
        scheme.canonical_headers(bound),
        scheme.signed_headers_sorted([k for k, _ in bound]),
        body or "",
    )
    assert canonical == expected.canonical_request, "stage 'canonical request' differs"
    to_sign = scheme.string_to_sign(long, canonical)
    assert to_sign == expected.string_to_sign, "stage 'string to sign' differs"
    assert scheme.signature(vector["secret"], long[:8], to_sign) == expected.signature, "stage 'signature' differs"

    signer = Signer(vector["id"], vector["secret"], vector["host"], clock=lambda: epoch)
    signed = signer.sign(
        vector["method"], vector["proxy_url"], headers=vector["headers"], body=body, expires_in=vector["expiry"]
    )
    assert signed.url == vector["signed_url"], "stage 'URL' differs"


@pytest.mark.parametrize("vector", VECTOR_LIST, ids=[v["name"] for v in VECTOR_LIST])
def test_sign_url_reproduces_vector(vector: dict[str, Any]) -> None:
    moment = dt.datetime.fromisoformat(vector["datetime"].replace("Z", "+00:00"))
    url = sign_url(
        vector["id"],
        vector["secret"],
        vector["host"],
        vector["proxy_url"],
        vector["expiry"],
        vector["method"],
        vector["headers"],
        vector["body"],
        moment,
    )
    assert url == vector["signed_url"]


@pytest.mark.parametrize("vector", VECTOR_LIST, ids=[v["name"] for v in VECTOR_LIST])
def test_vector_verifies(vector: dict[str, Any]) -> None:
    epoch = _epoch(vector)
    verifier = Verifier({vector["id"]: [vector["secret"]]}, clock=lambda: epoch + 1)
    headers = {k.lower(): v for k, v in (vector["headers"] or {}).items()}
    body = vector["body"].encode() if vector["body"] is not None else None
    if body is not None:
        headers["content-length"] = str(len(body))
    verified = verifier.verify_request(vector["method"], vector["signed_url"].split("?", 1)[1], headers, body)
    assert verified.key_id == vector["id"]
    assert verified.forward_url == scheme.normalize_upstream(vector["proxy_url"])
    assert verified.expires_at == epoch + vector["expiry"]


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 200])
def test_day_mac_is_hmac_sha256(length: int) -> None:
    """scheme.DayMac writes RFC 2104 out by hand for speed: it must agree with the hmac module for
    messages on both sides of SHA-256's 64-byte block and its 56-byte padding limit."""
    for key in (b"", b"k", bytes(range(32)), bytes(range(64)), bytes(range(100))):
        message = bytes(i % 251 for i in range(length))
        assert scheme.DayMac(key).hexdigest(message) == hmac.new(key, message, "sha256").hexdigest()
