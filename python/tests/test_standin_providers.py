"""The stand-in speaks four LLM APIs: a real stand-in process, the official clients as callers.

Each API's answers, streamed and not, text and tool call, must parse in ``openai`` (Chat
Completions and Responses), ``anthropic`` and ``google-genai`` into their typed objects. The
clients build their objects leniently, so the raw wire JSON is also validated strictly against
the same clients' pydantic types: a missing required field fails here before it fails a user.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anthropic
import jsonschema
import openai
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent, TextBlock, ToolUseBlock
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall
from openai.types.responses import Response, ResponseFunctionToolCall, ResponseStreamEvent

from signgate import providers
from signgate.providers import Usage
from signgate.standin import PLAIN_ANSWER, extract

KEY = "sk-standin-providers-7a1e"  # not a real key; tests check it is never echoed
CAR_SCHEMA = json.loads((Path(__file__).parent / "standin_car_schema.json").read_text())
QUERY = "AWD crossover under $28k with less than 60k miles"
EXPECTED = extract(CAR_SCHEMA, QUERY)
ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
DEEP: list[Any] = []
for _ in range(150):  # past the stand-in's bound of 100 levels, far short of the parser's limit
    DEEP = [DEEP]


class CarFilters(pydantic.BaseModel):
    """A schema as users write it: pydantic, nullable fields, the stand-in's description conventions."""

    body: Literal["sedan", "suv", "pickup"] | None = pydantic.Field(
        None, description="Body style. Synonyms: crossover = suv; truck = pickup."
    )
    price_max: int | None = pydantic.Field(None, ge=0, description="Highest price in US dollars. Keywords: price.")


@dataclass
class Standin:
    url: str

    def openai(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=20)

    def anthropic(self, key: str = KEY) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=20)

    def genai(self, key: str = KEY) -> genai.Client:
        options = genai_types.HttpOptions(base_url=self.url, timeout=20_000, retry_options=None)
        return genai.Client(api_key=key, http_options=options)

    def post(self, path: str, body: object, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, content type, body) of a raw POST."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, headers={"content-type": "application/json", **headers}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.headers["content-type"], response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers["content-type"], exc.read()

    def events(self, path: str, body: object, headers: dict[str, str]) -> list[tuple[str | None, Any]]:
        """The (event name, data) pairs of a raw SSE answer; data is parsed JSON or a literal."""
        status, kind, raw = self.post(path, body, headers)
        assert (status, kind.split(";")[0]) == (200, "text/event-stream"), raw[:300]
        events = []
        for block in raw.decode().split("\n\n"):
            if not block:
                continue
            name, data = None, None
            for line in block.split("\n"):
                field, _, value = line.partition(": ")
                if field == "event":
                    name = value
                elif field == "data":
                    data = value
            assert data is not None, block
            events.append((name, data if data == "[DONE]" else json.loads(data)))
        return events


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "STANDIN_PROVIDERS_KEY": KEY}
    argv = [sys.executable, "-m", "signgate.standin", "--port", str(port), "--api-key-env", "STANDIN_PROVIDERS_KEY"]
    argv += ["--chunk-delay", "0", "--log-level", "warning"]
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                        assert json.loads(response.read()) == {"status": "ok"}
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            yield Standin(url)
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=20)
    assert KEY not in out.decode()


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


CHAT_FORMAT = {"type": "json_schema", "json_schema": {"name": "car_filters", "schema": CAR_SCHEMA}}
CHAT_TOOL = {"type": "function", "function": {"name": "search_cars", "parameters": CAR_SCHEMA}}
RESPONSES_FORMAT = {"format": {"type": "json_schema", "name": "car_filters", "schema": CAR_SCHEMA}}
RESPONSES_TOOL = {"type": "function", "name": "search_cars", "parameters": CAR_SCHEMA}
ANTHROPIC_TOOL = {"name": "search_cars", "description": "Search the catalog.", "input_schema": CAR_SCHEMA}
GEMINI_TOOL = genai_types.Tool(
    function_declarations=[genai_types.FunctionDeclaration(name="search_cars", parameters_json_schema=CAR_SCHEMA)]
)


# --- OpenAI Chat Completions -----------------------------------------------------------------


def test_chat_tool_call(standin: Standin) -> None:
    with standin.openai() as client:
        answer = client.chat.completions.create(model="gpt-x", messages=user(QUERY), tools=[CHAT_TOOL])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "search_cars"
    assert json.loads(call.function.arguments) == EXPECTED
    assert answer.usage is not None and answer.usage.completion_tokens == -(-len(call.function.arguments) // 4)


def test_chat_tool_call_streamed(standin: Standin) -> None:
    with (
        standin.openai() as client,
        client.chat.completions.stream(
            model="m", messages=user(QUERY), tools=[CHAT_TOOL], stream_options={"include_usage": True}
        ) as stream,
    ):
        pieces = [e.arguments_delta for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(pieces) > 10  # the arguments arrive a few characters at a time
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "search_cars" and json.loads(call.function.arguments) == EXPECTED
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens > 0


def test_chat_parse_with_pydantic(standin: Standin) -> None:
    with standin.openai() as client:
        answer = client.chat.completions.parse(
            model="m", messages=user("a crossover under 30k"), response_format=CarFilters
        )
        called = client.chat.completions.parse(
            model="m", messages=user("a truck"), tools=[openai.pydantic_function_tool(CarFilters, name="search")]
        )
    assert answer.choices[0].message.parsed == CarFilters(body="suv", price_max=30000)
    (call,) = called.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == CarFilters(body="pickup")


def test_chat_wire_json_is_valid(standin: Standin) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    for body in (
        {"model": "m", "messages": user(QUERY), "response_format": CHAT_FORMAT},
        {"model": "m", "messages": user(QUERY), "tools": [CHAT_TOOL]},
    ):
        status, _, raw = standin.post("/v1/chat/completions", body, headers)
        assert status == 200
        ChatCompletion.model_validate_json(raw)
        events = standin.events(
            "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}, headers
        )
        assert events[-1] == (None, "[DONE]")
        for _, data in events[:-1]:
            ChatCompletionChunk.model_validate(data)
        assert fold(providers.chat, events[:-1]) == providers.chat.answer_usage(json.loads(raw))


# --- OpenAI Responses ------------------------------------------------------------------------


def test_responses_structured_text(standin: Standin) -> None:
    with standin.openai() as client:
        answer = client.responses.create(model="m", instructions="Extract filters.", input=QUERY, text=RESPONSES_FORMAT)
        parsed = client.responses.parse(model="m", input="a crossover under 30k", text_format=CarFilters)
    assert answer.status == "completed"
    assert json.loads(answer.output_text) == EXPECTED
    assert answer.usage is not None and answer.usage.output_tokens == -(-len(answer.output_text) // 4)
    assert parsed.output_parsed == CarFilters(body="suv", price_max=30000)


def test_responses_streamed_text(standin: Standin) -> None:
    with standin.openai() as client, client.responses.stream(model="m", input=QUERY, text=RESPONSES_FORMAT) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 10 and json.loads("".join(deltas)) == EXPECTED
    assert final.output_text == "".join(deltas)
    assert final.usage is not None and final.usage.total_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_responses_tool_call(standin: Standin, stream: bool) -> None:
    with standin.openai() as client:
        if stream:
            with client.responses.stream(model="m", input=QUERY, tools=[RESPONSES_TOOL]) as events:
                pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
                answer = events.get_final_response()
            assert len(pieces) > 10
        else:
            answer = client.responses.create(model="m", input=QUERY, tools=[RESPONSES_TOOL])
    (call,) = answer.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.name == "search_cars" and json.loads(call.arguments) == EXPECTED
    assert call.call_id.startswith("call_")


def test_responses_wire_json_is_valid(standin: Standin) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    event = pydantic.TypeAdapter(ResponseStreamEvent)
    for body in (
        {"model": "m", "input": QUERY, "text": RESPONSES_FORMAT},
        {"model": "m", "input": user(QUERY), "tools": [RESPONSES_TOOL]},
    ):
        status, _, raw = standin.post("/v1/responses", body, headers)
        assert status == 200
        Response.model_validate_json(raw)
        events = standin.events("/v1/responses", {**body, "stream": True}, headers)
        for name, data in events:
            assert name == data["type"]
            event.validate_python(data)
        assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
        assert events[-1][0] == "response.completed"
        assert fold(providers.responses, events) == providers.responses.answer_usage(json.loads(raw))


# --- Anthropic Messages ----------------------------------------------------------------------


def test_anthropic_tool_call(standin: Standin) -> None:
    with standin.anthropic() as client:
        message = client.messages.create(
            model="claude-x", max_tokens=1024, messages=user(QUERY), tools=[ANTHROPIC_TOOL]
        )
    assert message.stop_reason == "tool_use" and message.model == "claude-x"
    (block,) = message.content
    assert isinstance(block, ToolUseBlock)
    assert block.name == "search_cars" and block.input == EXPECTED
    assert message.usage.output_tokens == -(-len(json.dumps(EXPECTED)) // 4)


def test_anthropic_tool_call_streamed(standin: Standin) -> None:
    with (
        standin.anthropic() as client,
        client.messages.stream(model="c", max_tokens=1024, messages=user(QUERY), tools=[ANTHROPIC_TOOL]) as stream,
    ):
        pieces = [e.partial_json for e in stream if e.type == "input_json"]
        message = stream.get_final_message()
    assert len(pieces) > 10 and json.loads("".join(pieces)) == EXPECTED
    (block,) = message.content
    assert isinstance(block, ToolUseBlock) and block.input == EXPECTED
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_anthropic_structured_text(standin: Standin) -> None:
    with standin.anthropic() as client:
        message = client.messages.parse(
            model="c", max_tokens=1024, messages=user("a crossover under 30k"), output_format=CarFilters
        )
        with client.messages.stream(
            model="c",
            max_tokens=1024,
            system="Extract car filters.",
            messages=user(QUERY),
            output_config={"format": {"type": "json_schema", "schema": CAR_SCHEMA}},
        ) as stream:
            texts = list(stream.text_stream)
            final = stream.get_final_message()
    assert message.parsed_output == CarFilters(body="suv", price_max=30000)
    assert len(texts) > 10 and json.loads("".join(texts)) == EXPECTED
    (block,) = final.content
    assert isinstance(block, TextBlock) and block.text == "".join(texts)
    assert final.stop_reason == "end_turn"


def test_anthropic_wire_json_is_valid(standin: Standin) -> None:
    event = pydantic.TypeAdapter(RawMessageStreamEvent)
    for body in (
        {"model": "c", "max_tokens": 99, "messages": user(QUERY)},
        {"model": "c", "max_tokens": 99, "messages": user(QUERY), "tools": [ANTHROPIC_TOOL]},
    ):
        status, _, raw = standin.post("/v1/messages", body, ANTHROPIC_HEADERS)
        assert status == 200
        Message.model_validate_json(raw)
        events = standin.events("/v1/messages", {**body, "stream": True}, ANTHROPIC_HEADERS)
        names = [name for name, _ in events]
        assert names[:3] == ["message_start", "content_block_start", "ping"]
        assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
        for name, data in events:
            assert name == data["type"]
            if name != "ping":
                event.validate_python(data)
        assert fold(providers.anthropic, events) == providers.anthropic.answer_usage(json.loads(raw))


# --- Google Gemini ---------------------------------------------------------------------------


def test_gemini_tool_call(standin: Standin) -> None:
    config = genai_types.GenerateContentConfig(tools=[GEMINI_TOOL], system_instruction="Find cars.")
    with standin.genai() as client:
        answer = client.models.generate_content(model="gemini-x", contents=QUERY, config=config)
    (call,) = answer.function_calls or []
    assert isinstance(call, genai_types.FunctionCall)
    assert call.name == "search_cars" and call.args == EXPECTED
    assert answer.candidates and answer.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert answer.model_version == "gemini-x"
    usage = answer.usage_metadata
    assert usage is not None and usage.total_token_count == (usage.prompt_token_count or 0) + (
        usage.candidates_token_count or 0
    )


def test_gemini_tool_call_streamed(standin: Standin) -> None:
    config = genai_types.GenerateContentConfig(
        tools=[GEMINI_TOOL],
        tool_config=genai_types.ToolConfig(
            function_calling_config=genai_types.FunctionCallingConfig(
                mode="ANY", allowed_function_names=["search_cars"]
            )
        ),
    )
    with standin.genai() as client:
        chunks = list(client.models.generate_content_stream(model="g", contents="hello there", config=config))
    calls = [c for chunk in chunks for c in chunk.function_calls or []]
    assert len(calls) == 1 and calls[0].name == "search_cars"  # Gemini sends a call whole, in one chunk
    assert calls[0].args == extract(CAR_SCHEMA, "hello there")  # ANY forces a call even to a non-search


def test_gemini_structured_text(standin: Standin) -> None:
    with standin.genai() as client:
        parsed = client.models.generate_content(
            model="g",
            contents="a crossover under 30k",
            config=genai_types.GenerateContentConfig(response_mime_type="application/json", response_schema=CarFilters),
        )
        config = genai_types.GenerateContentConfig(
            response_mime_type="application/json", response_json_schema=CAR_SCHEMA
        )
        chunks = list(client.models.generate_content_stream(model="g", contents=QUERY, config=config))
    assert parsed.parsed == CarFilters(body="suv", price_max=30000)  # Gemini's own schema dialect, converted
    text = "".join(c.text or "" for c in chunks)
    assert len(chunks) > 10 and json.loads(text) == EXPECTED
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == -(-len(text) // 4)


def test_gemini_wire_json_is_valid(standin: Standin) -> None:
    headers = {"x-goog-api-key": KEY}
    body = {
        "contents": [{"role": "user", "parts": [{"text": QUERY}]}],
        "tools": [{"functionDeclarations": [{"name": "search_cars", "parametersJsonSchema": CAR_SCHEMA}]}],
    }
    for request in (body, {**body, "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}):
        status, _, raw = standin.post("/v1beta/models/gemini-x:generateContent", request, headers)
        assert status == 200
        genai_types.GenerateContentResponse.model_validate_json(raw)
        events = standin.events("/v1beta/models/gemini-x:streamGenerateContent?alt=sse", request, headers)
        for _, data in events:
            genai_types.GenerateContentResponse.model_validate(data)
        assert fold(providers.gemini, events) == providers.gemini.answer_usage(json.loads(raw))


# --- usage, the tool-call rule and the output-token cap, across providers ---------------------


def fold(provider: providers.Provider, events: list[tuple[str | None, Any]]) -> Usage:
    """The usage a gateway reads from a stream: every event's report folded over the last."""
    usage = Usage()
    for _, data in events:
        usage = usage.then(provider.event_usage(data))
    assert usage.input_tokens is not None and usage.output_tokens is not None
    return usage


def chat_answer(standin: Standin, text: str, **extra: Any) -> tuple[str | None, str]:
    """(tool called or None, content) of a non-streamed chat answer."""
    with standin.openai() as client:
        answer = client.chat.completions.create(model="m", messages=user(text), **extra)
    message = answer.choices[0].message
    if message.tool_calls:
        call = message.tool_calls[0]
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        return call.function.name, call.function.arguments
    return None, message.content or ""


LAPTOP = {
    "type": "function",
    "function": {
        "name": "search_laptops",
        "parameters": {"type": "object", "properties": {"brand": {"type": "string", "enum": ["dell", "lenovo"]}}},
    },
}


@pytest.mark.parametrize(
    ("text", "extra", "called"),
    [
        ("crossover under 30k", {}, "search_cars"),  # auto: the message fills the function's parameters
        ("What is the capital of France?", {}, None),  # auto: it fills nothing, so text
        ("a lenovo", {}, "search_laptops"),  # auto: the first function the message fills
        ("crossover under 30k", {"tool_choice": "none"}, None),
        ("What is the capital of France?", {"tool_choice": "required"}, "search_cars"),  # required: the first
        ("a lenovo", {"tool_choice": {"type": "function", "function": {"name": "search_cars"}}}, "search_cars"),
    ],
    ids=["auto-search", "auto-question", "auto-second-tool", "none", "required", "forced"],
)
def test_tool_call_rule(standin: Standin, text: str, extra: dict[str, Any], called: str | None) -> None:
    name, content = chat_answer(standin, text, tools=[CHAT_TOOL, LAPTOP], **extra)
    assert name == called
    if called is None:
        assert content == PLAIN_ANSWER
    else:
        jsonschema.validate(
            json.loads(content), CAR_SCHEMA if called == "search_cars" else LAPTOP["function"]["parameters"]
        )  # type: ignore[index]


def test_output_token_cap_cuts_text_in_every_api(standin: Standin) -> None:
    with standin.openai() as client:
        chat = client.chat.completions.create(model="m", messages=user("hi"), max_completion_tokens=5)
        responses = client.responses.create(model="m", input="hi", max_output_tokens=16)
    with standin.anthropic() as claude:
        message = claude.messages.create(model="c", max_tokens=5, messages=user("hi"))
    with standin.genai() as client:
        config = genai_types.GenerateContentConfig(max_output_tokens=5)
        gemini = client.models.generate_content(model="g", contents="hi", config=config)
    assert (chat.choices[0].finish_reason, chat.choices[0].message.content) == ("length", PLAIN_ANSWER[:20])
    assert responses.status == "incomplete" and responses.incomplete_details is not None
    assert responses.incomplete_details.reason == "max_output_tokens" and responses.output_text == PLAIN_ANSWER[:64]
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 5
    assert gemini.candidates and gemini.candidates[0].finish_reason == genai_types.FinishReason.MAX_TOKENS
    assert gemini.text == PLAIN_ANSWER[:20]


# --- errors, each in its API's own shape ------------------------------------------------------


def test_wrong_key_is_refused_in_each_api(standin: Standin) -> None:
    with standin.openai("sk-wrong") as client, pytest.raises(openai.AuthenticationError) as chat:
        client.responses.create(model="m", input="hi")
    with standin.anthropic("sk-wrong") as claude, pytest.raises(anthropic.AuthenticationError) as claude_error:
        claude.messages.create(model="c", max_tokens=5, messages=user("hi"))
    with standin.genai("sk-wrong") as client, pytest.raises(genai_errors.ClientError) as gemini:
        client.models.generate_content(model="g", contents="hi")
    assert chat.value.status_code == 401 and chat.value.code == "invalid_api_key"
    assert claude_error.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": claude_error.value.body["error"]["message"]},  # type: ignore[index]
    }
    assert (gemini.value.code, gemini.value.status) == (401, "UNAUTHENTICATED")
    for error in (chat.value, claude_error.value, gemini.value):
        assert KEY not in str(error) and "sk-wrong" not in str(error)


def test_bad_requests_are_refused_in_each_api(standin: Standin) -> None:
    with standin.openai() as client, pytest.raises(openai.BadRequestError) as no_schema:
        client.responses.create(model="m", input="hi", text={"format": {"type": "json_schema", "name": "f"}})
    with standin.anthropic() as claude, pytest.raises(anthropic.BadRequestError) as unknown_tool:
        claude.messages.create(
            model="c",
            max_tokens=9,
            messages=user("hi"),
            tools=[ANTHROPIC_TOOL],
            tool_choice={"type": "tool", "name": "search_boats"},
        )
    with standin.genai() as client, pytest.raises(genai_errors.ClientError) as schema_without_json:
        client.models.generate_content(
            model="g", contents="hi", config=genai_types.GenerateContentConfig(response_schema=CarFilters)
        )
    assert no_schema.value.code == "missing_required_parameter" and "text.format.schema" in str(no_schema.value)
    assert (
        "search_boats" in str(unknown_tool.value)
        and unknown_tool.value.body["error"]["type"] == "invalid_request_error"
    )  # type: ignore[index]
    assert (schema_without_json.value.code, schema_without_json.value.status) == (400, "INVALID_ARGUMENT")
    assert "responseMimeType" in str(schema_without_json.value)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "shape"),
    [
        ("/v1beta/models/g:countTokens", {}, {"x-goog-api-key": KEY}, 404, "gemini"),
        ("/v1beta/tunedModels/g:generateContent", {}, {"x-goog-api-key": KEY}, 404, "gemini"),
        ("/v1beta/models/g:streamGenerateContent", {"contents": []}, {"x-goog-api-key": KEY}, 400, "gemini"),
        ("/v1beta/models/g:generateContent?key=" + KEY, {"contents": []}, {}, 401, "gemini"),
        (
            "/v1beta/models/g:generateContent",
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"maxOutputTokens": 5, "max_output_tokens": 5000},
            },
            {"x-goog-api-key": KEY},
            400,
            "gemini",
        ),
        ("/v1/messages", {"model": "c", "max_tokens": 5, "messages": user("hi")}, {"x-api-key": KEY}, 400, "anthropic"),
        ("/v1/messages", {"model": "c", "messages": user("hi")}, ANTHROPIC_HEADERS, 400, "anthropic"),
        (
            "/v1/messages",
            {"model": "c", "max_tokens": 5, "messages": user("hi")},
            {**ANTHROPIC_HEADERS, "authorization": f"Bearer {KEY}"},
            401,
            "anthropic",
        ),
        ("/v1/responses", b"[" * 100_000, {"authorization": f"Bearer {KEY}"}, 400, "responses"),
        (
            "/v1/messages",
            {"model": "c", "max_tokens": 5, "messages": user("x"), "metadata": DEEP},
            ANTHROPIC_HEADERS,
            400,
            "anthropic",
        ),
        ("/v1/embeddings", {}, {}, 404, "chat"),
    ],
    ids=[
        "gemini-unknown-method",
        "gemini-unknown-model-path",
        "gemini-stream-without-sse",
        "gemini-key-in-url",
        "gemini-field-in-both-spellings",
        "anthropic-no-version",
        "anthropic-no-max-tokens",
        "anthropic-key-twice",
        "nested-too-deep-to-parse",
        "nested-past-the-bound",
        "unknown-path",
    ],
)
def test_refusals_are_shaped_as_their_api(
    standin: Standin, path: str, body: object, headers: dict[str, str], status: int, shape: str
) -> None:
    got, kind, raw = standin.post(path, body, headers)
    assert (got, kind) == (status, "application/json")
    error = json.loads(raw)
    if shape == "gemini":
        assert set(error["error"]) >= {"code", "message", "status"} and error["error"]["code"] == status
    elif shape == "anthropic":
        assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
    else:
        assert set(error["error"]) == {"message", "type", "param", "code"}
    assert KEY not in raw.decode()


@pytest.mark.parametrize(
    ("path", "header", "body"),
    [
        ("/v1/chat/completions", "authorization", {"model": "m", "messages": user("hi")}),
        ("/v1/messages", "x-api-key", {"model": "c", "max_tokens": 5, "messages": user("hi")}),
        ("/v1beta/models/g:generateContent", "x-goog-api-key", {"contents": [{"parts": [{"text": "hi"}]}]}),
    ],
    ids=["chat", "anthropic", "gemini"],
)
@pytest.mark.parametrize("right_first", [True, False], ids=["right-first", "right-last"])
def test_a_repeated_key_header_is_refused(
    standin: Standin, path: str, header: str, body: dict[str, Any], right_first: bool
) -> None:
    """Two key headers, one right: which one a server reads is a guess, so neither counts."""
    right = f"Bearer {KEY}" if header == "authorization" else KEY
    wrong = "Bearer sk-other" if header == "authorization" else "sk-other"
    values = [right, wrong] if right_first else [wrong, right]
    connection = http.client.HTTPConnection(standin.url.removeprefix("http://"), timeout=20)
    try:
        payload = json.dumps(body).encode()
        connection.putrequest("POST", path)
        for value in values:
            connection.putheader(header, value)
        connection.putheader("anthropic-version", "2023-06-01")
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", str(len(payload)))
        connection.endheaders(payload)
        response = connection.getresponse()
        assert response.status == 401
        assert KEY not in response.read().decode()
    finally:
        connection.close()


def test_model_lists(standin: Standin) -> None:
    with standin.openai() as client:
        assert [m.id for m in client.models.list()] == ["signgate-standin"]
    options = genai_types.HttpOptions(base_url=standin.url, api_version="v1beta")
    with genai.Client(api_key=KEY, http_options=options) as gemini:
        assert [m.name for m in gemini.models.list()] == ["models/signgate-standin"]
