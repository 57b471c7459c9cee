"""The strict JSON reading every control shares, and the controls fed any JSON at all: they refuse
with their own errors, never with an exception the gateway did not expect."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from signgate import Policy, strict_json
from signgate.errors import InvalidJSON
from signgate.extensions import PolicyRules
from signgate.gateway.policy import PolicyViolation, enforce
from signgate.gateway.usage import UsageTap
from signgate.providers import find_upstream

# Keys the four APIs' requests and answers use, their other spellings, and anything else.
KEYS = st.sampled_from(
    ["model", "messages", "role", "content", "type", "text", "n", "stream", "stream_options", "include_usage",
     "max_tokens", "max_completion_tokens", "tools", "function", "description", "response_format", "usage",
     "choices", "delta", "MODEL", "Model", "\u017ftream", "n\u0000", " role", "ROLE",
     "input", "instructions", "max_output_tokens", "format", "system", "thinking", "budget_tokens", "output_config",
     "output_format", "tool_choice", "contents", "parts", "systemInstruction", "system_instruction",
     "generationConfig", "generation_config", "maxOutputTokens", "max_output_tokens", "candidateCount",
     "thinkingConfig", "thinkingBudget", "responseJsonSchema", "toolConfig", "usageMetadata", "promptTokenCount",
     "candidatesTokenCount", "response", "message", "input_tokens", "output_tokens", "functionCall"]
) | st.text(max_size=8)  # fmt: skip
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=30
)
RULES = [
    PolicyRules.from_header(Policy(models=["m"], max_tokens=50, require_stream=True).header()),
    PolicyRules.from_header(Policy(system_prompt="s", max_user_chars=30, response_format={"type": "x"}).header()),
    PolicyRules.from_header(Policy(models=["m"], fields=["model", "messages"]).header()),
    PolicyRules.from_header(Policy(tools=[], tool_choice="auto", fields=["generationConfig.x", "input"]).header()),
]
#: Each API's path, and one the gateway does not know.
PATHS = [
    "/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1beta/models/m:streamGenerateContent?alt=sse", "/v1/x",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(value=VALUES)
def test_policies_and_accounting_take_any_json(value: Any) -> None:
    raw = json.dumps(value).encode()
    for path in PATHS:
        found = find_upstream("POST", path)
        for rules in RULES:
            data = strict_json.loads(raw)
            try:
                enforce(rules, data, found)
            except (PolicyViolation, InvalidJSON):
                continue
            strict_json.dumps(data)  # a body a policy passed can always be written back
        data = strict_json.loads(raw)
        try:
            tap, _ = UsageTap.for_request(data, len(raw), True, found)
        except InvalidJSON:  # a stream flag that is not a boolean
            assert isinstance(data, dict) and not (data["stream"] is None or type(data["stream"]) is bool)
            continue
        strict_json.dumps(data)
        tap.start("text/event-stream")
        tap.feed(b"data: " + raw + b"\n\n")
        tap.flush()
        tap.start("application/json")
        tap.feed(raw)
        tap.finish()
        prompt, completion, total, _ = tap.tokens()
        assert min(prompt, completion, total) >= 0


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_read_or_refused_with_invalid_json(raw: bytes) -> None:
    try:
        strict_json.dumps(strict_json.loads(raw))
    except InvalidJSON as exc:
        assert exc.code == "invalid_json" and exc.status == 400


@settings(max_examples=300, deadline=None)
@given(value=VALUES)
def test_what_strict_reading_accepts_reads_the_same_everywhere(value: Any) -> None:
    # The lenient reading agrees with the strict one wherever the strict one accepts.
    raw = json.dumps(value)
    assert strict_json.loads(raw) == json.loads(raw)


def test_depth_is_bounded_by_a_walk_only_when_brackets_could_reach_it() -> None:
    assert strict_json.loads("[" * 64 + "]" * 64) is not None
    assert strict_json.loads('{"a": "' + "[" * 100 + '"}') == {"a": "[" * 100}
