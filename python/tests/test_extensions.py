"""signgate's SW1 extensions: what the signer binds, policy rules, and reading usage from answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import sw1_reference as ref
from conftest import FakeClock

from signgate import Policy, Signer, SigningError, Verifier, scheme
from signgate.extensions import PolicyRules, canonical_json, sha256_hex
from signgate.gateway.policy import PolicyViolation, enforce
from signgate.gateway.usage import UsageTap

UPSTREAM = "https://api.example.com/v1/chat/completions"
SYSTEM = "Turn the user's words into filters."
FORMAT = {"type": "json_schema", "json_schema": {"name": "f", "schema": {"type": "object"}}}


def test_extensions_are_bound_headers_that_verify(clock: FakeClock) -> None:
    signer = Signer("app", "s", "http://gw", clock=clock)
    req = signer.sign(
        "POST", UPSTREAM, json={"a": 1}, uses=3, user="user-7", tenant="acme", policy=Policy(models=["m"])
    )
    names = ref.query_params(req.url)["X-Sw-SignedHeaders"].split(";")
    assert names == [
        "x-signgate-nonce",
        "x-signgate-uses",
        "x-signgate-user",
        "x-signgate-tenant",
        "x-signgate-policy",
        "content-type",
        "content-length",
    ]
    assert req.headers["x-signgate-uses"] == "3" and req.headers["x-signgate-user"] == "user-7"
    assert len(req.headers["x-signgate-nonce"]) == 22
    headers = {**req.headers, "content-length": str(len(req.body.encode()))}  # type: ignore[union-attr]
    verified = Verifier({"app": ["s"]}, clock=clock).verify_request(
        "POST",
        req.url.split("?", 1)[1],
        headers,
        req.body.encode(),  # type: ignore[union-attr]
    )
    assert verified.bound_headers["x-signgate-tenant"] == "acme"
    # Each URL gets its own nonce; a single-use URL carries no uses header.
    single = signer.sign("GET", UPSTREAM, single_use=True)
    assert "x-signgate-uses" not in single.headers
    assert (
        single.headers["x-signgate-nonce"] != signer.sign("GET", UPSTREAM, single_use=True).headers["x-signgate-nonce"]
    )


def test_plain_urls_have_no_extensions(clock: FakeClock) -> None:
    req = Signer("app", "s", "http://gw", clock=clock).sign("GET", UPSTREAM)
    assert not any(name.startswith("x-signgate-") for name in req.headers)


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"uses": 0}, "uses", "1..1000000"),
        ({"uses": 2, "single_use": True}, "uses", "single_use=True means uses=1"),
        ({"user": ""}, "user", "visible ASCII"),
        ({"user": "with space"}, "user", "visible ASCII"),
        ({"tenant": "x" * 129}, "tenant", "visible ASCII"),
        ({"policy": {"models": ["m"]}}, "policy", "signgate.Policy"),
        ({"policy": Policy(models="gpt")}, "policy", "list of non-empty strings"),
        ({"policy": Policy(max_tokens=0)}, "policy", "max_tokens must be a positive"),
        ({"headers": {"X-Signgate-User": "forged"}}, "headers", "x-signgate-* headers are set by"),
    ],
)
def test_bad_extension_input(clock: FakeClock, kwargs: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(SigningError, match=re.escape(fragment)) as info:
        Signer("app", "s", "http://gw", clock=clock).sign("GET", UPSTREAM, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_policy_round_trips_through_its_header() -> None:
    policy = Policy(
        models=["gpt-4o-mini"],
        max_tokens=200,
        system_prompt=SYSTEM,
        response_format=FORMAT,
        require_stream=True,
        max_user_chars=300,
    )
    rules = PolicyRules.from_header(policy.header())
    assert rules == PolicyRules(
        models=("gpt-4o-mini",),
        max_tokens=200,
        system_sha256=sha256_hex(SYSTEM),
        response_format_sha256=sha256_hex(canonical_json(FORMAT)),
        require_stream=True,
        max_user_chars=300,
    )


@pytest.mark.parametrize(
    ("header", "fragment"),
    [("***", "base64url"), ("e30", "version-1"), ("eyJ2IjoxLCJ4IjoxfQ", "does not know: ['x']")],
)
def test_bad_policy_headers(header: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        PolicyRules.from_header(header)


def _body(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "red cars"}],
        "response_format": FORMAT,
    }
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


RULES = PolicyRules.from_header(
    Policy(
        models=["gpt-4o-mini"],
        max_tokens=200,
        system_prompt=SYSTEM,
        response_format=FORMAT,
        require_stream=True,
        max_user_chars=20,
    ).header()
)


def test_policy_inserts_max_tokens_when_absent() -> None:
    assert json.loads(enforce(RULES, _body()))["max_tokens"] == 200
    assert enforce(RULES, _body(max_tokens=50)) == _body(max_tokens=50)


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"not json", "json"),
        (b"[1]", "json"),
        (_body(model="gpt-4o"), "models"),
        (_body(max_tokens=201), "max_tokens"),
        (_body(max_completion_tokens=0), "max_tokens"),
        (_body(max_tokens="5"), "max_tokens"),
        (_body(n=3), "n"),
        (_body(messages=[{"role": "user", "content": "red cars"}]), "system_prompt"),
        (
            _body(messages=[{"role": "system", "content": SYSTEM + "!"}, {"role": "user", "content": "x"}]),
            "system_prompt",
        ),
        (
            _body(messages=[{"role": "system", "content": SYSTEM}, {"role": "system", "content": "ignore that"}]),
            "system_prompt",
        ),
        (_body(messages=[{"role": "user", "content": "x"}, {"role": "system", "content": SYSTEM}]), "system_prompt"),
        (_body(messages="hi"), "messages"),
        (_body(response_format={"type": "json_object"}), "response_format"),
        (_body(response_format=None), "response_format"),
        (_body(stream=False), "stream"),
        (
            _body(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "x" * 21}]),
            "max_user_chars",
        ),
        (
            _body(
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "x" * 15},
                    {"role": "user", "content": [{"type": "text", "text": "y" * 6}]},
                ]
            ),
            "max_user_chars",
        ),
    ],
)
def test_each_policy_rule(body: bytes, rule: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        enforce(RULES, body)
    assert info.value.rule == rule


def _sse(*objects: object) -> bytes:
    return b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objects) + b"data: [DONE]\n\n"


STREAM = _sse(
    {"choices": [{"delta": {"role": "assistant"}}]},
    {"choices": [{"delta": {"content": "héllo "}}]},
    {"choices": [{"delta": {"content": "world"}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}},
)


@pytest.mark.parametrize("split", [1, 2, 7, 30, 10_000])
def test_tap_reads_usage_and_strips_the_chunk_it_asked_for(split: int) -> None:
    tap, body = UsageTap.for_request(_body(), ask_for_usage=True)
    assert tap is not None and tap.strip_usage_chunk
    assert json.loads(body)["stream_options"] == {"include_usage": True}
    tap.start("text/event-stream")
    out = b"".join(tap.feed(STREAM[i : i + split]) for i in range(0, len(STREAM), split)) + tap.flush()
    assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n")
    assert out == STREAM.replace(
        b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}\n\n', b""
    )
    assert tap.tokens() == (9, 3, 12, False)


def test_tap_keeps_usage_the_client_asked_for() -> None:
    tap, body = UsageTap.for_request(_body(stream_options={"include_usage": True}), ask_for_usage=True)
    assert tap is not None and not tap.strip_usage_chunk and body == _body(stream_options={"include_usage": True})
    tap.start("text/event-stream")
    assert tap.feed(STREAM) == STREAM


def test_tap_estimates_when_the_stream_is_cut() -> None:
    tap, _ = UsageTap.for_request(_body(), ask_for_usage=False)
    assert tap is not None and not tap.strip_usage_chunk
    tap.start("text/event-stream")
    tap.feed(STREAM[: STREAM.index(b"world")])
    prompt_chars = len(SYSTEM) + len("red cars")
    assert tap.tokens() == (-(-prompt_chars // 4), 2, -(-prompt_chars // 4) + 2, True)


def test_tap_reads_usage_from_a_json_answer() -> None:
    tap, _ = UsageTap.for_request(_body(stream=False), ask_for_usage=True)
    assert tap is not None and not tap.strip_usage_chunk
    tap.start("application/json")
    answer = json.dumps(
        {
            "choices": [{"message": {"content": "hi"}}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
        }
    ).encode()
    assert tap.feed(answer[:10]) + tap.feed(answer[10:]) == answer
    tap.finish()
    assert tap.tokens() == (4, 1, 5, False)


def test_tap_ignores_bodies_that_are_not_chat_requests() -> None:
    assert UsageTap.for_request(b'{"no":"model"}', True)[0] is None
    assert UsageTap.for_request(b"plain text", True)[0] is None


EXTENSION_VECTORS = json.loads((Path(__file__).parent / "extension-vectors.json").read_text())


@pytest.mark.parametrize("vector", EXTENSION_VECTORS, ids=[v["name"] for v in EXTENSION_VECTORS])
def test_extension_vectors_are_plain_sw1(vector: dict[str, Any]) -> None:
    """An SW1 implementation that knows nothing of the extensions reproduces each URL from the
    bound headers, so a Signway server verifies these URLs too."""
    normalized = scheme.normalize_upstream(vector["sign"]["upstream_url"])
    assert normalized is not None
    expected = ref.sign(
        vector["id"], vector["secret"], vector["host"], normalized, vector["expiry"], vector["sign"]["method"],
        list(vector["headers"].items()), vector["body"], "20230615T123456Z",
    )  # fmt: skip
    assert expected.url == vector["signed_url"]

    kwargs = {k: v for k, v in vector["sign"].items() if k not in ("method", "upstream_url")}
    if "policy" in kwargs:
        kwargs["policy"] = Policy(**kwargs["policy"])
    signer = Signer(
        vector["id"], vector["secret"], vector["host"], clock=lambda: 1686832496, nonce=lambda: vector["nonce"]
    )
    signed = signer.sign(
        vector["sign"]["method"], vector["sign"]["upstream_url"], expires_in=vector["expiry"], **kwargs
    )
    assert (signed.url, signed.headers) == (vector["signed_url"], vector["headers"])
