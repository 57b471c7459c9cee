"""The refusal table (signgate.gateway.refusals): every error a request can meet, answered as the
JSON a browser can read, with its status, code and headers, and never a secret."""

from __future__ import annotations

import json

import pytest

from signgate import Signer, Verifier, errors
from signgate.errors import (
    AtCapacity,
    BadSignature,
    ConnectError,
    ConnectTimeout,
    Expired,
    ForbiddenAddress,
    LimitExceeded,
    PolicyViolation,
    Refusal,
    StoreError,
    StoreUnavailable,
    UpgradeNotSupported,
    UpstreamError,
    UpstreamNotAllowed,
    UpstreamTimedOut,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from signgate.gateway.refusals import PRIVATE_HINT, answer, refusal_for


def subclasses(cls: type[Exception]) -> list[type[Exception]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += subclasses(sub)
    return found


def refusal_classes() -> list[type[Refusal]]:
    return [cls for cls in subclasses(Refusal) if issubclass(cls, Refusal)]


def instance(cls: type[Exception]) -> Exception:
    return ForbiddenAddress("api.example", "10.0.0.1") if cls is ForbiddenAddress else cls("details from below")


@pytest.mark.parametrize(
    ("error", "refusal", "status", "code"),
    [
        (ForbiddenAddress("api.example", "10.0.0.1"), UpstreamNotAllowed, 403, "upstream_not_allowed"),
        (ConnectError("cannot resolve api.example"), UpstreamUnreachable, 502, "upstream_unreachable"),
        (UpstreamError("the connection broke"), UpstreamUnreachable, 502, "upstream_unreachable"),
        (UpstreamTimeout("silent"), UpstreamTimedOut, 504, "upstream_timeout"),
        (ConnectTimeout("no connection"), UpstreamTimedOut, 504, "upstream_timeout"),
        (StoreError("ConnectionError"), StoreUnavailable, 503, "store_unavailable"),
    ],
)
def test_errors_from_below_map_to_their_refusal(
    error: Exception, refusal: type[Refusal], status: int, code: str
) -> None:
    answered = refusal_for(error, "api.example")
    assert type(answered) is refusal
    assert (answered.status, answered.code) == (status, code)


@pytest.mark.parametrize("cls", subclasses(UpstreamError), ids=lambda cls: cls.__name__)
def test_every_upstream_error_has_an_answer_naming_the_host_only(cls: type[Exception]) -> None:
    """A new subclass is answered too (by its nearest listed ancestor), never with its own text:
    that may hold the path or query a client sent."""
    answered = refusal_for(instance(cls), "api.example")
    assert answered.status in (403, 502, 504)
    assert "details from below" not in answered.message and "10.0.0.1" not in answered.message
    if answered.status != 403:
        assert "(api.example)" in answered.message


def test_a_private_address_refusal_says_how_to_reach_a_local_model() -> None:
    assert PRIVATE_HINT in refusal_for(ForbiddenAddress("localhost", "127.0.0.1"), "localhost").message
    assert "--allow-private-upstreams" in PRIVATE_HINT


@pytest.mark.parametrize("cls", subclasses(StoreError), ids=lambda cls: cls.__name__)
def test_a_store_error_asks_to_retry_without_naming_the_store(cls: type[Exception]) -> None:
    answered = refusal_for(cls("AuthenticationError: password for redis://:hunter2@store"))
    assert (answered.status, answered.retry_after) == (503, 1)
    assert "hunter2" not in answered.message and "redis" not in answered.message


@pytest.mark.parametrize("cls", refusal_classes(), ids=lambda cls: cls.__name__)
def test_a_refusal_is_its_own_answer(cls: type[Refusal]) -> None:
    refusal = Expired(5, 100) if cls is Expired else UpstreamNotAllowed("no")
    assert refusal_for(refusal) is refusal


def test_an_error_the_table_does_not_know_is_a_bug_not_a_refusal() -> None:
    with pytest.raises(TypeError, match="no refusal answers ValueError"):
        refusal_for(ValueError("x"))


def test_every_refusal_class_has_a_status_and_a_stable_code() -> None:
    for cls in refusal_classes():
        if cls in (Refusal, errors.VerificationError, LimitExceeded):
            continue  # bases, and a code per limit (below)
        assert 400 <= cls.status <= 599, cls
        assert cls.code.replace("_", "").isalpha() and cls.code.islower(), cls
    assert LimitExceeded("tokens_per_day", "user", 10, 60).code == "tokens_per_day_exceeded"


def read(body: bytes) -> dict[str, object]:
    assert body.endswith(b"\n")
    error = json.loads(body)["error"]
    assert isinstance(error, dict)
    return error


def test_the_answer_is_json_with_the_code_message_and_request_id() -> None:
    headers, body = answer(UpstreamNotAllowed("this key may not reach it"), "req-1")
    assert read(body) == {"code": "upstream_not_allowed", "message": "this key may not reach it", "request_id": "req-1"}
    assert headers == [(b"x-signgate-error", b"upstream_not_allowed")]


def test_the_details_a_caller_needs_are_in_the_error_object() -> None:
    headers, body = answer(LimitExceeded("requests_per_minute", "tenant", 60, 42), "r")
    error = read(body)
    assert (error["code"], error["scope"], error["limit"]) == ("requests_per_minute_exceeded", "tenant", 60)
    assert dict(headers)[b"retry-after"] == b"42"
    assert read(answer(PolicyViolation("models", "model 'x' is not allowed"), "r")[1])["rule"] == "models"
    assert read(answer(Expired(30, 1_700_000_000), "r")[1])["now"] == 1_700_000_000


def test_retry_after_and_connection_close_only_when_asked() -> None:
    assert dict(answer(AtCapacity("full"), "r")[0])[b"retry-after"] == b"1"
    assert dict(answer(UpgradeNotSupported("no", close=True), "r")[0])[b"connection"] == b"close"
    plain = dict(answer(BadSignature("no"), "r")[0])
    assert b"retry-after" not in plain and b"connection" not in plain


def test_a_verification_refusal_holds_no_secret_or_signature() -> None:
    request = Signer("app", "the-secret", "https://gw").sign("POST", "https://api.example/v1/", json={"p": "q"})
    query = request.url.split("?", 1)[1]
    signature = dict(p.split("=", 1) for p in query.split("&"))["X-Sw-Signature"]
    assert request.body is not None
    body = request.body.encode()
    headers = {**request.headers, "content-length": str(len(body))}
    with pytest.raises(BadSignature) as refused:
        Verifier({"app": ["another-secret"]}).verify_request("POST", query, headers, body)
    extra, answered = answer(refused.value, "r")
    everything = answered + b"".join(name + value for name, value in extra)
    for secret in ("the-secret", "another-secret", signature, query):
        assert secret.encode() not in everything
