"""Every API through real processes: the stand-in model speaking it (``signgate standin``), the
gateway (``signgate serve``) adding the key, and requests signed as a backend signs them.

For each of chat completions, responses, messages and generateContent: every rule of a body
policy refuses a body that breaks it with 403 ``policy_violation`` naming the rule, before the
model sees a byte; and a request's usage, streamed or not, is read from the API's own usage
events, charged to the user's token budget, counted in ``/metrics`` and posted to the usage
webhook. The expected usage is read from the answer here, with code of this test's own.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from gateway_client import Reply, call, send, usage_of
from servers import Server, free_port, start_gateway

from signgate import Policy, Signer

API_KEY = secrets.token_urlsafe(24)
SECRET = secrets.token_urlsafe(24)
ENV = {"GW_SECRET": SECRET, "STANDIN_KEY": API_KEY}
SYSTEM = "Turn the shopper's words into search filters."
QUESTION = "a red suv under 30k"
SCHEMA = {
    "type": "object",
    "properties": {"body": {"type": ["string", "null"]}, "color": {"type": ["string", "null"]}},
    "required": ["body", "color"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Api:
    """One API as a backend uses it: the upstream path, a request body, where its format and
    tools go, the policy that fixes them, bodies that break each rule, and its usage events."""

    name: str
    path: Callable[[bool], str]
    body: Callable[[bool], dict[str, Any]]
    policy: dict[str, Any]
    breaks: dict[str, Callable[[dict[str, Any]], Any]]
    usage: Callable[[list[Any]], tuple[int, int]]  # (input, output) from the answer's JSON objects


def _chat_usage(objects: list[Any]) -> tuple[int, int]:
    usage = next(o["usage"] for o in reversed(objects) if o.get("usage"))
    return usage["prompt_tokens"], usage["completion_tokens"]


def _responses_usage(objects: list[Any]) -> tuple[int, int]:
    final = next(o.get("response", o) for o in reversed(objects) if o.get("response", o).get("usage"))
    return final["usage"]["input_tokens"], final["usage"]["output_tokens"]


def _anthropic_usage(objects: list[Any]) -> tuple[int, int]:
    if objects[0].get("type") == "message":
        return objects[0]["usage"]["input_tokens"], objects[0]["usage"]["output_tokens"]
    start = next(o for o in objects if o["type"] == "message_start")["message"]["usage"]
    delta = next(o for o in objects if o["type"] == "message_delta")["usage"]
    return start["input_tokens"], delta["output_tokens"]


def _gemini_usage(objects: list[Any]) -> tuple[int, int]:
    last = objects[-1]["usageMetadata"]
    return last["promptTokenCount"], last["candidatesTokenCount"]


CHAT_FORMAT = {"type": "json_schema", "json_schema": {"name": "filters", "strict": True, "schema": SCHEMA}}
RESPONSES_FORMAT = {"type": "json_schema", "name": "filters", "strict": True, "schema": SCHEMA}
ANTHROPIC_TOOLS = [{"name": "search_cars", "description": "Search the cars.", "input_schema": SCHEMA}]
GEMINI_FORMAT = {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}


def _gemini_path(stream: bool) -> str:
    return "/v1beta/models/gemini-2.5-flash:" + ("streamGenerateContent?alt=sse" if stream else "generateContent")


APIS = [
    Api(
        "chat",
        lambda stream: "/v1/chat/completions",
        lambda stream: {
            "model": "gpt-4o-mini", "stream": stream, "response_format": CHAT_FORMAT,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        },
        {"models": ["gpt-4o-mini"], "system_prompt": SYSTEM, "response_format": CHAT_FORMAT},
        {
            "system_prompt": lambda b: {**b, "messages": [*b["messages"], {"role": "system", "content": "Obey."}]},
            "response_format": lambda b: {**b, "response_format": {"type": "json_object"}},
            "max_tokens": lambda b: {**b, "max_completion_tokens": 5000},
            "max_user_chars": lambda b: {**b, "messages": [*b["messages"], {"role": "tool", "content": "x" * 200}]},
        },
        _chat_usage,
    ),
    Api(
        "responses",
        lambda stream: "/v1/responses",
        lambda stream: {
            "model": "gpt-4.1-mini", "stream": stream, "instructions": SYSTEM, "input": QUESTION,
            "text": {"format": RESPONSES_FORMAT},
        },
        {"models": ["gpt-4.1-mini"], "system_prompt": SYSTEM, "response_format": RESPONSES_FORMAT},
        {
            "system_prompt": lambda b: {**b, "input": [{"role": "developer", "content": "Obey."}]},
            "response_format": lambda b: {**b, "text": {"format": {"type": "json_object"}}},
            "max_tokens": lambda b: {**b, "max_output_tokens": 5000},
            "max_user_chars": lambda b: {**b, "input": [{"type": "function_call_output", "call_id": "c",
                                                         "output": "x" * 200}]},
        },
        _responses_usage,
    ),
    Api(
        "anthropic",
        lambda stream: "/v1/messages",
        lambda stream: {
            "model": "claude-sonnet-4-5", "max_tokens": 300, "stream": stream, "system": SYSTEM,
            "messages": [{"role": "user", "content": QUESTION}], "tools": ANTHROPIC_TOOLS,
            "tool_choice": {"type": "tool", "name": "search_cars"},
        },
        {"models": ["claude-sonnet-4-5"], "system_prompt": SYSTEM, "tools": ANTHROPIC_TOOLS,
         "tool_choice": {"type": "tool", "name": "search_cars"}},
        {
            "system_prompt": lambda b: {**b, "system": [{"type": "text", "text": "Obey."}]},
            "tools": lambda b: {**b, "tools": [{**ANTHROPIC_TOOLS[0], "description": "Say yes."}]},
            "tool_choice": lambda b: {**b, "tool_choice": {"type": "auto"}},
            "max_tokens": lambda b: {**b, "thinking": {"type": "enabled", "budget_tokens": 5000}},
            "max_user_chars": lambda b: {**b, "messages": [*b["messages"], {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": "x" * 200}]}]},
        },
        _anthropic_usage,
    ),
    Api(
        "gemini",
        _gemini_path,
        lambda stream: {
            "systemInstruction": {"parts": [{"text": SYSTEM}]},
            "contents": [{"role": "user", "parts": [{"text": QUESTION}]}],
            "generationConfig": dict(GEMINI_FORMAT),
        },
        {"models": ["gemini-2.5-flash"], "system_prompt": SYSTEM, "response_format": GEMINI_FORMAT},
        {
            "system_prompt": lambda b: {**b, "systemInstruction": {"parts": [{"text": "Obey."}]}},
            "response_format": lambda b: {**b, "generationConfig": {"responseMimeType": "text/plain"}},
            "max_tokens": lambda b: {**b, "generationConfig": {**GEMINI_FORMAT, "maxOutputTokens": 5000}},
            "n": lambda b: {**b, "generationConfig": {**GEMINI_FORMAT, "candidateCount": 8}},
            "max_user_chars": lambda b: {**b, "contents": [*b["contents"], {"role": "user", "parts": [
                {"functionResponse": {"name": "f", "response": {"r": "x" * 200}}}]}]},
        },
        _gemini_usage,
    ),
]  # fmt: skip
IDS = [api.name for api in APIS]


@pytest.fixture(scope="module")
def standin() -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, "-m", "signgate", "standin", "--port", str(port), "--api-key-env", "STANDIN_KEY"]
    server = Server("standin", [*argv, "--chunk-delay", "0"], port, env=ENV).wait_healthy()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(standin: Server, upstream: Server) -> Iterator[Server]:
    """One key for the four APIs: OpenAI's and Anthropic's read Authorization, Gemini's
    x-goog-api-key; Anthropic's needs anthropic-version. Each user may spend one token a day:
    a user's first request passes, and what it is charged closes the budget. Usage records go
    to the test upstream's /usage."""
    server = start_gateway(
        "--id", "app", "--secret-env", "GW_SECRET",
        "--header-env", "Authorization=Bearer ${STANDIN_KEY}", "--header-env", "x-goog-api-key=${STANDIN_KEY}",
        "--header", "anthropic-version: 2023-06-01",
        "--allow-upstream", f"{standin.url}/", "--allow-private-upstreams",
        "--limit", "user.tokens_per_day=1", "--usage-webhook", f"{upstream.url}/usage",
        env=ENV,
    )  # fmt: skip
    yield server
    server.stop()
    log = server.output()
    assert API_KEY not in log and SECRET not in log
    assert "Traceback" not in log, log[-3000:]


def signer(gateway: Server) -> Signer:
    return Signer("app", SECRET, gateway.url)


def objects(reply: Reply) -> list[Any]:
    """The JSON objects of an answer: the events of a stream, or the one answer."""
    if not reply.headers["content-type"].startswith("text/event-stream"):
        return [reply.json()]
    found = []
    for line in reply.body.decode().splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            found.append(json.loads(line[5:]))
    return found


def standin_requests(standin: Server) -> int:
    return int(call("GET", standin.url + "/_standin/stats").json()["requests"])


def tokens_metric(gateway: Server, kind: str) -> int:
    wanted = f'key="app",estimated="false",kind="{kind}"}}'
    for line in call("GET", gateway.url + "/metrics").body.decode().splitlines():
        if line.startswith("signgate_tokens_total{") and wanted in line:
            return int(line.rpartition(" ")[2])
    return 0


@pytest.mark.parametrize("api", APIS, ids=IDS)
def test_each_policy_rule_is_refused_before_the_model_sees_the_request(
    api: Api, gateway: Server, standin: Server
) -> None:
    policy = Policy(**api.policy, max_tokens=400, require_stream=True, max_user_chars=100)
    url = standin.url + api.path(True)
    headers = {"Content-Type": "application/json"}
    req = signer(gateway).sign("POST", url, headers=headers, policy=policy)
    good = api.body(True)
    ok = send(req, body=json.dumps(good))
    assert ok.status == 200, ok.body[:500]
    assert objects(ok), "the answer streamed"

    breaks = {
        **api.breaks,
        "models": lambda b: {**b, "model": "some-other-model"},
        "fields": None,  # below: a policy with a field allowlist
        "json": lambda b: [b],
    }
    # A streamed API with the stream off; Gemini says it in the path, so its URL is signed anew.
    stream_off = None if api.name == "gemini" else {**good, "stream": False}
    before = standin_requests(standin)
    for rule, make in breaks.items():
        if make is None:
            continue
        reply = send(req, body=json.dumps(make(good)))
        assert (reply.status, reply.error_code) == (403, "policy_violation"), (rule, reply.body[:300])
        assert reply.json()["error"]["rule"] == rule, reply.body[:300]
    if stream_off is not None:
        reply = send(req, body=json.dumps(stream_off))
    else:
        whole = signer(gateway).sign("POST", standin.url + api.path(False), headers=headers, policy=policy)
        reply = send(whole, body=json.dumps(good))
    assert (reply.status, reply.json()["error"]["rule"]) == (403, "stream")
    fields = Policy(fields=sorted({*good, "max_tokens"} - {"stream"}))
    limited = signer(gateway).sign("POST", url, headers=headers, policy=fields)
    reply = send(limited, body=json.dumps({**good, "service_tier": "priority"}))
    assert (reply.status, reply.json()["error"]["rule"]) == (403, "fields")
    assert standin_requests(standin) == before, "a refused request reached the model"


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("api", APIS, ids=IDS)
def test_usage_is_charged_from_the_apis_own_usage_events(
    api: Api, stream: bool, gateway: Server, standin: Server, upstream: Server
) -> None:
    user = f"{api.name}-{stream}-{time.time_ns()}"
    url = standin.url + api.path(stream)
    before = tokens_metric(gateway, "completion")
    reply = send(signer(gateway).sign("POST", url, json=api.body(stream), user=user))
    assert reply.status == 200, reply.body[:500]
    record = usage_of(upstream.url, user)
    if api.name == "chat" and stream:
        # The gateway asked for the usage chunk and kept it from the client, which did not ask
        # (the chunks before it say "usage": null, as OpenAI's do once it is asked for).
        assert all(o.get("usage") is None for o in objects(reply)) and reply.body.endswith(b"data: [DONE]\n\n")
        asked = {**api.body(True), "stream_options": {"include_usage": True}}
        again = send(signer(gateway).sign("POST", url, json=asked, user=user + "-asked"))
        expected = api.usage(objects(again))
    else:
        expected = api.usage(objects(reply))
    assert expected[0] > 0 and expected[1] > 0
    got = (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"], record["estimated"])
    assert got == (*expected, sum(expected), False)
    assert record["model"] == api.body(stream).get("model", "gemini-2.5-flash")
    assert tokens_metric(gateway, "completion") >= before + expected[1]
    # The charge closed the user's budget of one token a day.
    refused = send(signer(gateway).sign("POST", url, json=api.body(stream), user=user))
    assert (refused.status, refused.error_code) == (429, "tokens_per_day_exceeded")
