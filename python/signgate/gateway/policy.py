"""Enforcing a bound body policy (``x-signgate-policy``) on a chat-completions request body.

The body arrives already read by :func:`signgate.strict_json.loads` (no duplicate keys, no NaN,
no lone surrogates, bounded depth). Here every key a rule reads must be spelled exactly
(:class:`~signgate.strict_json.Spellings`), every value a rule reads must have the exact JSON type
the rule expects (``true`` is not ``1``), and the prompt-size rule counts every piece of text the
client controls, whatever the message's role or the field.
"""

from __future__ import annotations

from typing import Any

from ..errors import PolicyViolation
from ..extensions import PolicyRules, canonical_json, sha256_hex
from ..strict_json import Spellings, check_spelling

#: Every top-level field of a chat-completions request: another spelling of any is refused.
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
# Other names some upstreams read for the settings the max_tokens rule fixes, checked as strictly:
# llama.cpp's server reads n_predict before max_completion_tokens and max_tokens, and n_cmpl
# before n; vLLM generates best_of choices to return n of them.
_OUTPUT_CAPS = ("max_tokens", "max_completion_tokens", "n_predict")
_CHOICES = ("n", "n_cmpl", "best_of")
# Fields with which some upstream replaces what a rule fixes: the chat template that lays out the
# system prompt (vLLM), and the grammar or schema that shapes the answer (vLLM's guided decoding,
# llama.cpp's grammar and json_schema).
_REPLACES = {
    "system_prompt": ("chat_template",),
    "response_format": (
        "guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs", "grammar",
        "json_schema",
    ),
}  # fmt: skip
# Key names that are structure (message and tool fields, JSON Schema keywords), not text: not
# counted. Every other key name is counted, and every value (see _chars), but for the enumerations below.
_STRUCTURE = frozenset(
    {
        "role", "content", "name", "type", "text", "tool_calls", "tool_call_id", "function", "arguments", "id",
        "image_url", "url", "detail", "refusal", "function_call", "input_audio", "data", "format", "file",
        "file_id", "filename", "description", "parameters", "strict", "json_schema", "schema", "properties",
        "required", "items", "enum", "const", "anyOf", "oneOf", "allOf", "not", "$defs", "definitions", "$ref",
        "additionalProperties", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems",
        "maxItems", "minLength", "maxLength", "pattern", "default", "title", "nullable", "multipleOf",
        "uniqueItems", "examples",
    }
)  # fmt: skip
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TYPES = frozenset(
    {
        "text", "image_url", "input_audio", "file", "function", "json_schema", "json_object", "object", "array",
        "string", "number", "integer", "boolean", "null", "refusal",
    }
)  # fmt: skip
_ENUM_VALUES = {"role": _ROLES, "type": _TYPES}


def _text(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list; None otherwise."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                return None
            parts.append(part["text"])
        return "".join(parts)
    return None


def check_fields(data: dict[str, Any]) -> None:
    """Refuse another spelling of any field a rule or the accounting reads (raises InvalidJSON)."""
    TOP_FIELDS.check(data, "the body")
    check_spelling(data.get("stream_options"), STREAM_OPTION_FIELDS, "stream_options")
    messages = data.get("messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            check_spelling(message, MESSAGE_FIELDS, f"messages[{i}]")
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                for j, part in enumerate(content):
                    check_spelling(part, PART_FIELDS, f"messages[{i}].content[{j}]")


def prompt_chars(data: dict[str, Any], *, skip_first_message: bool = False, skip: frozenset[str] = frozenset()) -> int:
    """Characters of every piece of text in the body the model may read: each message of every
    role, tool and function definitions, and any field that is not a known setting. Structure
    (field names, roles, part types, JSON Schema keywords) does not count. ``skip_first_message``
    leaves out the text of a signed system prompt (its other fields, such as a name, count), and
    ``skip`` top-level fields the policy fixes."""
    total = 0
    for name, value in data.items():
        if name in _SETTINGS or name in skip:
            continue
        if name not in TOP_FIELDS.keys:  # a field no chat API defines: its name may be text too
            total += len(name)
        if name == "messages" and skip_first_message and isinstance(value, list) and value:
            first, value = value[0], value[1:]
            unsigned = (
                {k: v for k, v in first.items() if k not in ("role", "content")} if isinstance(first, dict) else {}
            )
            if unsigned:
                total += _chars(unsigned)
        total += _chars(value)
    return total


def _chars(value: Any) -> int:
    """Every string counts its characters; a number, true, false or null the characters of its JSON
    text (an integer's within one; chat templates write tool schemas out as JSON, and token ids are
    numbers); and a value
    with no text of its own (an empty string, list or object, or an object that only names a role
    or a type) counts one, as each still costs tokens upstream."""
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


def enforce(rules: PolicyRules, data: Any) -> bool:
    """Check the parsed body ``data`` against ``rules``; insert ``max_tokens`` if the policy sets a
    ceiling and the body has none. Returns whether ``data`` was changed. Raises PolicyViolation
    naming the broken rule (or InvalidJSON for another spelling of a field a rule reads)."""
    if not isinstance(data, dict):
        raise PolicyViolation("json", "a policy-bound request needs a JSON object body")
    check_fields(data)
    changed = False

    if rules.fields is not None:
        extra = sorted(name for name in data if name not in rules.fields)
        if extra:
            shown = ", ".join(repr(name[:40]) for name in extra[:5])
            raise PolicyViolation(
                "fields", f"field(s) {shown} are not allowed by the signed policy; allowed: {sorted(rules.fields)}"
            )

    if rules.models and (not isinstance(data.get("model"), str) or data["model"] not in rules.models):
        raise PolicyViolation(
            "models", f"model {str(data.get('model'))[:80]!r} is not allowed; allowed: {list(rules.models)}"
        )

    if rules.max_tokens is not None:
        for name in _OUTPUT_CAPS:
            value = data.get(name)
            if name in data and (type(value) is not int or not 1 <= value <= rules.max_tokens):
                raise PolicyViolation("max_tokens", f"{name} must be a whole number in 1..{rules.max_tokens}")
        # n_predict alone sets no ceiling: upstreams that do not know it (vLLM, OpenAI) ignore it.
        if "max_tokens" not in data and "max_completion_tokens" not in data:
            data["max_tokens"] = rules.max_tokens
            changed = True
        # Several choices multiply the cost; `true` is not 1 (decoders that coerce read it as 1,
        # others as an error), so only the integer 1 passes.
        for name in _CHOICES:
            if name in data and (type(data[name]) is not int or data[name] != 1):
                raise PolicyViolation("n", f"{name} must be 1 (several choices multiply the cost)")

    messages = data.get("messages")
    if (rules.system_sha256 or rules.max_user_chars) and (
        not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages)
    ):
        raise PolicyViolation("messages", "messages must be a list of objects")

    for rule, fixed in (("system_prompt", rules.system_sha256), ("response_format", rules.response_format_sha256)):
        replacing = [name for name in _REPLACES[rule] if fixed is not None and name in data]
        if replacing:
            signed = rule.replace("_", " ")
            raise PolicyViolation(
                rule, f"{replacing[0]!r} would replace the signed {signed} at some upstreams; leave it out"
            )

    if rules.system_sha256 is not None:
        assert isinstance(messages, list)
        system = [i for i, m in enumerate(messages) if m.get("role") in ("system", "developer")]
        first = _text(messages[0].get("content")) if messages else None
        if system != [0] or first is None or sha256_hex(first) != rules.system_sha256:
            raise PolicyViolation(
                "system_prompt", "the first message must be the signed system prompt, and the only one"
            )

    if rules.response_format_sha256 is not None:
        given = data.get("response_format")
        if given is None or sha256_hex(canonical_json(given)) != rules.response_format_sha256:
            raise PolicyViolation("response_format", "response_format must be exactly the signed one")

    if rules.require_stream and data.get("stream") is not True:
        raise PolicyViolation("stream", 'this request must stream: set "stream": true')

    if rules.max_user_chars is not None:
        assert isinstance(messages, list)
        for message in messages:
            content = message.get("content")
            if content is not None and not isinstance(content, str) and _text(content) is None:
                # An image or a file costs tokens that no character count can see.
                raise PolicyViolation(
                    "max_user_chars", "under a prompt-size limit, message content must be text (a string or text parts)"
                )
        skip = frozenset({"response_format"}) if rules.response_format_sha256 is not None else frozenset()
        total = prompt_chars(data, skip_first_message=rules.system_sha256 is not None, skip=skip)
        if total > rules.max_user_chars:
            raise PolicyViolation(
                "max_user_chars",
                f"the prompt text (every message and tool, the signed system prompt aside) is {total} characters; "
                f"the limit is {rules.max_user_chars}",
            )

    return changed
