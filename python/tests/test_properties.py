"""Property tests: sign then verify round-trips, and every tampering fails with the right code."""

from __future__ import annotations

import string
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signgate import SignedRequest, Signer, VerificationError, Verifier, scheme
from signgate.verifier import _canonical_query, parse_query

NOW = 1_700_000_000
TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"

ids = st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1, max_size=20)
secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
hosts = st.sampled_from(["api.example.com", "API.Example.COM", "bücher.de", "127.0.0.1", "[::1]", "h:8443"])
paths = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="?#/\\"), max_size=8), max_size=3
)
queries = st.none() | st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="#"), max_size=20)
fragments = st.none() | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=10)
# Not content-length (derived from the body), nor signgate's own x-signgate-* (set by the signer's
# arguments, and refused as headers: extensions are tested in test_extensions.py).
header_names = st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=12).filter(
    lambda n: n.lower() != "content-length" and not n.lower().startswith("x-signgate-")
)
# What a header may carry: visible ASCII, space and tab (the signer refuses anything else).
header_values = st.text(st.sampled_from([chr(c) for c in range(0x20, 0x7F)] + ["\t"]), max_size=30)
bodies = (
    st.none()
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=50)
    | st.builds(lambda c, n: c * n, st.characters(blacklist_categories=("Cs",)), st.integers(10_000, 100_000))
)


@st.composite
def upstreams(draw: st.DrawFn) -> str:
    url = f"{draw(st.sampled_from(['http', 'https', 'HTTPS']))}://{draw(hosts)}/" + "/".join(draw(paths))
    query, fragment = draw(queries), draw(fragments)
    return url + (f"?{query}" if query is not None else "") + (f"#{fragment}" if fragment is not None else "")


@st.composite
def headers(draw: st.DrawFn) -> dict[str, str]:
    names = draw(st.lists(header_names, max_size=4, unique_by=str.lower))
    return {name: draw(header_values) for name in names}


def _sent(req: SignedRequest) -> tuple[dict[str, str], bytes | None]:
    sent = dict(req.headers)
    body = req.body.encode() if req.body is not None else None
    if body is not None:
        sent["content-length"] = str(len(body))
    return sent, body


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids,
    secrets,
    upstreams(),
    headers(),
    bodies,
    st.sampled_from(["GET", "POST", "PATCH", "custom"]),
    st.integers(1, 2**32 - 1),
)
def test_round_trip(
    key_id: str, secret: str, upstream: str, hdrs: dict[str, str], body: str | None, method: str, expires: int
) -> None:
    req = Signer(key_id, secret, "https://gw.example", clock=lambda: NOW).sign(
        method, upstream, headers=hdrs, body=body, expires_in=expires
    )
    sent, raw = _sent(req)
    verified = Verifier({key_id: [secret]}, clock=lambda: NOW).verify_request(
        method, req.url.split("?", 1)[1], sent, raw
    )
    assert verified.key_id == key_id
    assert verified.forward_url == scheme.normalize_upstream(upstream)
    assert verified.body == body
    assert verified.expires_at == NOW + expires


@settings(max_examples=300)
@given(
    ids,
    upstreams(),
    headers(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.booleans(),
    st.integers(1, 2**32 - 1),
)
def test_the_verifier_canonical_query_is_the_scheme_one(
    key_id: str, upstream: str, hdrs: dict[str, str], algorithm: str, with_body: bool, expires: int
) -> None:
    """The verifier builds the canonical query directly; it must be scheme.canonical_query's."""
    req = Signer(key_id, "s", "https://gw.example", clock=lambda: NOW).sign(
        "POST", upstream, headers=hdrs, body="{}" if with_body else None, expires_in=expires
    )
    query = req.url.split("?", 1)[1].replace("SW1-HMAC-SHA256", quote(algorithm, safe=""), 1)
    params = parse_query(query)
    assert params.algorithm == algorithm
    assert _canonical_query(params) == scheme.canonical_query(params.pairs())


def _params(req: SignedRequest) -> list[list[str]]:
    return [p.split("=", 1) for p in req.url.split("?", 1)[1].split("&")]


def _query(params: list[list[str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in params)


def _with(params: list[list[str]], name: str, value: str) -> str:
    return _query([[k, value if k == name else v] for k, v in params])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids,
    upstreams(),
    headers(),
    st.text(max_size=40),
    st.data(),
)
def test_any_tampering_fails_with_the_right_code(
    key_id: str, upstream: str, hdrs: dict[str, str], body: str, data: st.DataObject
) -> None:
    req = Signer(key_id, "s3cret", "https://gw.example", clock=lambda: NOW).sign(
        "POST", upstream, headers=hdrs, body=body, expires_in=600
    )
    sent, raw = _sent(req)
    params = _params(req)
    query = req.url.split("?", 1)[1]
    other_id = key_id + "x"
    verifier = Verifier({key_id: ["s3cret"], other_id: ["s3cret"]}, clock=lambda: NOW)
    assert raw is not None

    tamper = data.draw(
        st.sampled_from(["method", "upstream", "header", "body", "body_length", "expires", "date", "id", "signature"])
    )
    expected = "bad_signature"
    method, headers_sent, body_sent = "POST", dict(sent), raw
    if tamper == "method":
        method = "PUT"
    elif tamper == "upstream":
        query = _with(params, "X-Sw-Proxy", quote("https://evil.example/", safe=""))
    elif tamper == "header":
        if not hdrs:
            return
        name = data.draw(st.sampled_from(sorted(req.headers)))
        headers_sent[name] = req.headers[name] + "x"
    elif tamper == "body":
        if not raw:
            return
        body_sent = bytes([raw[0] ^ 0x01]) + raw[1:]
        if body_sent.decode("utf-8", "replace") != body_sent.decode("utf-8", "ignore"):
            expected = "body_mismatch"
    elif tamper == "body_length":
        body_sent = raw + b"x"
        expected = "body_mismatch"
    elif tamper == "expires":
        query = _with(params, "X-Sw-Expires", "601")
    elif tamper == "date":
        query = _with(params, "X-Sw-Date", scheme.long_date(NOW - 1))
    elif tamper == "id":
        query = _with(params, "X-Sw-Credential", quote(f"{other_id}/{scheme.long_date(NOW)[:8]}", safe=""))
    else:
        sig = params[-1][1]
        i = data.draw(st.integers(0, 63))
        query = _with(params, "X-Sw-Signature", sig[:i] + ("0" if sig[i] != "0" else "1") + sig[i + 1 :])

    try:
        verifier.verify_request(method, query, headers_sent, body_sent)
    except VerificationError as exc:
        assert exc.code == expected, f"{tamper}: {exc.code} ({exc})"
    else:
        raise AssertionError(f"tampering with {tamper} was not detected")
