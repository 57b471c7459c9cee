"""OpenAI Chat Completions (``POST /v1/chat/completions``), spoken by OpenAI and every
OpenAI-compatible server.

Request: ``model``, ``messages``, ``max_tokens`` / ``max_completion_tokens``,
``response_format``, ``tools`` / ``tool_choice``, ``stream``, ``stream_options``. Answer:
``choices[0].message`` with ``content`` or ``tool_calls``; streamed as ``chat.completion.chunk``
events ending in ``data: [DONE]``, with a ``usage`` chunk when ``stream_options.include_usage``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..errors import PolicyViolation
from ..strict_json import Spellings, check_spelling
from . import _openai, _read
from ._govern import MISSING, Governed, check_each, count_chars, not_text, text_of
from .base import (
    Event,
    OutputFormat,
    ProviderError,
    Query,
    Reply,
    Request,
    Role,
    Route,
    Stamp,
    Tool,
    ToolChoice,
    Turn,
    Usage,
)

name: str = "chat"
key_headers: tuple[str, ...] = _openai.KEY_HEADERS
PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_HINT = "with 'model' and 'messages'"

auth_header = _openai.auth_header
api_key = _openai.api_key
check_headers = _openai.check_headers
error = _openai.error


def match(method: str, path: str, query: Query) -> Route | None:
    if path == PATH:
        return Route("generate")
    if path == MODELS_PATH:
        return Route("models", methods=("GET",))
    return None


# --- reading ---------------------------------------------------------------------------------


def _parts_text(content: Sequence[Any], where: str) -> str:
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise ProviderError(
                f'{where}[{index}] must be a content part such as {{"type": "text", "text": "..."}}.',
                param=f"{where}[{index}]",
                code="invalid_type",
            )
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
    return _read.joined_text(texts)


def _message(index: int, message: Any) -> tuple[str, str]:
    """(role, text) of ``messages[index]``; an assistant's tool calls count as its text."""
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise ProviderError(f"{where} must be an object with 'role' and 'content'.", param=where, code="invalid_type")
    role = message.get("role")
    if role not in ROLES:
        raise ProviderError(
            f"{where}.role is {role!r}; use one of {', '.join(sorted(ROLES))}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is None and role == "assistant":
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = _parts_text(content, f"{where}.content")
    else:
        raise ProviderError(
            f'{where}.content must be a string or a list of content parts such as {{"type": "text", "text": "..."}}.',
            param=f"{where}.content",
            code="invalid_type",
        )
    calls = message.get("tool_calls") if role == "assistant" else None
    if isinstance(calls, list):
        arguments = [
            c["function"]["arguments"]
            for c in calls
            if isinstance(c, Mapping)
            and isinstance(c.get("function"), Mapping)
            and isinstance(c["function"].get("arguments"), str)
        ]
        text = _read.joined_text([text, *arguments])
    return role, text


def _response_format(value: Any) -> OutputFormat:
    if not isinstance(value, Mapping) or value.get("type") not in RESPONSE_FORMATS:
        raise ProviderError(
            f"response_format.type must be one of {', '.join(RESPONSE_FORMATS)}.",
            param="response_format.type",
            code="invalid_value",
        )
    if value["type"] == "text":
        return OutputFormat()
    if value["type"] == "json_object":
        return OutputFormat("json")
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise ProviderError(
            "response_format.json_schema must be an object with 'name' and 'schema'.",
            param="response_format.json_schema",
            code="invalid_type",
        )
    return _openai.json_schema_format(spec, "response_format.json_schema", schema_required=False)


def _tools(value: Any) -> tuple[Tool, ...]:
    """The function tools; other tool types (``custom``) are passed over."""
    tools = []
    for index, tool in enumerate(_read.array(value, "tools")):
        where = f"tools[{index}]"
        tool = _read.mapping(tool, where, '{"type": "function", "function": {"name": ..., "parameters": ...}}')
        if tool.get("type") != "function":
            continue
        spec = _read.mapping(tool.get("function"), f"{where}.function", '{"name": ..., "parameters": ...}')
        tool_name = _read.function_name(spec.get("name"), f"{where}.function.name")
        parameters = spec.get("parameters")
        if parameters is not None:
            _read.schema(parameters, f"{where}.function.parameters")
        description = _read.optional_string(spec.get("description"), f"{where}.function.description")
        tools.append(Tool(tool_name, description, parameters or {}))
    _read.unique_names([t.name for t in tools], "tools")
    return tuple(tools)


def _function_name(value: Any, where: str) -> str:
    spec = _read.mapping(value, where, '{"type": "function", "function": {"name": "..."}}')
    function = _read.mapping(spec.get("function"), f"{where}.function", '{"name": "..."}')
    return _read.function_name(function.get("name"), f"{where}.function.name")


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if not tools:
        raise ProviderError("tool_choice is only allowed when tools are specified.", param="tool_choice")
    offered = [t.name for t in tools]
    if value in ("none", "auto", "required"):
        return ToolChoice(value)
    if isinstance(value, Mapping) and value.get("type") == "function":
        return ToolChoice("required", _read.known_names([_function_name(value, "tool_choice")], offered, "tool_choice"))
    if isinstance(value, Mapping) and value.get("type") == "allowed_tools":
        allowed = _read.mapping(
            value.get("allowed_tools"), "tool_choice.allowed_tools", '{"mode": "auto", "tools": []}'
        )
        mode = allowed.get("mode")
        if mode not in ("auto", "required"):
            raise ProviderError(
                "tool_choice.allowed_tools.mode must be 'auto' or 'required'.", param="tool_choice.allowed_tools.mode"
            )
        entries = _read.array(allowed.get("tools"), "tool_choice.allowed_tools.tools", nonempty=True)
        names = [_function_name(e, f"tool_choice.allowed_tools.tools[{i}]") for i, e in enumerate(entries)]
        return ToolChoice(mode, _read.known_names(names, offered, "tool_choice.allowed_tools.tools"))
    raise ProviderError(
        'tool_choice must be \'none\', \'auto\', \'required\' or {"type": "function", "function": {"name": "..."}}.',
        param="tool_choice",
        code="invalid_value",
    )


def read_request(body: object, route: Route) -> Request:
    request = _read.body_object(body, _HINT)
    model = _openai.model(request)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProviderError(
            'messages must be a non-empty array of {"role", "content"} objects.', param="messages", code="invalid_type"
        )
    system: list[str] = []
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        role, text = _message(index, message)
        if role in ("system", "developer"):
            system.append(text)
        else:
            turn_role: Role = "tool" if role in ("tool", "function") else role  # type: ignore[assignment]
            turns.append(Turn(turn_role, text))
    stream = _openai.stream_flag(request)
    options = _openai.stream_options(request, stream)
    include_usage = _read.flag(options.get("include_usage"), "stream_options.include_usage")
    output = OutputFormat()
    if request.get("response_format") is not None:
        output = _response_format(request["response_format"])
    n = request.get("n")
    if n is not None and n != 1:
        raise ProviderError("The stand-in answers with one choice; set n to 1 or leave it out.", param="n")
    tools = _tools(request["tools"]) if request.get("tools") is not None else ()
    cap = _read.smallest(
        _read.count(request.get("max_tokens"), "max_tokens"),
        _read.count(request.get("max_completion_tokens"), "max_completion_tokens"),
    )
    return Request(
        model=model,
        system=tuple(system),
        turns=tuple(turns),
        output=output,
        tools=tools,
        tool_choice=_tool_choice(request.get("tool_choice"), tools),
        stream=stream,
        max_output_tokens=cap,
        stream_usage=include_usage,
    )


# --- writing ---------------------------------------------------------------------------------


def _usage(usage: Usage) -> dict[str, int]:
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _base(request: Request, stamp: Stamp, kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{stamp.token}",
        "object": kind,
        "created": stamp.created,
        "model": request.model,
        "system_fingerprint": "fp_signgate_standin",
    }


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool_call else "length" if reply.cut else "stop"


def _call_id(stamp: Stamp) -> str:
    return f"call_{stamp.token[:24]}"


def answer(request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_call is not None:
        function = {"name": reply.tool_call.name, "arguments": reply.tool_call.arguments}
        message["content"] = None
        message["tool_calls"] = [{"id": _call_id(stamp), "type": "function", "function": function}]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
    return {**_base(request, stamp, "chat.completion"), "choices": [choice], "usage": _usage(usage)}


class ChatStream:
    """``chat.completion.chunk`` events: the role (and the tool call's name) at once, then the
    content or the arguments piece by piece, the finish reason, the usage chunk if asked, ``[DONE]``."""

    def __init__(self, request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> None:
        self._reply, self._usage = reply, usage
        self._with_usage = request.stream_usage
        self._base = _base(request, stamp, "chat.completion.chunk")
        self._call_id = _call_id(stamp)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Event:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data: dict[str, Any] = {**self._base, "choices": [choice]}
        if self._with_usage:
            data["usage"] = None  # as OpenAI does: present but null until the last chunk
        return Event(None, data)

    def start(self) -> list[Event]:
        call = self._reply.tool_call
        if call is None:
            return [self._chunk({"role": "assistant", "content": ""})]
        tool = {"index": 0, "id": self._call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        return [self._chunk({"role": "assistant", "content": None, "tool_calls": [tool]})]

    def delta(self, piece: str) -> list[Event]:
        if self._reply.tool_call is None:
            return [self._chunk({"content": piece})]
        return [self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})]

    def end(self) -> list[Event]:
        events = [self._chunk({}, _finish(self._reply))]
        if self._with_usage:
            events.append(Event(None, {**self._base, "choices": [], "usage": _usage(self._usage)}))
        events.append(Event(None, "[DONE]"))
        return events


def stream(request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> ChatStream:
    return ChatStream(request, reply, usage, stamp)


def models(ids: Sequence[str]) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "signgate"} for i in ids]}


# --- usage -----------------------------------------------------------------------------------


def _read_usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return Usage(_read.tokens(value.get("prompt_tokens")), _read.tokens(value.get("completion_tokens")))


def answer_usage(answer: object) -> Usage | None:
    """``usage.prompt_tokens`` and ``usage.completion_tokens`` of a ``chat.completion``."""
    return _read_usage(answer.get("usage")) if isinstance(answer, dict) else None


def event_usage(data: object) -> Usage | None:
    """The ``usage`` of a chunk: null on every chunk but the last when asked for, absent otherwise."""
    return _read_usage(data.get("usage")) if isinstance(data, dict) else None


# --- what the gateway's policy reads ---------------------------------------------------------

#: Every top-level field of a chat-completions request (and the names OpenAI-compatible servers
#: add): another spelling of any is refused.
TOP_FIELDS = Spellings(
    {
        "model", "messages", "max_tokens", "max_completion_tokens", "n", "stream", "stream_options",
        "response_format", "tools", "tool_choice", "functions", "function_call", "parallel_tool_calls",
        "temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty", "logit_bias",
        "logprobs", "top_logprobs", "user", "metadata", "store", "service_tier", "reasoning_effort",
        "modalities", "audio", "prediction", "web_search_options", "verbosity", "best_of", "echo",
        "suffix", "prompt", "safety_identifier", "prompt_cache_key", "n_predict", "n_cmpl",
    }
)  # fmt: skip
MESSAGE_FIELDS = Spellings({"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal"})
PART_FIELDS = Spellings({"type", "text", "image_url", "input_audio", "file", "refusal"})
STREAM_OPTION_FIELDS = Spellings({"include_usage", "include_obfuscation"})

# Top-level fields that hold no text for the model, only settings: not counted as prompt text.
_SETTINGS = frozenset(
    {
        "model", "max_tokens", "max_completion_tokens", "n", "stream", "stream_options", "temperature", "top_p",
        "seed", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user",
        "metadata", "store", "service_tier", "reasoning_effort", "parallel_tool_calls", "modalities", "verbosity",
        "safety_identifier", "prompt_cache_key", "best_of", "n_predict", "n_cmpl",
    }
)  # fmt: skip
# Other names some OpenAI-compatible upstreams read for the output cap and the number of
# choices, checked as strictly: llama.cpp's server reads n_predict before max_completion_tokens
# and max_tokens, and n_cmpl before n; vLLM generates best_of choices to return n of them.
EXTRA_CAPS = ("n_predict",)
CHOICES = ("n", "n_cmpl", "best_of")
# Fields with which some upstream replaces what a rule fixes: the chat template that lays out the
# system prompt (vLLM), and the grammar or schema that shapes the answer (vLLM's guided decoding,
# llama.cpp's grammar and json_schema). The Responses and Messages APIs of llama.cpp's server
# read them too.
REPLACES = {
    "system_prompt": ("chat_template",),
    "response_format": (
        "guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs", "grammar",
        "json_schema",
    ),
}  # fmt: skip
_SYSTEM_ROLES = ("system", "developer")


class ChatBody(Governed):
    """A chat-completions body: the system prompt is the first message, the only one of role
    ``system`` or ``developer``; the cap is ``max_tokens`` or ``max_completion_tokens``."""

    top = TOP_FIELDS
    settings = _SETTINGS
    replaces = REPLACES
    signed_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "response_format": ("response_format",),
        "tools": ("tools",),
        "tool_choice": ("tool_choice",),
    }
    needs: ClassVar[Mapping[str, tuple[str, ...]]] = {
        **Governed.needs,
        "system_prompt": ("messages",),
        "max_user_chars": ("messages",),
    }
    __slots__ = ()

    def check_spelling(self) -> None:
        super().check_spelling()
        check_spelling(self.data.get("stream_options"), STREAM_OPTION_FIELDS, "stream_options")
        messages = self.data.get("messages")
        if isinstance(messages, list):
            for i, message in enumerate(messages):
                check_spelling(message, MESSAGE_FIELDS, f"messages[{i}]")
                content = message.get("content") if isinstance(message, dict) else None
                check_each(content, PART_FIELDS, f"messages[{i}].content")

    def caps(self) -> list[tuple[str, Any]]:
        return [(n, self.data[n]) for n in ("max_tokens", "max_completion_tokens", *EXTRA_CAPS) if n in self.data]

    def insert_cap(self, ceiling: int) -> bool:
        # n_predict alone sets no ceiling: upstreams that do not know it (vLLM, OpenAI) ignore it.
        if "max_tokens" in self.data or "max_completion_tokens" in self.data:
            return False
        self.data["max_tokens"] = ceiling
        return True

    def multipliers(self) -> list[tuple[str, Any]]:
        return [(n, self.data[n]) for n in CHOICES if n in self.data]

    def _messages(self) -> list[dict[str, Any]]:
        messages = self.data.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise PolicyViolation("messages", "messages must be a list of objects")
        return messages

    def check_system(self, matches: Any) -> None:
        messages = self._messages()
        system = [i for i, m in enumerate(messages) if m.get("role") in _SYSTEM_ROLES]
        first = text_of(messages[0].get("content")) if messages else None
        if system != [0] or first is None or not matches(first):
            raise PolicyViolation(
                "system_prompt", "the first message must be the signed system prompt, and the only one"
            )

    def response_format(self) -> Any:
        value = self.data.get("response_format", MISSING)
        return MISSING if value is None else value

    def other_tools(self, rule: str) -> list[str]:
        # The functions API that tools replaced: still read by OpenAI and many compatible servers.
        return [n for n in (("functions",) if rule == "tools" else ("function_call",)) if n in self.data]

    def check_text(self, signed: frozenset[str] = frozenset()) -> None:
        super().check_text(signed)
        for message in self._messages():
            content = message.get("content")
            if content is not None and text_of(content) is None:
                # An image or a file costs tokens that no character count can see.
                raise not_text("max_user_chars", "message content must be text (a string or text parts)")

    def field_chars(self, name: str, value: Any, signed: frozenset[str]) -> int:
        if name == "messages" and "system_prompt" in signed and isinstance(value, list) and value:
            # Only the signed text of the system message is left out, not what the client adds to it.
            first, value = value[0], value[1:]
            unsigned = (
                {k: v for k, v in first.items() if k not in ("role", "content")} if isinstance(first, dict) else {}
            )
            return (count_chars(unsigned) if unsigned else 0) + count_chars(value)
        return count_chars(value)

    def ask_for_usage(self) -> bool:
        # Chat Completions reports a stream's usage only when asked (stream_options.include_usage).
        if self.data.get("stream") is not True:
            return False
        options = self.data.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return False
        self.data["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return True

    def builtin_tools(self) -> list[str]:
        # OpenAI's search models search the web for every request that names the option.
        searching = ["web_search_options"] if "web_search_options" in self.data else []
        return searching + super().builtin_tools()

    def usage_only(self, event: Mapping[str, Any]) -> bool:
        return bool(event.get("usage")) and not event.get("choices")


def governed(body: dict[str, Any], route: Route) -> ChatBody:
    return ChatBody(body, route)


def upstream(path: str, query: Query) -> Route | None:
    """The route of an upstream URL's (decoded) path: any base URL, then ``/chat/completions``
    (OpenAI's ``/v1``, Azure's ``/openai/deployments/NAME``, OpenRouter's ``/api/v1``, ...)."""
    return Route("generate") if path.endswith("/chat/completions") else None
