"""The provider modules' pure functions: routes, request readers, usage readers.

The gateway will feed these readers from its own JSON reader, so they are tested here on
parsed JSON alone, including the shapes an attacker would try: a field in two spellings, a
key in two places, a tool choice naming a tool that is not there.
"""

from __future__ import annotations

from typing import Any

import pytest

from signgate import providers
from signgate.providers import PROVIDERS, ProviderError, Route, RouteError, Usage, anthropic, chat, gemini, responses
from signgate.providers.base import Request, Tool, ToolChoice, Turn
from signgate.standin.answers import choose_tool, respond

SCHEMA = {"type": "object", "properties": {"body": {"type": "string", "enum": ["sedan", "suv"]}}}


def test_every_provider_has_a_distinct_name_and_key_header() -> None:
    assert [p.name for p in PROVIDERS] == ["chat", "responses", "anthropic", "gemini"]
    assert providers.by_name("gemini") is gemini
    with pytest.raises(ValueError, match="chat, responses, anthropic, gemini"):
        providers.by_name("bard")
    assert {p.name: p.auth_header("k") for p in PROVIDERS} == {
        "chat": ("authorization", "Bearer k"),
        "responses": ("authorization", "Bearer k"),
        "anthropic": ("x-api-key", "k"),
        "gemini": ("x-goog-api-key", "k"),
    }
    for provider in PROVIDERS:
        assert provider.auth_header("k")[0] in provider.key_headers


@pytest.mark.parametrize(
    ("method", "path", "query", "provider", "route"),
    [
        ("POST", "/v1/chat/completions", {}, chat, Route("generate")),
        ("POST", "/v1/chat/completions/", {}, chat, Route("generate")),
        ("GET", "/v1/models", {}, chat, Route("models", methods=("GET",))),
        ("POST", "/v1/responses", {}, responses, Route("generate")),
        ("POST", "/v1/messages", {}, anthropic, Route("generate")),
        (
            "POST",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {},
            gemini,
            Route("generate", model="gemini-2.5-flash", stream=False),
        ),
        (
            "POST",
            "/v1/models/m:streamGenerateContent",
            {"alt": ["sse"]},
            gemini,
            Route("generate", model="m", stream=True),
        ),
        ("GET", "/v1beta/models", {}, gemini, Route("models", methods=("GET",))),
    ],
)
def test_find_picks_the_provider_from_method_and_path(
    method: str, path: str, query: dict[str, list[str]], provider: providers.Provider, route: Route
) -> None:
    assert providers.find(method, path, query) == (provider, route)


@pytest.mark.parametrize(
    ("method", "path", "query", "status", "shape"),
    [
        ("GET", "/v1/chat/completions", {}, 405, chat),
        ("POST", "/v1/embeddings", {}, 404, chat),
        ("POST", "/v1/models/m", {}, 404, chat),
        ("POST", "/v1beta/models/m:embedContent", {}, 404, gemini),
        ("POST", "/v1beta/cachedContents", {}, 404, gemini),
        ("POST", "/v1beta/models/m:streamGenerateContent", {}, 400, gemini),
        ("POST", "/v1beta/models/m:streamGenerateContent", {"alt": ["sse", "sse"]}, 400, gemini),
        ("GET", "/v1/messages", {}, 405, anthropic),
    ],
)
def test_find_refuses_in_the_shape_of_the_namespace(
    method: str, path: str, query: dict[str, list[str]], status: int, shape: providers.Provider
) -> None:
    with pytest.raises(RouteError) as caught:
        providers.find(method, path, query)
    assert (caught.value.status, caught.value.provider) == (status, shape)


# --- readers ---------------------------------------------------------------------------------


def test_chat_reader_normalises_messages_tools_and_caps() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "JSON only."}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "content": "done"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": SCHEMA}},
            {"type": "custom", "custom": {}},
        ],
        "max_tokens": 50,
        "max_completion_tokens": 20,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = chat.read_request(body, Route("generate"))
    assert request.system == ("Be terse.", "JSON only.")
    assert request.turns == (Turn("user", "a b"), Turn("assistant", "{}"), Turn("tool", "done"))
    assert request.last_user_text == "a b"
    assert [t.name for t in request.tools] == ["f"]
    assert request.tool_choice == ToolChoice("auto")
    assert (request.max_output_tokens, request.stream, request.stream_usage) == (20, True, True)
    assert request.prompt_texts() == ("Be terse.", "JSON only.", "a b", "{}", "done")


def test_responses_reader_reads_input_items() -> None:
    body = {
        "model": "m",
        "instructions": "Extract.",
        "input": [
            {"role": "developer", "content": "Terse."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "an suv"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"body": "suv"}'},
            {"type": "function_call_output", "call_id": "c", "output": "3 cars"},
            {"type": "reasoning", "summary": []},
        ],
        "text": {"format": {"type": "json_schema", "name": "f", "schema": SCHEMA}},
        "tools": [{"type": "function", "name": "f", "parameters": SCHEMA}, {"type": "web_search"}],
        "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]},
        "max_output_tokens": 100,
    }
    request = responses.read_request(body, Route("generate"))
    assert request.system == ("Extract.", "Terse.")
    assert request.turns == (Turn("user", "an suv"), Turn("assistant", '{"body": "suv"}'), Turn("tool", "3 cars"))
    assert (request.output.kind, request.output.schema) == ("json_schema", SCHEMA)
    assert request.tool_choice == ToolChoice("required", ("f",)) and request.tool_choice.forced == "f"
    assert request.max_output_tokens == 100


def test_anthropic_reader_reads_blocks_and_both_format_fields() -> None:
    body = {
        "model": "c",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Extract."}],
        "messages": [
            {"role": "user", "content": "a sedan"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"body": "sedan"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "none left"}]},
            {"role": "user", "content": [{"type": "text", "text": "an suv then"}]},
        ],
        "tools": [{"name": "f", "input_schema": SCHEMA}, {"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "any"},
        "output_format": {"type": "json_schema", "schema": SCHEMA},
    }
    request = anthropic.read_request(body, Route("generate"))
    assert request.system == ("Extract.",)
    assert request.turns == (
        Turn("user", "a sedan"),
        Turn("assistant", '{"body": "sedan"}'),
        Turn("tool", "none left"),
        Turn("user", "an suv then"),
    )
    assert [t.name for t in request.tools] == ["f"] and request.tool_choice == ToolChoice("required")
    assert request.output.schema == SCHEMA and request.max_output_tokens == 64


def test_gemini_reader_takes_both_spellings_and_converts_the_schema_dialect() -> None:
    body = {
        "system_instruction": {"parts": [{"text": "Extract."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "an"}, {"text": "suv"}]},
            {"role": "model", "parts": [{"function_call": {"name": "f", "args": {"body": "suv"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"n": 2}}}]},
        ],
        "generationConfig": {
            "max_output_tokens": 30,
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {"body": {"type": "STRING", "enum": ["sedan", "suv"], "nullable": True}},
                "property_ordering": ["body"],
                "any_of": None,
            },
        },
    }
    request = gemini.read_request(body, Route("generate", model="g", stream=True))
    assert (request.model, request.stream, request.max_output_tokens) == ("g", True, 30)
    assert request.system == ("Extract.",)
    assert request.turns == (Turn("user", "an suv"), Turn("assistant", '{"body": "suv"}'), Turn("tool", '{"n": 2}'))
    assert request.output.schema == {
        "type": "object",
        "properties": {"body": {"type": ["string", "null"], "enum": ["sedan", "suv", None]}},
        "anyOf": None,
    }


def test_gemini_function_calling_config() -> None:
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "tools": [
            {"functionDeclarations": [{"name": "a", "parameters": {"type": "OBJECT"}}, {"name": "b"}]},
            {"googleSearch": {}},
        ],
        "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["b"]}},
    }
    request = gemini.read_request(body, Route("generate", model="g"))
    assert [t.name for t in request.tools] == ["a", "b"]
    assert request.tools[0].parameters == {"type": "object"}
    assert request.tool_choice == ToolChoice("required", ("b",))


def test_gemini_schema_conversion_is_bounded_in_depth() -> None:
    node: dict[str, Any] = {"type": "STRING"}
    for _ in range(200):
        node = {"type": "ARRAY", "items": node}
    converted = gemini.json_schema(node)
    depth = 0
    while "items" in converted:
        converted, depth = converted["items"], depth + 1
    assert depth == 200 and converted["type"] == "STRING"  # converted to the bound, kept as given beyond


CHAT_BASE: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
TOOL = {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize(
    ("provider", "body", "param"),
    [
        (chat, {**CHAT_BASE, "tool_choice": "auto"}, "tool_choice"),
        (
            chat,
            {**CHAT_BASE, "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "tool_choice",
        ),
        (chat, {**CHAT_BASE, "tools": [TOOL, TOOL]}, "tools"),
        (chat, {**CHAT_BASE, "tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
        (chat, {**CHAT_BASE, "max_tokens": 0}, "max_tokens"),
        (chat, {**CHAT_BASE, "max_tokens": True}, "max_tokens"),
        (
            chat,
            {**CHAT_BASE, "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        (responses, {"model": "m", "input": "x", "max_output_tokens": 15}, "max_output_tokens"),
        (responses, {"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            responses,
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "f"}}},
            "text.format.schema",
        ),
        (responses, {"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        (anthropic, {"model": "c", "max_tokens": 5, "messages": []}, "messages"),
        (
            anthropic,
            {"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role",
        ),
        (
            anthropic,
            {
                "model": "c",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "output_config": {"format": {"type": "json_schema"}},
            },
            "output_config.format.schema",
        ),
        (
            anthropic,
            {
                "model": "c",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "any"},
            },
            "tool_choice",
        ),
        (
            anthropic,
            {
                "model": "c",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "output_format": {"type": "json_schema", "schema": {}},
                "output_config": {"format": {"type": "json_schema", "schema": {}}},
            },
            "output_format",
        ),
        (gemini, {"contents": []}, "contents"),
        (
            gemini,
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "systemInstruction": {"parts": []},
                "system_instruction": {"parts": []},
            },
            "systemInstruction",
        ),
        (
            gemini,
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseMimeType": "text/x.enum"}},
            "generationConfig.responseMimeType",
        ),
        (
            gemini,
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}},
            "generationConfig.candidateCount",
        ),
        (
            gemini,
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": []}},
            },
            "toolConfig.functionCallingConfig.allowedFunctionNames",
        ),
    ],
)
def test_readers_refuse_with_the_field_named(provider: providers.Provider, body: dict[str, Any], param: str) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.read_request(body, Route("generate", model="g"))
    assert caught.value.status == 400
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("provider", "headers", "query", "key"),
    [
        (chat, {"authorization": "Bearer sk-1"}, {}, "sk-1"),
        (chat, {"authorization": "bearer  sk-1 "}, {}, "sk-1"),
        (chat, {"authorization": "Bearer sk-1, Bearer sk-2"}, {}, None),  # a repeated header, joined
        (chat, {"authorization": "Basic sk-1"}, {}, None),
        (chat, {}, {}, None),
        (anthropic, {"x-api-key": "sk-1"}, {}, "sk-1"),
        (anthropic, {"authorization": "Bearer sk-1"}, {}, "sk-1"),
        (anthropic, {"x-api-key": "sk-1", "authorization": "Bearer sk-1"}, {}, None),
        (gemini, {"x-goog-api-key": "sk-1"}, {}, "sk-1"),
        (gemini, {"x-goog-api-key": "sk-1"}, {"key": ["sk-1"]}, None),
        (gemini, {}, {"key": ["sk-1"]}, None),
    ],
)
def test_api_key_is_found_in_one_place_only(
    provider: providers.Provider, headers: dict[str, str], query: dict[str, list[str]], key: str | None
) -> None:
    if key is not None:
        assert provider.api_key(headers, query) == key
        return
    with pytest.raises(ProviderError) as caught:
        provider.api_key(headers, query)
    assert caught.value.status == 401
    assert "sk-1" not in caught.value.message


def test_a_value_too_deep_to_write_back_is_a_400() -> None:
    """A tool call's input becomes the turn's text; one nested past the recursion limit (which
    another JSON reader than Python's may well produce) must be refused, not crash the reader."""
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    block = {"type": "tool_use", "id": "t", "name": "f", "input": {"a": deep}}
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "assistant", "content": [block]}]}
    with pytest.raises(ProviderError) as caught:
        anthropic.read_request(body, Route("generate"))
    assert (caught.value.status, caught.value.param) == (400, "messages.0.content.0.input")
    part = {"functionCall": {"name": "f", "args": {"a": deep}}}
    with pytest.raises(ProviderError, match="nested too deeply"):
        gemini.read_request({"contents": [{"role": "model", "parts": [part]}]}, Route("generate", model="g"))


def test_anthropic_needs_its_version_header() -> None:
    anthropic.check_headers({"anthropic-version": "2023-06-01"})
    with pytest.raises(ProviderError, match="anthropic-version"):
        anthropic.check_headers({})


# --- errors ----------------------------------------------------------------------------------


def test_error_bodies_are_each_apis_own() -> None:
    error = ProviderError("Bad.", status=400, param="messages", code="invalid_value")
    assert chat.error(error) == {
        "error": {"message": "Bad.", "type": "invalid_request_error", "param": "messages", "code": "invalid_value"}
    }
    assert anthropic.error(error) == {"type": "error", "error": {"type": "invalid_request_error", "message": "Bad."}}
    assert anthropic.error(ProviderError("No.", status=401))["error"]["type"] == "authentication_error"
    assert gemini.error(error)["error"] == {
        "code": 400,
        "message": "Bad.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "messages", "description": "Bad."}],
            }
        ],
    }
    assert gemini.error(ProviderError("No.", status=404))["error"]["status"] == "NOT_FOUND"


# --- usage -----------------------------------------------------------------------------------


def test_usage_folds_later_counts_over_earlier() -> None:
    assert Usage(10, 1).then(Usage(None, 7)) == Usage(10, 7)
    assert Usage(10, 1).then(None) == Usage(10, 1)
    assert Usage(10, 7).total_tokens == 17 and Usage(10).total_tokens is None


@pytest.mark.parametrize(
    ("provider", "events", "usage"),
    [
        (
            chat,
            [{"choices": [], "usage": None}, {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}],
            Usage(9, 4),
        ),
        (
            responses,
            [
                {"type": "response.created", "response": {"usage": None}},
                {"type": "response.completed", "response": {"usage": {"input_tokens": 9, "output_tokens": 4}}},
            ],
            Usage(9, 4),
        ),
        (
            anthropic,
            [
                {
                    "type": "message_start",
                    "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1}},
                },
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}},
                {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 12}},
            ],
            Usage(105, 12),
        ),
        (
            gemini,
            [
                {"usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}},
                {"usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 3, "thoughtsTokenCount": 20}},
            ],
            Usage(8, 23),
        ),
        (chat, [{"usage": {"prompt_tokens": -1, "completion_tokens": True}}], Usage()),
        (gemini, [{"usageMetadata": {"promptTokenCount": 1}, "usage_metadata": {"promptTokenCount": 9}}], Usage()),
        (anthropic, ["not an object", {"type": "ping"}], Usage()),
    ],
    ids=["chat", "responses", "anthropic", "gemini", "bad-counts", "two-spellings", "no-usage"],
)
def test_event_usage(provider: providers.Provider, events: list[Any], usage: Usage) -> None:
    folded = Usage()
    for event in events:
        folded = folded.then(provider.event_usage(event))
    assert folded == usage


# --- the stand-in's tool-call rule -----------------------------------------------------------


def request_with(text: str, choice: ToolChoice, *names: str) -> Request:
    tools = tuple(Tool(n, parameters=SCHEMA if n != "empty" else {}) for n in names)
    return Request("m", turns=(Turn("user", text),), tools=tools, tool_choice=choice)


@pytest.mark.parametrize(
    ("text", "choice", "names", "called"),
    [
        ("an suv", ToolChoice("auto"), ("empty", "f"), "f"),
        ("hello", ToolChoice("auto"), ("f",), None),
        ("hello", ToolChoice("required"), ("empty", "f"), "empty"),
        ("an suv", ToolChoice("required", ("empty",)), ("f", "empty"), "empty"),
        ("an suv", ToolChoice("auto", ("g",)), ("f", "g"), "g"),
        ("an suv", ToolChoice("none"), ("f",), None),
    ],
)
def test_tool_call_rule(text: str, choice: ToolChoice, names: tuple[str, ...], called: str | None) -> None:
    request = request_with(text, choice, *names)
    tool = choose_tool(request)
    assert (tool.name if tool else None) == called
    reply = respond(request)
    assert (reply.tool_call.name if reply.tool_call else None) == called
