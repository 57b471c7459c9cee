"""Google Gemini (``POST /v1beta/models/M:generateContent`` and
``:streamGenerateContent?alt=sse``; ``v1`` and ``v1alpha`` too).

The model is in the path. Request: ``contents``, ``systemInstruction``, ``generationConfig``
(``maxOutputTokens``, ``responseMimeType``, ``responseSchema`` in Gemini's OpenAPI-style
dialect or ``responseJsonSchema`` in JSON Schema), ``tools[].functionDeclarations``,
``toolConfig.functionCallingConfig``. The key is in ``x-goog-api-key`` (Google also takes a
``key`` query parameter; :func:`api_key` refuses it). Answer: ``candidates[0].content.parts``
with ``text`` or a ``functionCall``, and ``usageMetadata``; a stream is a series of such
answers, one per ``data:`` event.

Google's JSON mapping accepts every field in lowerCamelCase or in snake_case (the official
Python client sends some of each), so both spellings are read; a request that gives one field
in both is refused, because which one wins would be a guess.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..errors import InvalidJSON, PolicyViolation
from ..strict_json import Spellings, check_spelling
from . import _read
from ._govern import MISSING, Governed, check_each, count_chars, not_text
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

name: str = "gemini"
key_headers: tuple[str, ...] = ("x-goog-api-key",)
_PATH = re.compile(r"^/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$")
_NAMESPACE = re.compile(r"^/(v1beta|v1alpha)(/|$)|^/v1/models/[^/]*:")
_MODELS = re.compile(r"^/(v1beta|v1alpha)/models$")
_UPPER = re.compile(r"(?<!^)([A-Z])")
_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$")
METHODS = {"generateContent": False, "streamGenerateContent": True}
MODES = ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED")
ROLES = {"user": "user", "model": "assistant", "function": "tool"}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
}
#: How deep a schema is converted from Gemini's dialect; deeper parts are kept as they are.
MAX_SCHEMA_DEPTH = 32


def match(method: str, path: str, query: Query) -> Route | None:
    if _MODELS.match(path):
        return Route("models", methods=("GET",))
    found = _PATH.match(path)
    if found is None:
        if _NAMESPACE.match(path):
            raise ProviderError(
                f"{path} names no method the stand-in serves; use "
                "/v1beta/models/MODEL:generateContent or :streamGenerateContent?alt=sse.",
                status=404,
            )
        return None
    if found["method"] not in METHODS:
        raise ProviderError(
            f"Method {found['method']!r} is not served; use generateContent or streamGenerateContent.", status=404
        )
    stream = METHODS[found["method"]]
    if stream and _read.one_query_value(query, "alt") != "sse":
        raise ProviderError(
            "streamGenerateContent is served as server-sent events only: add ?alt=sse to the URL.", param="alt"
        )
    return Route("generate", model=found["model"], stream=stream)


def auth_header(key: str) -> tuple[str, str]:
    return "x-goog-api-key", key


def api_key(headers: Headers, query: Query) -> str:
    """The ``x-goog-api-key`` header. Gemini also takes ``?key=``, but a key in a URL ends up
    in access logs and browser history, so it is refused here: a 401 that says where to put it."""
    if query.get("key"):
        raise ProviderError(
            "Send the API key in the x-goog-api-key header, not as ?key= in the URL: URLs end up in logs.",
            status=401,
            code="API_KEY_INVALID",
        )
    header = headers.get("x-goog-api-key")
    if header is None:
        raise ProviderError(
            "API key not given. Send it as 'x-goog-api-key: <key>'.", status=401, code="API_KEY_INVALID"
        )
    return header.strip()


def check_headers(headers: Headers) -> None:
    """Gemini needs no header besides the key."""


def error(err: ProviderError) -> dict[str, Any]:
    """Google's error body: ``{"error": {"code", "message", "status", "details"}}``."""
    status = _STATUS.get(err.status, "INTERNAL" if err.status >= 500 else "INVALID_ARGUMENT")
    body: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
    if err.param:
        violation = {"field": err.param, "description": err.message}
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}]
    return {"error": body}


# --- reading ---------------------------------------------------------------------------------


@functools.cache  # the names are this module's own literals: a fixed, small set
def _snake(camel: str) -> str:
    return _UPPER.sub(r"_\1", camel).lower()


def field(obj: Mapping[str, Any], camel: str, where: str = "") -> Any:
    """``obj[camel]`` or its snake_case twin; a 400 if both are given."""
    snake = _snake(camel)
    if camel in obj and snake in obj and snake != camel:
        here = f"{where}.{camel}" if where else camel
        raise ProviderError(f"{here} is given twice, as {camel!r} and {snake!r}; give it once.", param=here)
    return obj.get(camel, obj.get(snake))


_SCHEMA_KEYS = {
    "any_of": "anyOf",
    "max_items": "maxItems",
    "min_items": "minItems",
    "max_length": "maxLength",
    "min_length": "minLength",
    "max_properties": "maxProperties",
    "min_properties": "minProperties",
    "property_ordering": "propertyOrdering",
}


def json_schema(node: Any, depth: int = 0) -> Any:
    """Gemini's schema dialect (OpenAPI 3.0: ``"type": "OBJECT"``, ``nullable``,
    ``propertyOrdering``, snake_case keys) as JSON Schema."""
    if not isinstance(node, Mapping) or depth > MAX_SCHEMA_DEPTH:
        return node
    out: dict[str, Any] = {}
    nullable = False
    for key, value in node.items():
        key = _SCHEMA_KEYS.get(key, key)
        if key == "propertyOrdering":
            continue
        if key == "nullable":
            nullable = value is True
            continue
        if key == "type" and isinstance(value, str):
            value = value.lower()
        elif key == "properties" and isinstance(value, Mapping):
            value = {k: json_schema(v, depth + 1) for k, v in value.items()}
        elif key == "items":
            value = json_schema(value, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            value = [json_schema(v, depth + 1) for v in value]
        out[key] = value
    if nullable:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif isinstance(out.get("anyOf"), list):
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _parts(content: Mapping[str, Any], where: str) -> tuple[str, list[str], list[str]]:
    """(text, function-call arguments, function responses) of a ``Content``'s parts."""
    texts: list[str] = []
    calls: list[str] = []
    results: list[str] = []
    for index, part in enumerate(_read.array(content.get("parts"), f"{where}.parts", nonempty=True)):
        here = f"{where}.parts[{index}]"
        part = _read.mapping(part, here, '{"text": "..."}')
        if part.get("text") is not None:
            texts.append(_read.string(part["text"], f"{here}.text", nonempty=False))
        call = field(part, "functionCall", here)
        if isinstance(call, Mapping):
            calls.append(_read.json_text(call.get("args") or {}, f"{here}.functionCall.args"))
        result = field(part, "functionResponse", here)
        if isinstance(result, Mapping):
            results.append(_read.json_text(result.get("response") or {}, f"{here}.functionResponse.response"))
    return _read.joined_text(texts), calls, results


def _contents(value: Any) -> tuple[Turn, ...]:
    turns: list[Turn] = []
    for index, content in enumerate(_read.array(value, "contents", nonempty=True)):
        where = f"contents[{index}]"
        content = _read.mapping(content, where, '{"role": "user", "parts": [{"text": "..."}]}')
        role = content.get("role") or "user"
        if role not in ROLES:
            raise ProviderError(f"{where}.role is {role!r}; use 'user' or 'model'.", param=f"{where}.role")
        text, calls, results = _parts(content, where)
        turns += [Turn("tool", r) for r in results]
        if text or calls or not results:
            turns.append(Turn(ROLES[role], _read.joined_text([text, *calls])))  # type: ignore[arg-type]
    return tuple(turns)


def _output(config: Mapping[str, Any]) -> OutputFormat:
    where = "generationConfig"
    mime = field(config, "responseMimeType", where)
    schema, dialect = field(config, "responseSchema", where), field(config, "responseJsonSchema", where)
    if schema is not None and dialect is not None:
        raise ProviderError("Give responseSchema or responseJsonSchema, not both.", param=f"{where}.responseJsonSchema")
    if mime not in (None, "text/plain", "application/json"):
        raise ProviderError(
            f"{where}.responseMimeType {mime!r} is not served; use application/json or text/plain.",
            param=f"{where}.responseMimeType",
        )
    if schema is None and dialect is None:
        return OutputFormat("json") if mime == "application/json" else OutputFormat()
    if mime != "application/json":
        raise ProviderError(
            f"A response schema needs {where}.responseMimeType 'application/json'.", param=f"{where}.responseMimeType"
        )
    if dialect is not None:
        return OutputFormat("json_schema", _read.schema(dialect, f"{where}.responseJsonSchema"))
    return OutputFormat("json_schema", json_schema(_read.schema(schema, f"{where}.responseSchema")))


def _tools(value: Any) -> tuple[Tool, ...]:
    """The function declarations; other tools (Google Search, code execution) are passed over."""
    tools = []
    for index, tool in enumerate(_read.array(value, "tools")):
        where = f"tools[{index}]"
        tool = _read.mapping(tool, where, '{"functionDeclarations": [...]}')
        declarations = field(tool, "functionDeclarations", where)
        if declarations is None:
            continue
        for number, spec in enumerate(_read.array(declarations, f"{where}.functionDeclarations")):
            here = f"{where}.functionDeclarations[{number}]"
            spec = _read.mapping(spec, here, '{"name": ..., "parameters": {...}}')
            tool_name = _read.function_name(spec.get("name"), f"{here}.name", _FUNCTION_NAME)
            parameters, dialect = spec.get("parameters"), field(spec, "parametersJsonSchema", here)
            if parameters is not None and dialect is not None:
                raise ProviderError(f"Give {here}.parameters or .parametersJsonSchema, not both.", param=here)
            if dialect is not None:
                schema = _read.schema(dialect, f"{here}.parametersJsonSchema")
            elif parameters is not None:
                schema = json_schema(_read.schema(parameters, f"{here}.parameters"))
            else:
                schema = {}
            description = _read.optional_string(spec.get("description"), f"{here}.description")
            tools.append(Tool(tool_name, description, schema))
    _read.unique_names([t.name for t in tools], "tools")
    return tuple(tools)


def _tool_choice(request: Mapping[str, Any], tools: tuple[Tool, ...]) -> ToolChoice:
    config = field(request, "toolConfig")
    spec = None
    if config is not None:
        spec = field(_read.mapping(config, "toolConfig", '{"functionCallingConfig": {...}}'), "functionCallingConfig")
    if spec is None:
        return ToolChoice("auto" if tools else "none")
    where = "toolConfig.functionCallingConfig"
    spec = _read.mapping(spec, where, '{"mode": "ANY"}')
    mode = spec.get("mode") or "AUTO"
    if mode not in MODES:
        raise ProviderError(f"{where}.mode must be one of {', '.join(MODES)}.", param=f"{where}.mode")
    names = field(spec, "allowedFunctionNames", where)
    if names is not None:
        if mode not in ("ANY", "VALIDATED"):
            raise ProviderError(
                f"{where}.allowedFunctionNames is only allowed with mode ANY or VALIDATED.",
                param=f"{where}.allowedFunctionNames",
            )
        listed = [_read.string(n, f"{where}.allowedFunctionNames[{i}]") for i, n in enumerate(_read.array(names, ""))]
        names = _read.known_names(listed, [t.name for t in tools], f"{where}.allowedFunctionNames")
    if mode == "NONE":
        return ToolChoice("none")
    return ToolChoice("required" if mode == "ANY" else "auto", tuple(names or ()))


def read_request(body: object, route: Route) -> Request:
    request = _read.body_object(body, "with 'contents'")
    system: tuple[str, ...] = ()
    instruction = field(request, "systemInstruction")
    if instruction is not None:
        text = _parts(
            _read.mapping(instruction, "systemInstruction", '{"parts": [{"text": "..."}]}'), "systemInstruction"
        )[0]
        system = (text,) if text else ()
    config = field(request, "generationConfig")
    config = {} if config is None else _read.mapping(config, "generationConfig", '{"maxOutputTokens": 1024}')
    candidates = field(config, "candidateCount", "generationConfig")
    if candidates is not None and candidates != 1:
        raise ProviderError(
            "The stand-in answers with one candidate; set candidateCount to 1 or leave it out.",
            param="generationConfig.candidateCount",
        )
    tools = _tools(field(request, "tools")) if request.get("tools") is not None else ()
    return Request(
        model=route.model or "",
        system=system,
        turns=_contents(request.get("contents")),
        output=_output(config),
        tools=tools,
        tool_choice=_tool_choice(request, tools),
        stream=bool(route.stream),
        max_output_tokens=_read.count(
            field(config, "maxOutputTokens", "generationConfig"), "generationConfig.maxOutputTokens"
        ),
    )


# --- writing ---------------------------------------------------------------------------------


def _usage(usage: Usage, *, final: bool = True) -> dict[str, Any]:
    prompt = usage.input_tokens or 0
    if not final:
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    made = usage.output_tokens or 0
    return {"promptTokenCount": prompt, "candidatesTokenCount": made, "totalTokenCount": prompt + made}


def _part(reply: Reply, text: str) -> dict[str, Any]:
    if reply.tool_call is None:
        return {"text": text}
    return {"functionCall": {"name": reply.tool_call.name, "args": json.loads(reply.tool_call.arguments)}}


def _chunk(
    request: Request, stamp: Stamp, part: dict[str, Any], finish: str | None, usage: dict[str, Any]
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": request.model, "responseId": stamp.token}


def _finish(reply: Reply) -> str:
    return "MAX_TOKENS" if reply.cut and reply.tool_call is None else "STOP"


def answer(request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> dict[str, Any]:
    return _chunk(request, stamp, _part(reply, reply.text), _finish(reply), _usage(usage))


class GeminiStream:
    """One answer-shaped chunk per text piece (usage so far: the prompt), and a last chunk with
    the finish reason and full ``usageMetadata``. A function call is not streamed piece by
    piece (Gemini sends it whole): it comes in the last chunk."""

    def __init__(self, request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> None:
        self._request, self._reply, self._usage, self._stamp = request, reply, usage, stamp

    def start(self) -> list[Event]:
        return []

    def delta(self, piece: str) -> list[Event]:
        if self._reply.tool_call is not None:
            return []
        usage = _usage(self._usage, final=False)
        return [Event(None, _chunk(self._request, self._stamp, {"text": piece}, None, usage))]

    def end(self) -> list[Event]:
        part = _part(self._reply, "")
        return [Event(None, _chunk(self._request, self._stamp, part, _finish(self._reply), _usage(self._usage)))]


def stream(request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> GeminiStream:
    return GeminiStream(request, reply, usage, stamp)


def models(ids: Sequence[str]) -> dict[str, Any]:
    methods = ["generateContent", "streamGenerateContent"]
    return {
        "models": [
            {"name": f"models/{i}", "version": "1", "displayName": i, "supportedGenerationMethods": methods}
            for i in ids
        ]
    }


# --- usage -----------------------------------------------------------------------------------


#: The usage counts read, each in both spellings: prompt, tool-use prompt, candidates, thoughts.
_USAGE_FIELDS = tuple(
    (camel, _snake(camel))
    for camel in ("promptTokenCount", "toolUsePromptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
)


def _either(obj: dict[str, Any], camel: str, snake: str) -> tuple[bool, Any]:
    """(False, None) if ``obj`` gives the field in both spellings, else (True, its value)."""
    first, second = obj.get(camel), obj.get(snake)
    if first is not None and second is not None:
        return False, None
    return True, first if second is None else second


def _read_usage(value: object) -> Usage | None:
    """Input is ``promptTokenCount`` plus ``toolUsePromptTokenCount``; output is
    ``candidatesTokenCount`` plus ``thoughtsTokenCount`` (thinking is billed as output). A count
    given in both spellings leaves no count to trust: None."""
    if not isinstance(value, dict):
        return None
    counts: list[int | None] = []
    for camel, snake in _USAGE_FIELDS:
        first, second = value.get(camel), value.get(snake)
        if first is not None and second is not None:
            return None
        count = first if second is None else second
        counts.append(count if type(count) is int and count >= 0 else None)
    prompt, tool_prompt, made, thought = counts
    return Usage(_sum(prompt, tool_prompt), _sum(made, thought))


def _sum(first: int | None, second: int | None) -> int | None:
    return first if second is None else second if first is None else first + second


def answer_usage(answer: object) -> Usage | None:
    """``usageMetadata`` of a ``GenerateContentResponse`` (parsed JSON: dicts and lists)."""
    if not isinstance(answer, dict):
        return None
    clear, usage = _either(answer, "usageMetadata", "usage_metadata")
    return _read_usage(usage) if clear else None


def event_usage(data: object) -> Usage | None:
    """Every streamed chunk is a ``GenerateContentResponse``; its counts are cumulative."""
    return answer_usage(data)


# --- what the gateway's policy reads ---------------------------------------------------------


def _twins(*camels: str) -> frozenset[str]:
    """Each name in lowerCamelCase and in snake_case: Google's JSON mapping reads both."""
    return frozenset({*camels, *(_snake(c) for c in camels)})


_GENERATION_SETTINGS = (
    "stopSequences", "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK",
    "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers",
    "speechConfig", "thinkingConfig", "imageConfig", "mediaResolution", "routingConfig", "audioTimestamp",
)  # fmt: skip
#: The generationConfig fields that shape the answer: what the response_format rule fixes.
FORMAT_FIELDS = ("responseMimeType", "responseSchema", "responseJsonSchema")
#: Every top-level field of a generateContent request, in both spellings.
TOP_FIELDS = Spellings(
    _twins(
        "contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig",
        "cachedContent", "model", "labels",
    )
)  # fmt: skip
GENERATION_FIELDS = Spellings(_twins(*_GENERATION_SETTINGS, *FORMAT_FIELDS))
THINKING_FIELDS = Spellings(_twins("includeThoughts", "thinkingBudget", "thinkingLevel"))
CONTENT_FIELDS = Spellings({"role", "parts"})
_TEXT_PARTS = _twins("text", "functionCall", "functionResponse", "thought", "thoughtSignature")
PART_FIELDS = Spellings(
    _TEXT_PARTS
    | _twins("inlineData", "fileData", "executableCode", "codeExecutionResult", "videoMetadata", "partMetadata")
)
TOOL_CONFIG_FIELDS = Spellings(_twins("functionCallingConfig", "retrievalConfig"))
_SETTINGS = _twins("safetySettings", "model", "labels")
_GENERATION_SETTING_NAMES = _twins(*_GENERATION_SETTINGS)
_FORMAT_NAMES = _twins(*FORMAT_FIELDS)


_SNAKE_PART = re.compile(r"_([a-z0-9])")


def camel_case(name: str) -> str:
    """The lowerCamelCase twin of a snake_case field name (other names as they are)."""
    return _SNAKE_PART.sub(lambda m: m[1].upper(), name) if name.islower() and "_" in name else name


def _pick(obj: Any, camel: str, where: str) -> Any:
    """``obj``'s field ``camel`` in either spelling, or MISSING; InvalidJSON if given in both."""
    if not isinstance(obj, dict):
        return MISSING
    snake = _snake(camel)
    if camel in obj and snake in obj and snake != camel:
        # Which one Google's mapping keeps would be a guess; a policy could read the other.
        raise InvalidJSON(f"{where}{camel} is given twice, as {camel!r} and {snake!r}; send it once")
    value = obj.get(camel, obj.get(snake, MISSING))
    return MISSING if value is None else value


class GeminiBody(Governed):
    """A generateContent body: the model and streaming are in the URL's path, the system prompt
    is ``systemInstruction`` (text parts), the cap ``generationConfig.maxOutputTokens``, the
    answer's format the ``generationConfig`` fields in FORMAT_FIELDS. Every field may come in
    lowerCamelCase or snake_case, never both."""

    top = TOP_FIELDS
    settings = _SETTINGS
    # Content cached upstream is prompt text the gateway never sees.
    by_reference = tuple(_twins("cachedContent"))
    signed_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "system_prompt": tuple(_twins("systemInstruction")),
        "tools": ("tools",),
        "tool_choice": tuple(_twins("toolConfig")),
    }
    where: ClassVar[Mapping[str, str]] = {
        "response_format": "generationConfig's responseMimeType, responseSchema and responseJsonSchema",
        "tools": "tools",
        "tool_choice": "toolConfig",
        "stream": "call :streamGenerateContent?alt=sse",
    }
    needs: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "system_prompt": ("systemInstruction",),
        "max_user_chars": ("contents",),
        "response_format": ("generationConfig",),
        "tools": ("tools",),
        "tool_choice": ("toolConfig",),
    }
    __slots__ = ()

    def check_spelling(self) -> None:
        super().check_spelling()
        config = _pick(self.data, "generationConfig", "")
        check_spelling(config, GENERATION_FIELDS, "generationConfig")
        check_spelling(_pick(config, "thinkingConfig", "generationConfig."), THINKING_FIELDS, "thinkingConfig")
        check_spelling(_pick(self.data, "toolConfig", ""), TOOL_CONFIG_FIELDS, "toolConfig")
        instruction = _pick(self.data, "systemInstruction", "")
        check_spelling(instruction, CONTENT_FIELDS, "systemInstruction")
        if isinstance(instruction, dict):
            check_each(instruction.get("parts"), PART_FIELDS, "systemInstruction.parts")
        contents = self.data.get("contents")
        if isinstance(contents, list):
            for i, content in enumerate(contents):
                check_spelling(content, CONTENT_FIELDS, f"contents[{i}]")
                parts = content.get("parts") if isinstance(content, dict) else None
                check_each(parts, PART_FIELDS, f"contents[{i}].parts")
                for j, part in enumerate(parts if isinstance(parts, list) else []):
                    for camel in ("functionCall", "functionResponse"):
                        _pick(part, camel, f"contents[{i}].parts[{j}].")

    def field_name(self, name: str) -> str:
        return camel_case(name)

    @property
    def model(self) -> str | None:
        return self.route.model

    def models(self) -> list[tuple[str, Any]]:
        # The URL's model is the one Google serves; a model in the body must be allowed as well.
        found: list[tuple[str, Any]] = [("the URL's model", self.route.model)]
        if "model" in self.data:
            value = self.data["model"]
            found.append(("model", value.removeprefix("models/") if isinstance(value, str) else value))
        return found

    def _config(self) -> Any:
        return _pick(self.data, "generationConfig", "")

    def caps(self) -> list[tuple[str, Any]]:
        value = _pick(self._config(), "maxOutputTokens", "generationConfig.")
        return [] if value is MISSING else [("generationConfig.maxOutputTokens", value)]

    def insert_cap(self, ceiling: int) -> bool:
        config = self._config()
        if config is MISSING:
            self.data["generationConfig"] = config = {}
        if not isinstance(config, dict):
            raise PolicyViolation("max_tokens", "generationConfig must be an object")
        if _pick(config, "maxOutputTokens", "generationConfig.") is not MISSING:
            return False
        # In the spelling the object already uses, so it is not given twice.
        config["max_output_tokens" if "generation_config" in self.data else "maxOutputTokens"] = ceiling
        return True

    def multipliers(self) -> list[tuple[str, Any]]:
        value = _pick(self._config(), "candidateCount", "generationConfig.")
        return [] if value is MISSING else [("generationConfig.candidateCount", value)]

    def budgets(self) -> list[tuple[str, Any]]:
        thinking = _pick(self._config(), "thinkingConfig", "generationConfig.")
        value = _pick(thinking, "thinkingBudget", "generationConfig.thinkingConfig.")
        return [] if value is MISSING else [("generationConfig.thinkingConfig.thinkingBudget", value)]

    def _contents(self) -> list[dict[str, Any]]:
        contents = self.data.get("contents")
        if not isinstance(contents, list) or not all(isinstance(c, dict) for c in contents):
            raise PolicyViolation("contents", "contents must be a list of objects")
        return contents

    def check_system(self, matches: Any) -> None:
        instruction = _pick(self.data, "systemInstruction", "")
        text = None
        if isinstance(instruction, dict) and instruction.keys() <= {"role", "parts"}:
            parts = instruction.get("parts")
            if isinstance(parts, list) and all(isinstance(p, dict) and p.keys() == {"text"} for p in parts):
                texts = [p["text"] for p in parts]
                text = "".join(texts) if all(isinstance(t, str) for t in texts) else None
        roles_ok = all(c.get("role", "user") in ROLES for c in self._contents())
        if text is None or not roles_ok or not matches(text):
            raise PolicyViolation(
                "system_prompt",
                "systemInstruction must be the signed system prompt (text parts), and every content of role "
                "user, model or function",
            )

    def response_format(self) -> Any:
        config = self._config()
        if not isinstance(config, dict):
            return MISSING
        for key in config:
            folded = key.replace("_", "").lower()
            if key not in _FORMAT_NAMES and ("schema" in folded or "mimetype" in folded):
                raise PolicyViolation(
                    "response_format", f"generationConfig.{key[:40]} would replace the signed response format"
                )
        found = {camel: _pick(config, camel, "generationConfig.") for camel in FORMAT_FIELDS}
        given = {camel: value for camel, value in found.items() if value is not MISSING}
        return given or MISSING

    def tools(self) -> Any:
        return _pick(self.data, "tools", "")

    def tool_choice(self) -> Any:
        return _pick(self.data, "toolConfig", "")

    def builtin_tools(self) -> list[str]:
        # Every tool but function declarations (googleSearch, urlContext, codeExecution, fileSearch, ...).
        tools = self.tools()
        return [
            key for tool in (tools if isinstance(tools, list) else []) if isinstance(tool, dict)
            for key in tool if camel_case(key) != "functionDeclarations"
        ]  # fmt: skip

    def stream_value(self) -> Any:
        return None

    def streams(self) -> bool:
        return bool(self.route.stream)

    def check_text(self, signed: frozenset[str] = frozenset()) -> None:
        super().check_text(signed)
        instruction = _pick(self.data, "systemInstruction", "")
        where_parts = [("systemInstruction", instruction)] if instruction is not MISSING else []
        where_parts += [(f"contents[{i}]", c) for i, c in enumerate(self._contents())]
        for where, content in where_parts:
            parts = content.get("parts") if isinstance(content, dict) else None
            if not isinstance(parts, list) or not all(isinstance(p, dict) and p.keys() <= _TEXT_PARTS for p in parts):
                raise not_text("max_user_chars", f"{where}.parts must be text, function calls or function responses")

    def field_chars(self, name: str, value: Any, signed: frozenset[str]) -> int:
        if name in ("generationConfig", "generation_config") and isinstance(value, dict):
            # Settings but for the answer's schema (text the model reads), unless it is signed.
            skip = _GENERATION_SETTING_NAMES | (_FORMAT_NAMES if "response_format" in signed else frozenset())
            value = {k: v for k, v in value.items() if k not in skip}
            return count_chars(value) if value else 0
        return count_chars(value)


def governed(body: dict[str, Any], route: Route) -> GeminiBody:
    return GeminiBody(body, route)


_UPSTREAM = re.compile(r"(?:^|/)models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")


def upstream(path: str, query: Query) -> Route | None:
    """The route of an upstream URL's (decoded) path: any base URL (Google AI's
    ``/v1beta``, Vertex AI's ``/v1/projects/P/locations/L/publishers/google``), then
    ``/models/MODEL:generateContent`` or ``:streamGenerateContent``. The model is read from
    the decoded path, so ``gemini%2D2.5-flash`` is ``gemini-2.5-flash``."""
    found = _UPSTREAM.search(path)
    if found is None:
        return None
    return Route("generate", model=found["model"], stream=found["method"] == "streamGenerateContent")
