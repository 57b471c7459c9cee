"""OpenAI Responses (``POST /v1/responses``), OpenAI's API for new work.

Request: ``model``, ``instructions``, ``input`` (a string or a list of items),
``max_output_tokens``, ``text.format``, ``tools`` / ``tool_choice``, ``stream``. Answer: a
``response`` whose ``output`` holds a ``message`` or a ``function_call`` item; streamed as
typed events (``response.created`` ... ``response.output_text.delta`` or
``response.function_call_arguments.delta`` ... ``response.completed``), each with its
``sequence_number``. Usage is in the response, and so in ``response.completed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..errors import PolicyViolation
from ..strict_json import Spellings, check_spelling
from . import _openai, _read
from . import chat as _chat
from ._govern import MISSING, Governed, check_each, count_chars, not_text, text_of
from .base import (
    Event,
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

name: str = "responses"
key_headers: tuple[str, ...] = _openai.KEY_HEADERS
PATH = "/v1/responses"
ROLES = frozenset({"user", "assistant", "system", "developer"})
FORMATS = ("text", "json_object", "json_schema")
#: OpenAI refuses a smaller ``max_output_tokens``.
MIN_OUTPUT_TOKENS = 16
_HINT = "with 'model' and 'input'"

auth_header = _openai.auth_header
api_key = _openai.api_key
check_headers = _openai.check_headers
error = _openai.error


def match(method: str, path: str, query: Query) -> Route | None:
    return Route("generate") if path == PATH else None


# --- reading ---------------------------------------------------------------------------------


def _content_text(content: Any, where: str) -> str:
    """Text of a message's content: a string, or parts whose ``text`` is joined (images skipped)."""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(_read.array(content, where)):
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise ProviderError(
                f'{where}[{index}] must be a content part such as {{"type": "input_text", "text": "..."}}.',
                param=f"{where}[{index}]",
                code="invalid_type",
            )
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
    return _read.joined_text(texts)


def _items(value: Any) -> tuple[list[str], list[Turn]]:
    """System texts and turns of ``input``; items that carry no text (reasoning, references) are skipped."""
    if value is None:
        return [], []
    if isinstance(value, str):
        return [], [Turn("user", value)]
    system: list[str] = []
    turns: list[Turn] = []
    for index, item in enumerate(_read.array(value, "input")):
        where = f"input[{index}]"
        item = _read.mapping(item, where, '{"role": "user", "content": "..."}')
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise ProviderError(
                    f"{where}.role is {role!r}; use one of {', '.join(sorted(ROLES))}.",
                    param=f"{where}.role",
                    code="invalid_value",
                )
            text = _content_text(item.get("content"), f"{where}.content")
            if role in ("system", "developer"):
                system.append(text)
            else:
                turns.append(Turn(role, text))
        elif kind == "function_call":
            turns.append(Turn("assistant", _read.string(item.get("arguments"), f"{where}.arguments", nonempty=False)))
        elif kind == "function_call_output":
            turns.append(Turn("tool", _content_text(item.get("output"), f"{where}.output")))
    return system, turns


def _format(text: Any) -> OutputFormat:
    config = _read.mapping(text, "text", '{"format": {"type": "json_schema", ...}}')
    if config.get("format") is None:
        return OutputFormat()
    spec = _read.mapping(config["format"], "text.format", '{"type": "json_schema", "name": ..., "schema": ...}')
    kind = spec.get("type")
    if kind not in FORMATS:
        raise ProviderError(
            f"text.format.type must be one of {', '.join(FORMATS)}.", param="text.format.type", code="invalid_value"
        )
    if kind == "text":
        return OutputFormat()
    if kind == "json_object":
        return OutputFormat("json")
    return _openai.json_schema_format(spec, "text.format", schema_required=True)


def _tools(value: Any) -> tuple[Tool, ...]:
    """The function tools; built-in tools (web search, file search, ...) are passed over."""
    tools = []
    for index, tool in enumerate(_read.array(value, "tools")):
        where = f"tools[{index}]"
        tool = _read.mapping(tool, where, '{"type": "function", "name": ..., "parameters": ...}')
        if tool.get("type") != "function":
            continue
        tool_name = _read.function_name(tool.get("name"), f"{where}.name")
        parameters = tool.get("parameters")
        if parameters is not None:
            _read.schema(parameters, f"{where}.parameters")
        description = _read.optional_string(tool.get("description"), f"{where}.description")
        tools.append(Tool(tool_name, description, parameters or {}))
    _read.unique_names([t.name for t in tools], "tools")
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> ToolChoice:
    offered = [t.name for t in tools]
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if value in ("none", "auto", "required"):
        return ToolChoice(value)
    spec = _read.mapping(value, "tool_choice", '{"type": "function", "name": "..."}')
    if spec.get("type") == "function":
        forced = _read.function_name(spec.get("name"), "tool_choice.name")
        return ToolChoice("required", _read.known_names([forced], offered, "tool_choice.name"))
    if spec.get("type") == "allowed_tools":
        mode = spec.get("mode")
        if mode not in ("auto", "required"):
            raise ProviderError("tool_choice.mode must be 'auto' or 'required'.", param="tool_choice.mode")
        entries = _read.array(spec.get("tools"), "tool_choice.tools", nonempty=True)
        names = []
        for index, entry in enumerate(entries):
            entry = _read.mapping(entry, f"tool_choice.tools[{index}]", '{"type": "function", "name": "..."}')
            names.append(_read.function_name(entry.get("name"), f"tool_choice.tools[{index}].name"))
        return ToolChoice(mode, _read.known_names(names, offered, "tool_choice.tools"))
    raise ProviderError(
        "tool_choice must be 'none', 'auto', 'required', {\"type\": \"function\", \"name\": ...} or "
        '{"type": "allowed_tools", ...}: the stand-in calls function tools only.',
        param="tool_choice",
        code="invalid_value",
    )


def read_request(body: object, route: Route) -> Request:
    request = _read.body_object(body, _HINT)
    model = _openai.model(request)
    system, turns = _items(request.get("input"))
    instructions = _read.optional_string(request.get("instructions"), "instructions")
    stream = _openai.stream_flag(request)
    _openai.stream_options(request, stream)
    tools = _tools(request["tools"]) if request.get("tools") is not None else ()
    return Request(
        model=model,
        system=(instructions, *system) if instructions else tuple(system),
        turns=tuple(turns),
        output=_format(request["text"]) if request.get("text") is not None else OutputFormat(),
        tools=tools,
        tool_choice=_tool_choice(request.get("tool_choice"), tools),
        stream=stream,
        max_output_tokens=_read.count(request.get("max_output_tokens"), "max_output_tokens", minimum=MIN_OUTPUT_TOKENS),
    )


# --- writing ---------------------------------------------------------------------------------


def _usage(usage: Usage) -> dict[str, Any]:
    given, made = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "input_tokens": given,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": made,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": given + made,
    }


def _echo_format(output: OutputFormat) -> dict[str, Any]:
    if output.kind == "json_schema":
        return {"type": "json_schema", "name": output.name or "answer", "schema": dict(output.schema or {})}
    return {"type": "json_object" if output.kind == "json" else "text"}


def _echo_choice(choice: ToolChoice) -> Any:
    if not choice.names:
        return choice.mode
    if choice.forced:
        return {"type": "function", "name": choice.forced}
    tools = [{"type": "function", "name": n} for n in choice.names]
    return {"type": "allowed_tools", "mode": choice.mode, "tools": tools}


def _response(request: Request, stamp: Stamp, status: str, output: list[Any], usage: Usage | None) -> dict[str, Any]:
    tools = [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters, "strict": False}
        for t in request.tools
    ]
    return {
        "id": f"resp_{stamp.token}",
        "object": "response",
        "created_at": stamp.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None,
        "max_output_tokens": request.max_output_tokens,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": _echo_format(request.output)},
        "tool_choice": _echo_choice(request.tool_choice),
        "tools": tools,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(usage) if usage is not None else None,
        "user": None,
        "metadata": {},
    }


def _item(reply: Reply, stamp: Stamp, content: str, done: bool) -> dict[str, Any]:
    status = ("incomplete" if reply.cut else "completed") if done else "in_progress"
    if reply.tool_call is not None:
        return {
            "type": "function_call",
            "id": f"fc_{stamp.token}",
            "call_id": f"call_{stamp.token[:24]}",
            "name": reply.tool_call.name,
            "arguments": content,
            "status": status,
        }
    parts = [_text_part(content)] if done else []
    return {"type": "message", "id": f"msg_{stamp.token}", "status": status, "role": "assistant", "content": parts}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _status(reply: Reply) -> str:
    return "incomplete" if reply.cut else "completed"


def answer(request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> dict[str, Any]:
    return _response(request, stamp, _status(reply), [_item(reply, stamp, reply.content, True)], usage)


class ResponsesStream:
    """Typed events with rising ``sequence_number``s: created, in progress, the output item
    (and its text part) added, deltas, the matching ``done`` events, then
    ``response.completed`` (``response.incomplete`` when cut at the cap) carrying usage."""

    def __init__(self, request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> None:
        self._request, self._reply, self._usage, self._stamp = request, reply, usage, stamp
        self._sequence = 0
        self._sent: list[str] = []
        self._item_id = _item(reply, stamp, "", False)["id"]

    def _event(self, kind: str, **fields: Any) -> Event:
        event = Event(kind, {"type": kind, "sequence_number": self._sequence, **fields})
        self._sequence += 1
        return event

    def start(self) -> list[Event]:
        empty = _response(self._request, self._stamp, "in_progress", [], None)
        events = [
            self._event("response.created", response=empty),
            self._event("response.in_progress", response=empty),
            self._event("response.output_item.added", output_index=0, item=_item(self._reply, self._stamp, "", False)),
        ]
        if self._reply.tool_call is None:
            part = {"item_id": self._item_id, "output_index": 0, "content_index": 0, "part": _text_part("")}
            events.append(self._event("response.content_part.added", **part))
        return events

    def delta(self, piece: str) -> list[Event]:
        self._sent.append(piece)
        where = {"item_id": self._item_id, "output_index": 0}
        if self._reply.tool_call is not None:
            return [self._event("response.function_call_arguments.delta", **where, delta=piece)]
        return [self._event("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])]

    def end(self) -> list[Event]:
        content = "".join(self._sent)
        where = {"item_id": self._item_id, "output_index": 0}
        events = []
        if self._reply.tool_call is not None:
            name = self._reply.tool_call.name
            events.append(self._event("response.function_call_arguments.done", **where, name=name, arguments=content))
        else:
            text = {**where, "content_index": 0}
            events.append(self._event("response.output_text.done", **text, text=content, logprobs=[]))
            events.append(self._event("response.content_part.done", **text, part=_text_part(content)))
        item = _item(self._reply, self._stamp, content, True)
        events.append(self._event("response.output_item.done", output_index=0, item=item))
        status = _status(self._reply)
        final = _response(self._request, self._stamp, status, [item], self._usage)
        events.append(self._event(f"response.{status}", response=final))
        return events


def stream(request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> ResponsesStream:
    return ResponsesStream(request, reply, usage, stamp)


def models(ids: Sequence[str]) -> dict[str, Any]:
    """Never routed: the Responses API shares Chat Completions' ``GET /v1/models``."""
    raise NotImplementedError("GET /v1/models is the chat provider's route")


# --- usage -----------------------------------------------------------------------------------


def _read_usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return Usage(_read.tokens(value.get("input_tokens")), _read.tokens(value.get("output_tokens")))


def answer_usage(answer: object) -> Usage | None:
    """``usage.input_tokens`` and ``usage.output_tokens`` of a ``response``."""
    return _read_usage(answer.get("usage")) if isinstance(answer, dict) else None


def event_usage(data: object) -> Usage | None:
    """The usage of the response a terminal event (``response.completed``, ``.incomplete``,
    ``.failed``) carries; earlier events carry ``usage: null``."""
    if not isinstance(data, dict) or not isinstance(data.get("response"), dict):
        return None
    return _read_usage(data["response"].get("usage"))


# --- what the gateway's policy reads ---------------------------------------------------------

#: Every top-level field of a Responses request (and the names llama.cpp's server reads there).
TOP_FIELDS = Spellings(
    {
        "model", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata", "parallel_tool_calls",
        "previous_response_id", "conversation", "prompt", "prompt_cache_key", "prompt_cache_retention",
        "reasoning", "safety_identifier", "service_tier", "store", "stream", "stream_options", "temperature",
        "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user", "background", "include",
        "context_management", "n_predict", "n", "n_cmpl", "best_of",
    }
)  # fmt: skip
ITEM_FIELDS = Spellings({"type", "role", "content", "id", "status", "call_id", "name", "arguments", "output"})
PART_FIELDS = Spellings({"type", "text", "image_url", "file_id", "file_data", "file_url", "filename", "detail"})
TEXT_FIELDS = Spellings({"format", "verbosity"})
_SETTINGS = frozenset(
    {
        "model", "max_output_tokens", "max_tool_calls", "metadata", "parallel_tool_calls", "previous_response_id",
        "conversation", "prompt_cache_key", "prompt_cache_retention", "reasoning", "safety_identifier",
        "service_tier", "store", "stream", "stream_options", "temperature", "top_logprobs", "top_p", "truncation",
        "user", "background", "include", "context_management", "n_predict", "n", "n_cmpl", "best_of",
    }
)  # fmt: skip
_TEXT_ITEMS = ("message", "function_call", "function_call_output")
_TEXT_PARTS = ("input_text", "output_text")


class ResponsesBody(Governed):
    """A Responses body: the system prompt is ``instructions`` (no system or developer message
    in ``input``), the cap ``max_output_tokens``, the answer's format ``text.format``."""

    top = TOP_FIELDS
    settings = _SETTINGS
    replaces = _chat.REPLACES
    # A previous response, a stored conversation or a stored prompt bring in text the gateway never sees.
    by_reference = ("previous_response_id", "conversation", "prompt")
    signed_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "system_prompt": ("instructions",),
        "tools": ("tools",),
        "tool_choice": ("tool_choice",),
    }
    where: ClassVar[Mapping[str, str]] = {**Governed.where, "response_format": "text.format"}
    needs: ClassVar[Mapping[str, tuple[str, ...]]] = {
        **Governed.needs, "system_prompt": ("instructions",), "max_user_chars": ("input",), "response_format": ("text",)
    }  # fmt: skip
    __slots__ = ()

    def check_spelling(self) -> None:
        super().check_spelling()
        check_spelling(self.data.get("text"), TEXT_FIELDS, "text")
        check_spelling(self.data.get("stream_options"), _chat.STREAM_OPTION_FIELDS, "stream_options")
        items = self.data.get("input")
        if isinstance(items, list):
            for i, item in enumerate(items):
                check_spelling(item, ITEM_FIELDS, f"input[{i}]")
                if isinstance(item, dict):
                    check_each(item.get("content"), PART_FIELDS, f"input[{i}].content")
                    check_each(item.get("output"), PART_FIELDS, f"input[{i}].output")

    def caps(self) -> list[tuple[str, Any]]:
        return [(n, self.data[n]) for n in ("max_output_tokens", *_chat.EXTRA_CAPS) if n in self.data]

    def insert_cap(self, ceiling: int) -> bool:
        if "max_output_tokens" in self.data:
            return False
        self.data["max_output_tokens"] = ceiling
        return True

    def multipliers(self) -> list[tuple[str, Any]]:
        return [(n, self.data[n]) for n in _chat.CHOICES if n in self.data]

    def _items(self) -> list[Any]:
        items = self.data.get("input")
        if isinstance(items, str) or items is None:
            return []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise PolicyViolation("input", "input must be a string or a list of objects")
        return items

    def check_system(self, matches: Any) -> None:
        instructions = self.data.get("instructions")
        others = [
            i for i, item in enumerate(self._items())
            if item.get("type", "message") == "message" and item.get("role") in ("system", "developer")
        ]  # fmt: skip
        if not isinstance(instructions, str) or others or not matches(instructions):
            raise PolicyViolation(
                "system_prompt", "instructions must be the signed system prompt, and input must hold no system message"
            )

    def response_format(self) -> Any:
        text = self.data.get("text")
        if not isinstance(text, dict) or text.get("format") is None:
            return MISSING
        return text["format"]

    def check_text(self, signed: frozenset[str] = frozenset()) -> None:
        super().check_text(signed)
        for i, item in enumerate(self._items()):
            kind = item.get("type", "message")
            if kind not in _TEXT_ITEMS:
                raise not_text("max_user_chars", f"input[{i}] must be a message, a function call or its output")
            content = item.get("content") if kind == "message" else item.get("output")
            if kind != "function_call" and text_of(content, _TEXT_PARTS) is None:
                raise not_text("max_user_chars", f"input[{i}] must be text (a string or input_text parts)")

    def field_chars(self, name: str, value: Any, signed: frozenset[str]) -> int:
        if name == "text" and "response_format" in signed and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "format"}
            return count_chars(value) if value else 0
        return count_chars(value)


def governed(body: dict[str, Any], route: Route) -> ResponsesBody:
    return ResponsesBody(body, route)


def upstream(path: str, query: Query) -> Route | None:
    """The route of an upstream URL's (decoded) path: any base URL, then ``/responses``."""
    return Route("generate") if path.endswith("/responses") else None
