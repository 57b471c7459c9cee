"""The car search as each LLM API asks for it: what a backend writes for its provider.

signgate signs whatever request a backend builds; building it is the backend's own code, and
this is the demo's. For each API (``chat``, ``responses``, ``anthropic``, ``gemini``) the
question goes with the filter options as the system prompt, and the answer, ``{"filters":
{...}}``, comes back either as JSON text matching a schema (``schema``) or as the arguments of a
forced call of a ``search_cars`` function (``tool``), as the article this demo follows did. The
policy bound with each request fixes everything in it that costs money, where that API keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from signgate import Policy

API_NAMES = ("chat", "responses", "anthropic", "gemini")
AnswerAs = Literal["schema", "tool"]
TOOL = "search_cars"
TOOL_DESCRIPTION = "Search the used-car catalog with the filters the shopper asked for."


@dataclass(frozen=True)
class Api:
    """How the demo reaches one API: its real service, the key variable that selects it, the
    path (under the stand-in or the service), the model asked for by default, any header the
    API needs besides its key (the key's header is the provider module's ``auth_header``), and
    how the answer comes back unless told (``schema`` or ``tool``)."""

    name: str
    service: str
    key_env: str
    default_model: str
    answer_as: AnswerAs = "schema"
    headers: tuple[str, ...] = ()  # "Name: value" for signgate serve --header

    def path(self, model: str) -> str:
        """The upstream path of a streamed request for ``model``."""
        return {
            "chat": "/v1/chat/completions",
            "responses": "/v1/responses",
            "anthropic": "/v1/messages",
            "gemini": f"/v1beta/models/{model}:streamGenerateContent?alt=sse",
        }[self.name]


APIS: dict[str, Api] = {
    "chat": Api("chat", "https://api.openai.com", "OPENAI_API_KEY", "gpt-4o-mini"),
    "responses": Api("responses", "https://api.openai.com", "OPENAI_API_KEY", "gpt-4.1-mini"),
    # Anthropic's classic way to a structured answer is a forced tool call: the demo's function call.
    "anthropic": Api(
        "anthropic",
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
        "claude-haiku-4-5",
        answer_as="tool",
        headers=("anthropic-version: 2023-06-01",),
    ),
    "gemini": Api("gemini", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY", "gemini-2.5-flash"),
}


@dataclass(frozen=True)
class SearchRequest:
    """One signed search's body and the policy bound with it."""

    body: dict[str, Any]
    policy: Policy
    headers: Mapping[str, str] = field(default_factory=dict)


def search_request(
    api: str, *, system: str, query: str, schema: Mapping[str, Any], model: str, max_tokens: int, max_chars: int,
    answer_as: AnswerAs,
) -> SearchRequest:  # fmt: skip
    """The streamed request for ``query`` in ``api``'s shape, and its policy: the model, an
    output-token ceiling, the system prompt, the answer's schema or tool, streaming, the
    question's length, and no field beyond those the request has."""
    body, fixed = _BUILDERS[api](system, query, dict(schema), model, max_tokens, answer_as)
    cap = {"chat": "max_tokens", "responses": "max_output_tokens", "anthropic": "max_tokens"}.get(api)
    policy = Policy(
        models=[model],
        max_tokens=max_tokens,
        system_prompt=system,
        require_stream=True,
        max_user_chars=max_chars,
        # Only the fields this request has (and the output cap, under its ceiling): any other
        # field, such as service_tier or n, is refused instead of passing unchecked.
        fields=[*body, *([cap] if cap else [])],
        **fixed,
    )
    return SearchRequest(body, policy)


def _chat(
    system: str, query: str, schema: dict[str, Any], model: str, max_tokens: int, answer_as: AnswerAs
) -> tuple[dict[str, Any], dict[str, Any]]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": query}],
        "stream": True,
    }
    if answer_as == "tool":
        function = {"name": TOOL, "description": TOOL_DESCRIPTION, "parameters": schema, "strict": True}
        body["tools"] = [{"type": "function", "function": function}]
        body["tool_choice"] = {"type": "function", "function": {"name": TOOL}}
        return body, {"tools": body["tools"], "tool_choice": body["tool_choice"]}
    body["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "car_filters", "strict": True, "schema": schema},
    }
    return body, {"response_format": body["response_format"]}


def _responses(
    system: str, query: str, schema: dict[str, Any], model: str, max_tokens: int, answer_as: AnswerAs
) -> tuple[dict[str, Any], dict[str, Any]]:
    body: dict[str, Any] = {"model": model, "instructions": system, "input": query, "stream": True}
    if answer_as == "tool":
        tool = {"type": "function", "name": TOOL, "description": TOOL_DESCRIPTION, "parameters": schema, "strict": True}
        body["tools"] = [tool]
        body["tool_choice"] = {"type": "function", "name": TOOL}
        return body, {"tools": body["tools"], "tool_choice": body["tool_choice"]}
    body["text"] = {"format": {"type": "json_schema", "name": "car_filters", "strict": True, "schema": schema}}
    return body, {"response_format": body["text"]["format"]}


def _anthropic(
    system: str, query: str, schema: dict[str, Any], model: str, max_tokens: int, answer_as: AnswerAs
) -> tuple[dict[str, Any], dict[str, Any]]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "system": system,
        "messages": [{"role": "user", "content": query}],
        "stream": True,
    }
    if answer_as == "tool":
        body["tools"] = [{"name": TOOL, "description": TOOL_DESCRIPTION, "input_schema": schema}]
        body["tool_choice"] = {"type": "tool", "name": TOOL}
        return body, {"tools": body["tools"], "tool_choice": body["tool_choice"]}
    body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return body, {"response_format": body["output_config"]["format"]}


def _gemini(
    system: str, query: str, schema: dict[str, Any], model: str, max_tokens: int, answer_as: AnswerAs
) -> tuple[dict[str, Any], dict[str, Any]]:
    # The model and streaming are in the URL's path (Api.path); the cap is inserted by the gateway.
    body: dict[str, Any] = {
        "systemInstruction": {"parts": [{"text": system}]},
        "contents": [{"role": "user", "parts": [{"text": query}]}],
    }
    if answer_as == "tool":
        declaration = {"name": TOOL, "description": TOOL_DESCRIPTION, "parametersJsonSchema": schema}
        body["tools"] = [{"functionDeclarations": [declaration]}]
        body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [TOOL]}}
        return body, {"tools": body["tools"], "tool_choice": body["toolConfig"]}
    body["generationConfig"] = {"responseMimeType": "application/json", "responseJsonSchema": schema}
    return body, {"response_format": body["generationConfig"]}


_BUILDERS = {"chat": _chat, "responses": _responses, "anthropic": _anthropic, "gemini": _gemini}
