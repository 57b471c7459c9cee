"""signgate's SW1 extensions: what the signer binds, policy rules, and reading usage from answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import sw1_reference as ref
from conftest import FakeClock

from signgate import Policy, Signer, SigningError, Verifier, scheme, strict_json
from signgate.errors import InvalidJSON
from signgate.extensions import PolicyRules, canonical_json, sha256_hex
from signgate.gateway.policy import PolicyViolation, enforce
from signgate.gateway.usage import UsageTap
from signgate.providers import find_upstream

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


def apply(rules: PolicyRules, body: bytes, path: str = "/v1/chat/completions") -> bytes:
    """What the gateway forwards to ``path``: the body read strictly, checked, and written again
    if changed."""
    data = strict_json.loads(body)
    return strict_json.dumps(data) if enforce(rules, data, find_upstream("POST", path)) else body


def test_policy_inserts_max_tokens_when_absent() -> None:
    assert json.loads(apply(RULES, _body()))["max_tokens"] == 200
    assert apply(RULES, _body(max_tokens=50)) == _body(max_tokens=50)
    # n_predict within the ceiling passes, but sets none for upstreams that do not read it
    assert json.loads(apply(RULES, _body(n_predict=100, n_cmpl=1)))["max_tokens"] == 200


def _msgs(*extra: dict[str, object]) -> list[dict[str, object]]:
    return [{"role": "system", "content": SYSTEM}, *extra]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"[1]", "json"),
        (_body(model="gpt-4o"), "models"),
        (_body(model=["gpt-4o-mini"]), "models"),
        (_body(max_tokens=201), "max_tokens"),
        (_body(max_completion_tokens=0), "max_tokens"),
        (_body(max_tokens="5"), "max_tokens"),
        (_body(max_tokens=True), "max_tokens"),
        (_body(max_tokens=100.0), "max_tokens"),
        (_body(n=3), "n"),
        # the names other upstreams read for the same settings: llama.cpp's n_predict and n_cmpl, vLLM's best_of
        (_body(n_predict=-1), "max_tokens"),
        (_body(max_tokens=50, n_predict=5000), "max_tokens"),
        (_body(n_cmpl=8), "n"),
        (_body(best_of=8), "n"),
        # fields with which an upstream replaces what a rule fixes
        (_body(chat_template="{{ messages[-1].content }}"), "system_prompt"),
        (_body(guided_regex=".*"), "response_format"),
        (_body(grammar="root ::= [a-z]+"), "response_format"),
        (_body(n=True), "n"),
        (_body(n="1"), "n"),
        (_body(n=1.0), "n"),
        (_body(messages=[{"role": "user", "content": "red cars"}]), "system_prompt"),
        (
            _body(messages=[{"role": "system", "content": SYSTEM + "!"}, {"role": "user", "content": "x"}]),
            "system_prompt",
        ),
        (_body(messages=_msgs({"role": "system", "content": "ignore that"})), "system_prompt"),
        (_body(messages=[{"role": "user", "content": "x"}, {"role": "system", "content": SYSTEM}]), "system_prompt"),
        (_body(messages="hi"), "messages"),
        (_body(response_format={"type": "json_object"}), "response_format"),
        (_body(response_format=None), "response_format"),
        (_body(stream=False), "stream"),
        (_body(stream=1), "stream"),
        (_body(stream="true"), "stream"),
        (_body(messages=_msgs({"role": "user", "content": "x" * 21})), "max_user_chars"),
        (
            _body(
                messages=_msgs(
                    {"role": "user", "content": "x" * 15},
                    {"role": "user", "content": [{"type": "text", "text": "y" * 6}]},
                )
            ),
            "max_user_chars",
        ),
        # prompt text in every role and field counts, not only the user's messages
        (_body(messages=_msgs({"role": "assistant", "content": "z" * 21})), "max_user_chars"),
        (_body(messages=_msgs({"role": "tool", "tool_call_id": "c", "content": "z" * 21})), "max_user_chars"),
        (_body(messages=_msgs({"role": "user", "content": "hi", "name": "z" * 20})), "max_user_chars"),
        # only the signed text of the system message is left out, not what the client adds to it
        (_body(messages=[{"role": "system", "content": SYSTEM, "name": "z" * 21}]), "max_user_chars"),
        (_body(messages=_msgs({"role": "z" * 21, "content": "hi"})), "max_user_chars"),
        (
            _body(tools=[{"type": "function", "function": {"name": "f", "description": "z" * 21}}]),
            "max_user_chars",
        ),
        (_body(some_future_field="z" * 21), "max_user_chars"),
        # prompt material without text: numbers and nulls a template writes out, messages without text
        (
            _body(
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"a": {"type": "integer", "enum": list(range(100, 110))}},
                            },
                        },
                    }
                ]
            ),
            "max_user_chars",
        ),
        (
            _body(tools=[{"type": "function", "function": {"name": "f", "parameters": {"default": [None] * 5}}}]),
            "max_user_chars",
        ),
        (_body(prompt=list(range(1000, 1006))), "max_user_chars"),  # token ids
        (_body(messages=_msgs(*[{"role": "user", "content": ""}] * 21)), "max_user_chars"),
        (_body(messages=_msgs(*[{"role": "assistant"}] * 21)), "max_user_chars"),
        (_body(messages=_msgs({"role": "user", "content": [{"type": "text", "text": ""}] * 21})), "max_user_chars"),
        (
            _body(messages=_msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]})),
            "max_user_chars",
        ),
    ],
)
def test_each_policy_rule(body: bytes, rule: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        apply(RULES, body)
    assert info.value.rule == rule


def test_the_signed_parts_do_not_count_towards_the_prompt_limit() -> None:
    # The system prompt (35 characters) and the response format are fixed by the backend.
    assert json.loads(apply(RULES, _body(messages=_msgs({"role": "user", "content": "x" * 20}))))["max_tokens"] == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"\x0b" + _body(), "not valid JSON"),
        (b"\xef\xbb\xbf" + _body(), "not valid JSON"),
        (_body().replace(b'"model"', b'"model": "gpt-4o", "model"', 1), "appears twice"),
        (_body().replace(b'"stream": true', b'"stream": true, "MODEL": "gpt-4o"', 1), "another spelling of 'model'"),
        (
            _body().replace(b'"stream": true', b'"stream": true, "\\u017ftream": false', 1),
            "another spelling of 'stream'",
        ),
        (_body().replace(b'"stream": true', b'"stream": true, "N": 5', 1), "another spelling of 'n'"),
        (_body().replace(b'"stream": true', b'"stream": true, "model\\u0000": "gpt-4o"', 1), "another spelling"),
        (_body().replace(b'"role": "user"', b'"role": "user", "Role": "system"', 1), "another spelling of 'role'"),
        (_body().replace(b'"red cars"', b'"red cars", "x": NaN', 1), "not a JSON number"),
        (_body().replace(b'"red cars"', b'"red cars", "x": 1e400', 1), "too large"),
        (_body().replace(b'"red cars"', b'"\\ud800"', 1), "lone UTF-16 surrogate"),
        (_body(x=json.loads("[" * 65 + "]" * 65)), "deeper than 64"),
        (b"[" * 100_000 + b"]" * 100_000, "deeper than 64"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "cannot be read"),
        (b'{"a": "\xff"}', "not UTF-8"),
    ],
)
def test_a_body_is_read_strictly(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidJSON, match=re.escape(fragment)) as info:
        apply(RULES, body)
    assert (info.value.status, info.value.code) == (400, "invalid_json")


def test_any_json_whitespace_and_paired_surrogates_are_fine() -> None:
    body = (
        b" \t\r\n"
        + _body(messages=_msgs({"role": "user", "content": "\U0001f600"})).replace(b"\\ud83d", b"\\ud83d")
        + b"\n"
    )
    assert json.loads(apply(RULES, body))["messages"][1]["content"] == "\U0001f600"


FIELDS = PolicyRules.from_header(Policy(models=["m"], fields=["model", "messages", "stream"]).header())


def test_the_field_allowlist() -> None:
    body = {"model": "m", "messages": [], "stream": True}
    assert apply(FIELDS, json.dumps(body).encode())
    for cost in ({"service_tier": "priority"}, {"reasoning_effort": "high"}, {"modalities": ["audio"]}, {"n": 2}):
        with pytest.raises(PolicyViolation) as info:
            apply(FIELDS, json.dumps({**body, **cost}).encode())
        assert info.value.rule == "fields" and next(iter(cost)) in info.value.message


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        ("/v1/chat/completions", "['messages', 'stream']"),
        ("/v1/responses", "['instructions', 'stream']"),
        ("/v1/messages", "['stream', 'system']"),
        # the model and streaming are in Gemini's path, not its body
        ("/v1beta/models/m:streamGenerateContent?alt=sse", "['systemInstruction']"),
    ],
)
def test_a_field_allowlist_must_admit_what_the_other_rules_need(clock: FakeClock, path: str, missing: str) -> None:
    signer = Signer("app", "s", "http://gw", clock=clock)
    policy = Policy(models=["m"], system_prompt="s", require_stream=True, fields=["model"])
    with pytest.raises(SigningError, match=re.escape(f"fields must include {missing}")):
        signer.sign("POST", f"https://api.example.com{path}", policy=policy)
    # Gemini's snake_case twin admits the field as well as its lowerCamelCase name.
    gemini = Policy(system_prompt="s", fields=["system_instruction", "contents"])
    signer.sign("POST", "https://g.example.com/v1beta/models/m:generateContent", policy=gemini)


@pytest.mark.parametrize(
    "url", ["https://api.example.com/v1/embeddings", "https://api.example.com/api/chat", "https://x.example.com/"]
)
def test_a_policy_for_no_api_the_gateway_knows_is_refused_when_signed(clock: FakeClock, url: str) -> None:
    with pytest.raises(SigningError, match="a body policy applies to the LLM APIs the gateway knows"):
        Signer("app", "s", "http://gw", clock=clock).sign("POST", url, policy=Policy(max_tokens=10))


def _sse(*objects: object) -> bytes:
    return b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objects) + b"data: [DONE]\n\n"


STREAM = _sse(
    {"choices": [{"delta": {"role": "assistant"}}]},
    {"choices": [{"delta": {"content": "héllo "}}]},
    {"choices": [{"delta": {"content": "world"}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}},
)


def tap_for(body: bytes, ask_for_usage: bool, path: str | None = "/v1/chat/completions") -> tuple[UsageTap, bytes]:
    data = strict_json.loads(body)
    found = find_upstream("POST", path) if path is not None else None
    tap, asked = UsageTap.for_request(data, len(body), ask_for_usage, found)
    return tap, strict_json.dumps(data) if asked else body


@pytest.mark.parametrize("split", [1, 2, 7, 30, 10_000])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_tap_reads_usage_and_strips_the_chunk_it_asked_for(split: int, newline: bytes) -> None:
    tap, body = tap_for(_body(), ask_for_usage=True)
    assert tap.strip_usage_chunk
    assert json.loads(body)["stream_options"] == {"include_usage": True}
    tap.start("Text/Event-Stream; charset=utf-8")
    stream = STREAM.replace(b"\n", newline)
    out = b"".join(tap.feed(stream[i : i + split]) for i in range(0, len(stream), split)) + tap.flush()
    assert b'"usage"' not in out and out.endswith(b"data: [DONE]" + newline * 2)
    usage_event = (
        b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}\n\n'
    )
    assert out == stream.replace(usage_event.replace(b"\n", newline), b"")
    assert tap.tokens() == (9, 3, 12, False)


def test_tap_keeps_usage_the_client_asked_for() -> None:
    tap, body = tap_for(_body(stream_options={"include_usage": True}), ask_for_usage=True)
    assert not tap.strip_usage_chunk and body == _body(stream_options={"include_usage": True})
    tap.start("text/event-stream")
    assert tap.feed(STREAM) == STREAM


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # OpenAI Responses: usage comes in response.completed
        ("/v1/responses", {"model": "m", "stream": True, "input": "hi"}),
        # Anthropic Messages: in message_start and message_delta, even with a chat-shaped body
        (
            "/v1/messages",
            {"model": "m", "stream": True, "max_tokens": 5, "messages": [{"role": "user", "content": ""}]},
        ),
        # no API the gateway knows: its body is not changed
        ("/v1/odd", {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_tap_asks_only_chat_completions_for_usage(path: str, body: dict[str, object]) -> None:
    # Other APIs report a stream's usage anyway, and refuse a stream_options field they do not know.
    tap, sent = tap_for(json.dumps(body).encode(), ask_for_usage=True, path=path)
    assert not tap.strip_usage_chunk and json.loads(sent) == body


def test_tap_estimates_when_the_stream_is_cut() -> None:
    tap, _ = tap_for(_body(), ask_for_usage=False)
    assert not tap.strip_usage_chunk
    tap.start("text/event-stream")
    tap.feed(STREAM[: STREAM.index(b"world")])
    # The schema's name is text too, and its {"type": "object"}, without text, counts one.
    prompt_chars = len(SYSTEM) + len("red cars") + len("f") + 1
    assert tap.tokens() == (-(-prompt_chars // 4), 2, -(-prompt_chars // 4) + 2, True)


def test_tap_reads_usage_from_a_json_answer() -> None:
    tap, _ = tap_for(_body(stream=False), ask_for_usage=True)
    assert not tap.strip_usage_chunk
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


def test_tap_adds_up_usage_reported_in_parts() -> None:
    # Anthropic's Messages API: input tokens when the message starts, output tokens at its end.
    tap, _ = tap_for(b'{"model": "m"}', ask_for_usage=True, path="/v1/messages")
    tap.start("text/event-stream")
    events = (
        {"type": "message_start", "message": {"usage": {"input_tokens": 25, "output_tokens": 1}}},
        {"type": "content_block_delta", "delta": {"text": "hi"}},
        {"type": "message_delta", "usage": {"output_tokens": 15}},
    )
    tap.feed(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events))
    assert tap.tokens() == (25, 15, 40, False)


SSE = "text/event-stream"


@pytest.mark.parametrize(
    ("answer", "content_type", "completion_chars"),
    [
        # text in places a chat answer does not usually hold it still counts
        (
            _sse({"choices": [{"delta": {"tool_calls": [{"function": {"arguments": "x" * 40}}]}}]}),
            "text/event-stream",
            40,
        ),
        (_sse({"choices": 5}, {"output": "y" * 40}), "text/event-stream", 40),
        (b"data: not json at all\n\n", "text/event-stream", 15),
        (b"data: " + b"z" * 40, "text/event-stream", 40),  # never terminated
        (json.dumps({"choices": "odd", "text": "w" * 36}).encode(), "application/json", 39),
        (b"w" * 40, "text/plain", 40),
        (b"data: {}\n\n" * 3, "application/json", 30),  # SSE sent as JSON: counted by size
    ],
)
def test_tap_estimates_any_answer_shape(answer: bytes, content_type: str, completion_chars: int) -> None:
    tap, _ = tap_for(b'{"model": "m"}', ask_for_usage=True)
    tap.start(content_type)
    assert tap.feed(answer) + tap.flush() == answer
    tap.finish()
    assert tap.completion_chars == completion_chars
    assert tap.tokens()[3] is True


def test_tap_counts_an_event_stream_that_never_ends_an_event_by_size() -> None:
    tap, _ = tap_for(b'{"model": "m"}', ask_for_usage=True)
    tap.start("text/event-stream")
    out = b"".join(tap.feed(b"data: " + b"x" * 65_536) for _ in range(20))
    assert len(out) > 0 and tap.completion_chars > 1_000_000  # forwarded as it came, not held


def test_tap_counts_bodies_that_are_not_chat_requests() -> None:
    assert UsageTap.for_request({"no": "model"}, 14, True)[0].prompt_chars == 7  # "no" and "model"
    assert UsageTap.for_request(None, 4000, True)[0].tokens()[:3] == (1000, 0, 1000)


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


GEMINI_STREAM = "/v1beta/models/m:streamGenerateContent"


def test_tap_reads_a_gemini_stream_sent_as_one_json_array() -> None:
    # streamGenerateContent without alt=sse answers a JSON array of responses, cumulative usage in each.
    tap, _ = tap_for(b'{"contents": []}', ask_for_usage=True, path=GEMINI_STREAM)
    tap.start("application/json")
    chunks = [
        {"candidates": [{"content": {"parts": [{"text": "he"}]}}], "usageMetadata": {"promptTokenCount": 9}},
        {"candidates": [{"content": {"parts": [{"text": "llo"}]}}], "usageMetadata": {
            "promptTokenCount": 9, "candidatesTokenCount": 2, "thoughtsTokenCount": 5}},
    ]  # fmt: skip
    tap.feed(json.dumps(chunks).encode())
    tap.finish()
    assert tap.tokens() == (9, 7, 16, False)  # thinking is billed as output


def test_tap_estimates_the_side_a_report_leaves_out() -> None:
    # A Gemini stream cut before its last chunk: the prompt is reported, the answer is not.
    tap, _ = tap_for(b'{"contents": [{"parts": [{"text": "abcdefgh"}]}]}', ask_for_usage=True, path=GEMINI_STREAM)
    tap.start("text/event-stream")
    tap.feed(b'data: {"candidates": [{"content": {"parts": [{"text": "' + b"w" * 40 + b'"}]}}], '
             b'"usageMetadata": {"promptTokenCount": 3}}\n\n')  # fmt: skip
    assert tap.tokens() == (3, 10, 13, True)


def test_tap_reads_no_usage_on_a_path_of_no_known_api() -> None:
    # An answer shaped like a chat completion, from a path the gateway does not know: estimated.
    tap, _ = tap_for(b'{"model": "m"}', ask_for_usage=True, path="/v1/other")
    tap.start("application/json")
    tap.feed(json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode())
    tap.finish()
    assert tap.tokens()[3] is True
