"""Anthropic Messages (``POST /v1/messages``).

Request: ``model``, ``max_tokens`` (required), ``system``, ``messages``, ``tools`` /
``tool_choice``, ``output_config.format`` (structured output; the older top-level
``output_format`` is read too; both at once are refused), ``stream``. Headers: the key in ``x-api-key`` (Anthropic's
documented header) or ``Authorization: Bearer`` (what the official Python client sends), and
``anthropic-version``. Answer: a ``message`` with a ``text`` or ``tool_use`` content block;
streamed as ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
(``text_delta`` / ``input_json_delta``), ``content_block_stop``, ``message_delta``,
``message_stop``. Usage: ``message_start`` carries the input tokens, ``message_delta`` the
output tokens so far.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..errors import PolicyViolation
from ..strict_json import Spellings, check_spelling
from . import _read
from . import chat as _chat
from ._govern import MISSING, Governed, check_each, count_chars, not_text, text_of
from .base import (
    Event,
    Headers,
    OutputFormat,
    ProviderError,
    Query,
    Reply,
    Request,
    Route,
    Stamp,
    Tool,
    ToolChoice,
    Turn,
    Usage,
)

name: str = "anthropic"
key_headers: tuple[str, ...] = ("x-api-key", "authorization")
PATH = "/v1/messages"
ROLES = frozenset({"user", "assistant"})
CHOICES = ("auto", "any", "tool", "none")
_HINT = "with 'model', 'max_tokens' and 'messages'"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def match(method: str, path: str, query: Query) -> Route | None:
    return Route("generate") if path == PATH else None


def auth_header(key: str) -> tuple[str, str]:
    return "x-api-key", key


def api_key(headers: Headers, query: Query) -> str:
    key = headers.get("x-api-key")
    token = _read.bearer(headers, "Or send the key as 'x-api-key: <key>'.")
    if key is not None and token is not None:
        raise ProviderError(
            "The key is sent twice, in x-api-key and in Authorization; send it once.",
            status=401,
            code="invalid_api_key",
        )
    if key is None and token is None:
        raise ProviderError("x-api-key header is required.", status=401, code="invalid_api_key")
    return (key if key is not None else token or "").strip()


def check_headers(headers: Headers) -> None:
    if not headers.get("anthropic-version", "").strip():
        raise ProviderError(
            "anthropic-version: header is required; send e.g. 'anthropic-version: 2023-06-01'.",
            param="anthropic-version",
        )


def error(err: ProviderError) -> dict[str, Any]:
    """Anthropic's error body: ``{"type": "error", "error": {"type", "message"}}``."""
    kind = _ERROR_TYPES.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}


# --- reading ---------------------------------------------------------------------------------


def _blocks(content: Any, where: str, *, nested: bool = False) -> tuple[str, list[str], list[str]]:
    """(text, tool-call inputs, tool results) of a message's content; other blocks are skipped,
    and so is a tool result inside a tool result (``nested``), so the reading never recurses
    deeper than one level."""
    if isinstance(content, str):
        return content, [], []
    texts: list[str] = []
    calls: list[str] = []
    results: list[str] = []
    for index, block in enumerate(_read.array(content, where, nonempty=True)):
        here = f"{where}.{index}"
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise ProviderError(
                f'{here}: each content block must be an object such as {{"type": "text", "text": "..."}}.',
                param=here,
            )
        kind = block["type"]
        if kind == "text":
            texts.append(_read.string(block.get("text"), f"{here}.text", nonempty=False))
        elif kind == "tool_use":
            calls.append(_read.json_text(block.get("input", {}), f"{here}.input"))
        elif kind == "tool_result" and not nested:
            inner = block.get("content") or ""
            results.append(inner if isinstance(inner, str) else _blocks(inner, f"{here}.content", nested=True)[0])
    return _read.joined_text(texts), calls, results


def _system(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    text = _blocks(value, "system")[0]
    return (text,) if text else ()


def _format(request: Mapping[str, Any]) -> OutputFormat:
    config = request.get("output_config")
    spec, where = None, "output_config.format"
    if config is not None:
        spec = _read.mapping(config, "output_config", '{"format": {"type": "json_schema", "schema": {...}}}').get(
            "format"
        )
    if request.get("output_format") is not None:
        if spec is not None:  # which one the model follows would be a guess; a policy could read the other
            raise ProviderError("Give output_config.format or output_format, not both.", param="output_format")
        spec, where = request["output_format"], "output_format"
    if spec is None:
        return OutputFormat()
    spec = _read.mapping(spec, where, '{"type": "json_schema", "schema": {...}}')
    if spec.get("type") != "json_schema":
        raise ProviderError(f"{where}.type must be 'json_schema'.", param=f"{where}.type")
    if "schema" not in spec:
        raise ProviderError(
            f"{where}.schema: Field required. Give the JSON Schema the answer must match.", param=f"{where}.schema"
        )
    return OutputFormat("json_schema", _read.schema(spec["schema"], f"{where}.schema"))


def _tools(value: Any) -> tuple[Tool, ...]:
    """The custom (client) tools; server tools (web search, ...) carry no schema and are passed over."""
    tools = []
    for index, tool in enumerate(_read.array(value, "tools")):
        where = f"tools.{index}"
        tool = _read.mapping(tool, where, '{"name": ..., "input_schema": {...}}')
        if tool.get("type") not in (None, "custom"):
            continue
        tool_name = _read.function_name(tool.get("name"), f"{where}.name")
        if "input_schema" not in tool:
            raise ProviderError(f"{where}.input_schema: Field required.", param=f"{where}.input_schema")
        schema = _read.schema(tool["input_schema"], f"{where}.input_schema")
        description = _read.optional_string(tool.get("description"), f"{where}.description")
        tools.append(Tool(tool_name, description, schema))
    _read.unique_names([t.name for t in tools], "tools")
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if tools else "none")
    spec = _read.mapping(value, "tool_choice", '{"type": "auto"}')
    kind = spec.get("type")
    if kind not in CHOICES:
        raise ProviderError(f"tool_choice.type must be one of {', '.join(CHOICES)}.", param="tool_choice.type")
    if kind == "none":
        return ToolChoice("none")
    if kind != "auto" and not tools:
        raise ProviderError(f"tool_choice {kind!r} needs tools; add them or drop tool_choice.", param="tool_choice")
    if kind == "tool":
        forced = _read.function_name(spec.get("name"), "tool_choice.name")
        return ToolChoice("required", _read.known_names([forced], [t.name for t in tools], "tool_choice.name"))
    return ToolChoice("required" if kind == "any" else "auto")


def read_request(body: object, route: Route) -> Request:
    request = _read.body_object(body, _HINT)
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise ProviderError('model: Field required, e.g. "model": "signgate-standin".', param="model")
    if request.get("max_tokens") is None:
        raise ProviderError('max_tokens: Field required, e.g. "max_tokens": 1024.', param="max_tokens")
    cap = _read.count(request["max_tokens"], "max_tokens")
    turns: list[Turn] = []
    for index, message in enumerate(_read.array(request.get("messages"), "messages", nonempty=True)):
        where = f"messages.{index}"
        message = _read.mapping(message, where, '{"role": "user", "content": "..."}')
        role = message.get("role")
        if role not in ROLES:
            raise ProviderError(f"{where}.role is {role!r}; use 'user' or 'assistant'.", param=f"{where}.role")
        if "content" not in message:
            raise ProviderError(f"{where}.content: Field required.", param=f"{where}.content")
        text, calls, results = _blocks(message["content"], f"{where}.content")
        turns += [Turn("tool", r) for r in results]
        if text or calls or not results:
            turns.append(Turn(role, _read.joined_text([text, *calls])))
    tools = _tools(request["tools"]) if request.get("tools") is not None else ()
    return Request(
        model=model,
        system=_system(request.get("system")),
        turns=tuple(turns),
        output=_format(request),
        tools=tools,
        tool_choice=_tool_choice(request.get("tool_choice"), tools),
        stream=_read.flag(request.get("stream"), "stream"),
        max_output_tokens=cap,
    )


# --- writing ---------------------------------------------------------------------------------


def _usage(usage: Usage, *, output: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens or 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": (usage.output_tokens or 0) if output is None else output,
    }


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool_call else "max_tokens" if reply.cut else "end_turn"


def _block(reply: Reply, stamp: Stamp, *, started: bool = False) -> dict[str, Any]:
    call = reply.tool_call
    if call is None:
        return {"type": "text", "text": "" if started else reply.text}
    arguments = {} if started else json.loads(call.arguments)
    return {"type": "tool_use", "id": f"toolu_{stamp.token[:24]}", "name": call.name, "input": arguments}


def _message(
    request: Request, stamp: Stamp, content: list[Any], stop: str | None, usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": f"msg_{stamp.token}",
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def answer(request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> dict[str, Any]:
    return _message(request, stamp, [_block(reply, stamp)], _stop_reason(reply), _usage(usage))


class AnthropicStream:
    """``message_start`` (input tokens), the block's start and a ``ping`` at once, then
    ``content_block_delta``s, ``content_block_stop``, ``message_delta`` (stop reason and output
    tokens), ``message_stop``."""

    def __init__(self, request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> None:
        self._request, self._reply, self._usage, self._stamp = request, reply, usage, stamp

    def start(self) -> list[Event]:
        message = _message(self._request, self._stamp, [], None, _usage(self._usage, output=0))
        block = _block(self._reply, self._stamp, started=True)
        return [
            Event("message_start", {"type": "message_start", "message": message}),
            Event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            Event("ping", {"type": "ping"}),
        ]

    def delta(self, piece: str) -> list[Event]:
        if self._reply.tool_call is None:
            delta = {"type": "text_delta", "text": piece}
        else:
            delta = {"type": "input_json_delta", "partial_json": piece}
        return [Event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})]

    def end(self) -> list[Event]:
        stop = {"stop_reason": _stop_reason(self._reply), "stop_sequence": None}
        return [
            Event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            Event("message_delta", {"type": "message_delta", "delta": stop, "usage": _usage(self._usage)}),
            Event("message_stop", {"type": "message_stop"}),
        ]


def stream(request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> AnthropicStream:
    return AnthropicStream(request, reply, usage, stamp)


def models(ids: Sequence[str]) -> dict[str, Any]:
    """Never routed: ``GET /v1/models`` is OpenAI's path in the stand-in."""
    raise NotImplementedError("GET /v1/models is the chat provider's route")


# --- usage -----------------------------------------------------------------------------------


def _read_usage(value: object) -> Usage | None:
    """Input is ``input_tokens`` plus the cache's ``cache_creation_input_tokens`` and
    ``cache_read_input_tokens`` (Anthropic counts them apart; a budget counts them all)."""
    if not isinstance(value, dict):
        return None
    parts = [
        _read.tokens(value.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    given = None if parts[0] is None else sum(p or 0 for p in parts)
    return Usage(given, _read.tokens(value.get("output_tokens")))


def answer_usage(answer: object) -> Usage | None:
    return _read_usage(answer.get("usage")) if isinstance(answer, dict) else None


def event_usage(data: object) -> Usage | None:
    """``message_start``'s ``message.usage``, or ``message_delta``'s ``usage`` (cumulative
    output tokens; input tokens only when it repeats them). Other events carry none."""
    if not isinstance(data, dict):
        return None
    if data.get("type") == "message_start" and isinstance(data.get("message"), dict):
        return _read_usage(data["message"].get("usage"))
    if data.get("type") == "message_delta":
        return _read_usage(data.get("usage"))
    return None


# --- what the gateway's policy reads ---------------------------------------------------------

#: Every top-level field of a Messages request (and the names llama.cpp's server reads there).
TOP_FIELDS = Spellings(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
        "top_k", "top_p", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
        "context_management", "output_config", "output_format", "inference_geo", "n_predict", "n", "n_cmpl",
        "best_of",
    }
)  # fmt: skip
MESSAGE_FIELDS = Spellings({"role", "content"})
BLOCK_FIELDS = Spellings(
    {
        "type", "text", "source", "id", "name", "input", "tool_use_id", "content", "is_error", "cache_control",
        "citations", "thinking", "signature", "data", "title", "context",
    }
)  # fmt: skip
THINKING_FIELDS = Spellings({"type", "budget_tokens"})
OUTPUT_CONFIG_FIELDS = Spellings({"format", "effort"})
_SETTINGS = frozenset(
    {
        "model", "max_tokens", "metadata", "stop_sequences", "stream", "temperature", "top_k", "top_p", "thinking",
        "service_tier", "context_management", "inference_geo", "n_predict", "n", "n_cmpl", "best_of",
    }
)  # fmt: skip
_TEXT_BLOCKS = ("text", "tool_use", "tool_result", "thinking", "redacted_thinking")
_SYSTEM_BLOCK_KEYS = frozenset({"type", "text", "cache_control"})


class AnthropicBody(Governed):
    """A Messages body: the system prompt is ``system`` (a string or text blocks; messages are
    ``user`` or ``assistant`` only), the cap ``max_tokens`` (which bounds thinking too), the
    answer's format ``output_config.format`` (or the older ``output_format``)."""

    top = TOP_FIELDS
    settings = _SETTINGS
    replaces = _chat.REPLACES
    # A container holds files the model reads, and MCP servers' tools are fetched upstream.
    by_reference = ("container", "mcp_servers")
    signed_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "system_prompt": ("system",),
        "response_format": ("output_format",),
        "tools": ("tools",),
        "tool_choice": ("tool_choice",),
    }
    where: ClassVar[Mapping[str, str]] = {**Governed.where, "response_format": "output_config.format"}
    needs: ClassVar[Mapping[str, tuple[str, ...]]] = {
        **Governed.needs,
        "system_prompt": ("system",),
        "max_user_chars": ("messages",),
        "response_format": ("output_config", "output_format"),
    }
    __slots__ = ()

    def check_spelling(self) -> None:
        super().check_spelling()
        check_spelling(self.data.get("thinking"), THINKING_FIELDS, "thinking")
        check_spelling(self.data.get("output_config"), OUTPUT_CONFIG_FIELDS, "output_config")
        check_each(self.data.get("system"), BLOCK_FIELDS, "system")
        messages = self.data.get("messages")
        if isinstance(messages, list):
            for i, message in enumerate(messages):
                check_spelling(message, MESSAGE_FIELDS, f"messages.{i}")
                content = message.get("content") if isinstance(message, dict) else None
                check_each(content, BLOCK_FIELDS, f"messages.{i}.content")
                for j, block in enumerate(content if isinstance(content, list) else []):
                    if isinstance(block, dict):
                        check_each(block.get("content"), BLOCK_FIELDS, f"messages.{i}.content.{j}.content")

    def caps(self) -> list[tuple[str, Any]]:
        return [(n, self.data[n]) for n in ("max_tokens", *_chat.EXTRA_CAPS) if n in self.data]

    def insert_cap(self, ceiling: int) -> bool:
        if "max_tokens" in self.data:
            return False
        self.data["max_tokens"] = ceiling  # the API requires it: inserted, a request without it is served
        return True

    def multipliers(self) -> list[tuple[str, Any]]:
        return [(n, self.data[n]) for n in _chat.CHOICES if n in self.data]

    def budgets(self) -> list[tuple[str, Any]]:
        thinking = self.data.get("thinking")
        if isinstance(thinking, dict) and "budget_tokens" in thinking:
            return [("thinking.budget_tokens", thinking["budget_tokens"])]
        return []

    def _messages(self) -> list[dict[str, Any]]:
        messages = self.data.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise PolicyViolation("messages", "messages must be a list of objects")
        return messages

    def check_system(self, matches: Any) -> None:
        system = self.data.get("system")
        blocks_ok = not isinstance(system, list) or all(
            isinstance(b, dict) and b.keys() <= _SYSTEM_BLOCK_KEYS for b in system
        )
        text = text_of(system) if blocks_ok else None
        roles_ok = all(m.get("role") in ROLES for m in self._messages())
        if text is None or not roles_ok or not matches(text):
            raise PolicyViolation(
                "system_prompt",
                "system must be the signed system prompt (a string, or text blocks), and every message "
                "of role user or assistant",
            )

    def response_format(self) -> Any:
        config = self.data.get("output_config")
        nested = config.get("format") if isinstance(config, dict) else None
        older = self.data.get("output_format")
        if nested is not None and older is not None:
            # Which one the model follows would be a guess, and a policy could read the other.
            raise PolicyViolation("response_format", "give output_config.format or output_format, not both")
        found = nested if nested is not None else older
        return MISSING if found is None else found

    def other_tools(self, rule: str) -> list[str]:
        return [n for n in ("mcp_servers",) if rule == "tools" and n in self.data]

    def builtin_tools(self) -> list[str]:
        # A client tool has no type (or "custom"); server tools are typed (web_search_20250305, ...).
        tools = self.tools()
        return [
            str(tool.get("type")) for tool in (tools if isinstance(tools, list) else [])
            if isinstance(tool, dict) and tool.get("type") not in (None, "custom")
        ]  # fmt: skip

    def check_text(self, signed: frozenset[str] = frozenset()) -> None:
        super().check_text(signed)
        system = self.data.get("system")
        if system is not None and text_of(system) is None:
            raise not_text("max_user_chars", "system must be text (a string or text blocks)")
        for i, message in enumerate(self._messages()):
            content = message.get("content")
            if isinstance(content, str):
                continue
            for j, block in enumerate(content if isinstance(content, list) else [None]):
                kind = block.get("type") if isinstance(block, dict) else None
                inner = block.get("content") if isinstance(block, dict) else None
                if kind not in _TEXT_BLOCKS or (kind == "tool_result" and inner is not None and text_of(inner) is None):
                    raise not_text(
                        "max_user_chars", f"messages.{i}.content.{j} must be text, a tool call or a text tool result"
                    )

    def field_chars(self, name: str, value: Any, signed: frozenset[str]) -> int:
        if name == "output_config" and "response_format" in signed and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "format"}
            return count_chars(value) if value else 0
        return count_chars(value)


def governed(body: dict[str, Any], route: Route) -> AnthropicBody:
    return AnthropicBody(body, route)


def upstream(path: str, query: Query) -> Route | None:
    """The route of an upstream URL's (decoded) path: any base URL, then ``/v1/messages``."""
    return Route("generate") if path.endswith("/v1/messages") else None
