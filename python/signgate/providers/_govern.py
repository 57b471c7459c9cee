"""Where each thing a body policy governs lives in one API's request body.

The gateway's policy rules (:mod:`signgate.gateway.policy`) and its accounting are the same for
every API; what differs is where the model, the output-token cap, the system prompt, the
answer's format, the tools, the stream flag and the prompt text are. Each provider module
builds a :class:`Governed` view of a body (``governed(body, route)``) that answers those
questions for its API, and raises :class:`~signgate.errors.PolicyViolation` for a body whose
shape no rule could be checked on (a system prompt in a second place, an image under a prompt
limit).

The body has already been read by :func:`signgate.strict_json.loads`; here every key a rule
reads is also held to one spelling (:class:`~signgate.strict_json.Spellings`), because the
upstream's decoder may read ``"MODEL"`` or ``"\\u017ftream"`` as the key the rule checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from ..errors import PolicyViolation
from ..strict_json import Spellings, check_spelling
from .base import Route

#: A governed part the body does not have.
MISSING: Any = object()

#: The rules whose parts a policy can fix by their hash; their text is the backend's, not the
#: client's, so it does not count towards the prompt-size limit.
SIGNED_PARTS = ("system_prompt", "response_format", "tools", "tool_choice")

# Key names that are structure (message, part, block and tool fields, JSON Schema keywords), in
# any of the APIs: not counted as prompt text. Every other key name counts, and every value
# (see count_chars), but for the enumerations below. One set for all APIs: each is a short
# fixed word, and its value is counted whatever the key.
_STRUCTURE = frozenset(
    {
        # chat completions
        "role", "content", "name", "type", "text", "tool_calls", "tool_call_id", "function", "arguments", "id",
        "image_url", "url", "detail", "refusal", "function_call", "input_audio", "data", "format", "file",
        "file_id", "filename", "description", "parameters", "strict", "json_schema", "schema",
        # responses
        "input", "output", "call_id", "status", "annotations", "summary", "encrypted_content",
        # anthropic
        "input_schema", "tool_use_id", "is_error", "source", "media_type", "cache_control", "ttl", "thinking",
        "signature", "citations",
        # gemini
        "parts", "functionCall", "functionResponse", "function_response", "args", "response",
        "functionDeclarations", "function_declarations", "parametersJsonSchema", "parameters_json_schema",
        "thought", "thoughtSignature", "thought_signature", "mode", "allowedFunctionNames",
        "allowed_function_names", "functionCallingConfig", "function_calling_config", "propertyOrdering",
        "property_ordering",
        # JSON Schema
        "properties", "required", "items", "enum", "const", "anyOf", "oneOf", "allOf", "not", "$defs",
        "definitions", "$ref", "additionalProperties", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "minItems", "maxItems", "minLength", "maxLength", "pattern", "default", "title", "nullable", "multipleOf",
        "uniqueItems", "examples",
    }
)  # fmt: skip
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function", "model"})
_TYPES = frozenset(
    {
        "text", "image_url", "input_audio", "file", "function", "json_schema", "json_object", "object", "array",
        "string", "number", "integer", "boolean", "null", "refusal", "message", "input_text", "output_text",
        "function_call", "function_call_output", "tool_use", "tool_result", "custom", "auto", "any", "tool",
        "none", "ephemeral", "OBJECT", "ARRAY", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "NULL",
    }
)  # fmt: skip
_ENUM_VALUES = {"role": _ROLES, "type": _TYPES}


def count_chars(value: Any) -> int:
    """Characters of prompt text in ``value``: every string counts its characters; a number,
    true, false or null the characters of its JSON text (an integer's within one; chat templates
    write tool schemas out as JSON, and token ids are numbers); a key name that is not structure
    its characters; and a value with no text of its own (an empty string, list or object, or an
    object that only names a role or a type) counts one, as each still costs tokens upstream."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) or 1
        elif isinstance(item, list):
            total += not item
            stack.extend(item)
        elif isinstance(item, dict):
            textless = True
            for key, child in item.items():
                if key not in _STRUCTURE:
                    total += len(key)
                enum = _ENUM_VALUES.get(key)
                if enum is not None and isinstance(child, str) and child in enum:
                    continue
                textless = False
                stack.append(child)
            total += textless
        elif item is None or isinstance(item, bool):
            total += 5 if item is False else 4
        elif isinstance(item, int):  # its digits, from its size (str() of a long int takes quadratic time)
            total += item.bit_length() * 77 // 256 + 1 + (item < 0)
        else:  # a float
            total += len(repr(item))
    return total


def check_each(items: Any, spellings: Spellings, where: str) -> None:
    """:func:`check_spelling` of each object of a list (anything else passes)."""
    if isinstance(items, list):
        for i, item in enumerate(items):
            check_spelling(item, spellings, f"{where}[{i}]")


def text_of(content: Any, part_types: Iterable[str] = ("text",)) -> str | None:
    """The text of a content: a string, or a list of parts each ``{"type": <one of part_types>,
    "text": "..."}`` (other fields allowed), joined; None for anything else."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    kinds = frozenset(part_types)
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in kinds or not isinstance(part.get("text"), str):
            return None
        texts.append(part["text"])
    return "".join(texts)


def not_text(rule: str, what: str) -> PolicyViolation:
    """The refusal of content the prompt-size limit cannot count (an image, a file, a stored prompt)."""
    return PolicyViolation(rule, f"under a prompt-size limit, {what}")


class Governed:
    """One request body as the policy rules and the accounting see it, for one API.

    Subclasses say where each governed part is; the defaults fit a body whose ``model`` and
    ``stream`` are top-level fields. ``data`` is the body as :func:`signgate.strict_json.loads`
    read it; :meth:`insert_cap` and :meth:`ask_for_usage` change it in place.
    """

    #: Every top-level field of the API: another spelling of any is refused.
    top: ClassVar[Spellings]
    #: Top-level fields that hold settings, no text for the model: not counted as prompt text.
    settings: ClassVar[frozenset[str]] = frozenset()
    #: Fields with which some upstream replaces what a rule fixes (a grammar instead of the
    #: signed schema): refused under that rule.
    replaces: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: Fields that bring in text stored upstream (a previous response, a cached prompt): the
    #: prompt-size limit cannot count it, so they are refused under it.
    by_reference: ClassVar[tuple[str, ...]] = ()
    #: The top-level fields the parts fixed by each of SIGNED_PARTS live in (left out of the
    #: prompt count when signed); a provider with a part inside a field counts it itself.
    signed_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: Where the API keeps what the response_format, tools, tool_choice and stream rules fix, as
    #: a refusal names it.
    where: ClassVar[Mapping[str, str]] = {
        "response_format": "response_format",
        "tools": "tools",
        "tool_choice": "tool_choice",
        "stream": 'set "stream": true',
    }
    #: The top-level fields each rule reads (any one of a tuple), which a field allowlist must admit.
    needs: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "models": ("model",),
        "response_format": ("response_format",),
        "tools": ("tools",),
        "tool_choice": ("tool_choice",),
        "stream": ("stream",),
    }

    __slots__ = ("data", "route")

    def __init__(self, data: dict[str, Any], route: Route) -> None:
        self.data = data
        self.route = route

    # -- reading every governed key one way --------------------------------------------------------

    def check_spelling(self) -> None:
        """Raise InvalidJSON for another spelling of any key a rule or the accounting reads."""
        self.top.check(self.data, "the body")

    def field_name(self, name: str) -> str:
        """The one name of a top-level field that the API also takes in another spelling."""
        return name

    # -- models ------------------------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The model the request asks for, if it names one (for the usage record)."""
        model = self.data.get("model")
        return model if isinstance(model, str) else None

    def models(self) -> list[tuple[str, Any]]:
        """(where, value) of each model name the request gives; each must be allowed."""
        return [("model", self.data.get("model"))]

    # -- the output-token ceiling --------------------------------------------------------------------

    def caps(self) -> list[tuple[str, Any]]:
        """(where, value) of every output-token cap the body sets, under any name an upstream reads."""
        raise NotImplementedError

    def insert_cap(self, ceiling: int) -> bool:
        """Set the API's cap to ``ceiling`` when the body sets none an upstream obeys; returns
        whether the body changed."""
        raise NotImplementedError

    def multipliers(self) -> list[tuple[str, Any]]:
        """(where, value) of fields that multiply the cost (several choices); each must be 1."""
        return []

    def budgets(self) -> list[tuple[str, Any]]:
        """(where, value) of thinking budgets; each must be a whole number within the ceiling."""
        return []

    # -- fixed parts ---------------------------------------------------------------------------------

    def check_system(self, matches: Any) -> None:
        """Raise PolicyViolation("system_prompt") unless the body's system prompt is one text,
        in the API's one place for it, for which ``matches(text)`` is true."""
        raise NotImplementedError

    def response_format(self) -> Any:
        """The value the response_format rule fixes, or MISSING."""
        raise NotImplementedError

    def tools(self) -> Any:
        """The tool set, or MISSING."""
        value = self.data.get("tools", MISSING)
        return MISSING if value is None else value

    def tool_choice(self) -> Any:
        """The tool choice, or MISSING."""
        value = self.data.get("tool_choice", MISSING)
        return MISSING if value is None else value

    def other_tools(self, rule: str) -> list[str]:
        """Fields that would add tools or choose one beside the fixed ones (legacy names, remote
        tool servers): refused under ``rule`` (tools or tool_choice)."""
        return []

    # -- streaming -----------------------------------------------------------------------------------

    def stream_value(self) -> Any:
        """The body's stream flag as given (None when absent or when the path says it)."""
        return self.data.get("stream")

    def streams(self) -> bool:
        """Whether the answer is streamed."""
        return self.data.get("stream") is True

    # -- the prompt ----------------------------------------------------------------------------------

    def check_text(self, signed: frozenset[str] = frozenset()) -> None:
        """Raise PolicyViolation("max_user_chars") for prompt content no character count can
        see: images, files, audio, text stored upstream, and (unless the policy fixes the tools)
        built-in tools that fetch text upstream."""
        for name in self.by_reference:
            if name in self.data:
                raise not_text(
                    "max_user_chars",
                    f"{name!r} is refused: it brings in text stored upstream, which the gateway cannot count",
                )
        builtin = self.builtin_tools() if "tools" not in signed else []
        if builtin:
            raise not_text(
                "max_user_chars",
                f"{builtin[0][:60]!r} is refused: a built-in tool brings in text fetched upstream (search results, "
                "pages, files), which the gateway cannot count; only function tools, or tools the policy fixes",
            )

    def builtin_tools(self) -> list[str]:
        """The API's own tools the body asks for (web search, URL fetching, file search, code
        execution): what they bring into the prompt is fetched upstream."""
        tools = self.tools()
        return [
            str(tool.get("type")) for tool in (tools if isinstance(tools, list) else [])
            if isinstance(tool, dict) and tool.get("type") not in ("function", "custom")
        ]  # fmt: skip

    def prompt_chars(self, signed: frozenset[str] = frozenset()) -> int:
        """Characters of every piece of text in the body the model may read (see count_chars):
        every field that is not a known setting, the name of a field the API does not define
        too. ``signed`` names the SIGNED_PARTS the policy fixes: their text is left out."""
        skipped = {name for rule in signed for name in self.signed_fields.get(rule, ())}
        total = 0
        for name, value in self.data.items():
            if name in self.settings or name in skipped:
                continue
            if name not in self.top.keys:  # a field no version of the API defines: its name may be text too
                total += len(name)
            total += self.field_chars(name, value, signed)
        return total

    def field_chars(self, name: str, value: Any, signed: frozenset[str]) -> int:
        """The prompt characters of one top-level field (a provider leaves signed parts out of
        fields that hold more than them)."""
        return count_chars(value)

    # -- usage ---------------------------------------------------------------------------------------

    def ask_for_usage(self) -> bool:
        """Ask a streaming upstream to report usage when the API only does so when asked;
        returns whether the body changed (and the added usage event must be kept from the
        client: see :meth:`usage_only`)."""
        return False

    def usage_only(self, event: Mapping[str, Any]) -> bool:
        """Whether a stream event carries usage and nothing else (the one :meth:`ask_for_usage` adds)."""
        return False
