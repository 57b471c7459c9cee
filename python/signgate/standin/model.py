"""The stand-in "model": a deterministic parser, NOT a language model.

Given a ``response_format`` JSON schema and the user's words, :func:`extract` returns an
object valid against the schema, filled with what the words plainly say:

1. **Phrases.** Enum values and the ``Synonyms:`` of every property are matched, longest
   first, at word boundaries ("crossover" → ``body: "suv"``, "backup camera" →
   ``backup_camera``). A matched span is claimed, so "3 Series" never becomes a number.
   A phrase after "no"/"not"/"without" is ignored. Two different values for one
   single-valued property ("Toyota or Honda") leave it out; arrays keep every value, in enum order.
2. **Numbers.** :mod:`.numbers` reads amounts, ranges and bounds and gives each one to a
   numeric property, using ``Keywords:``, ``_min``/``_max`` names and ranges.
3. **Answer.** Values are placed in the schema's shape. What was not understood is left out;
   a required property left without a value becomes ``null`` where the schema allows it,
   ``[]`` for arrays, its ``default``, or else the least committal valid value.

Nothing here knows about cars: only the schema and the text drive it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .numbers import extract_numbers
from .schema import Field, ObjectNode, Scalar, SchemaReader, Stem
from .text import mask, negated, phrase_pattern

#: What the stand-in says when it is not asked for JSON.
PLAIN_ANSWER = (
    "This is signgate's offline stand-in, not a language model: it cannot answer questions. "
    "It only fills in a JSON schema (a response format, or a function's parameters) from the words of your "
    "last message."
)


#: Only this many characters of the user's message are read: a search query is short, and the
#: server runs the parser on its event loop, so the work per request must stay bounded.
MAX_TEXT = 4000


@dataclass(frozen=True, slots=True)
class _Phrase:
    pattern: re.Pattern[str]
    length: int
    field: Field
    value: Scalar


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A schema read once: its tree, the phrases to look for, and its numeric stems."""

    root: ObjectNode | Field
    fields: tuple[Field, ...]
    phrases: tuple[_Phrase, ...]
    stems: tuple[Stem, ...]


def compile_schema(schema: Mapping[str, Any]) -> CompiledSchema:
    """Read ``schema``; cached by content (key order kept: it sets tie-breaks), since clients resend it."""
    return _compile(json.dumps(schema, default=str))


@lru_cache(maxsize=64)
def _compile(key: str) -> CompiledSchema:
    reader = SchemaReader(json.loads(key))
    phrases: list[_Phrase] = []
    for f in reader.fields:
        entries: list[tuple[str, Scalar]] = []
        if f.kind in ("enum", "enum_array"):
            entries += [(v, v) for v in f.values]
        if f.kind == "boolean":
            entries.append((f.name.replace("_", " "), True))
        entries += list(f.synonyms)
        for text, value in entries:
            pattern = phrase_pattern(text)
            if pattern is not None:
                phrases.append(_Phrase(pattern, len(text), f, value))
    # Longest first, so "pickup truck" wins over "truck" and "lowest mileage" over "mileage".
    phrases.sort(key=lambda p: -p.length)
    return CompiledSchema(reader.root, tuple(reader.fields), tuple(phrases), tuple(reader.stems()))


def match_phrases(compiled: CompiledSchema, text: str) -> tuple[dict[Field, list[Scalar]], str]:
    """Values each field's phrases name, in text order, and the text with those spans masked."""
    hits: dict[Field, list[tuple[int, Scalar]]] = {}
    for phrase in compiled.phrases:
        spans = [match.span() for match in phrase.pattern.finditer(text)]
        for start, _ in spans:
            if not negated(text, start):
                hits.setdefault(phrase.field, []).append((start, phrase.value))
        if spans:
            text = mask(text, spans)
    ordered = {f: [v for _, v in sorted(found, key=lambda h: h[0])] for f, found in hits.items()}
    return ordered, text


def _choose(f: Field, found: Sequence[Scalar]) -> Any:
    distinct = list(dict.fromkeys(found))
    if f.kind == "enum_array":
        if f.max_items is not None:
            distinct = distinct[: f.max_items]
        return sorted(distinct, key=f.values.index) if distinct else None
    return distinct[0] if len(distinct) == 1 else None


def extract(schema: Mapping[str, Any], text: str) -> Any:
    """The object ``schema`` describes, filled from ``text``; always valid against the schema."""
    compiled = compile_schema(schema)
    lowered = text[:MAX_TEXT].lower()
    found, rest = match_phrases(compiled, lowered)
    values: dict[Field, Any] = {}
    for f, hits in found.items():
        chosen = _choose(f, hits)
        if chosen is not None:
            values[f] = chosen
    for f, number in extract_numbers(rest, compiled.stems).items():
        values[f] = f.number(number)  # a number written out beats a synonym ("low miles, under 60k miles")
    if isinstance(compiled.root, Field) and compiled.root.kind == "unsupported" and compiled.root.json_type is None:
        return {}  # an empty schema, or one this parser cannot read: an empty object is the plainest answer
    return _build(compiled.root, values)


def _build(node: ObjectNode | Field, values: Mapping[Field, Any]) -> Any:
    if isinstance(node, Field):
        return values[node] if node in values else _fallback(node)
    out: dict[str, Any] = {}
    for name, child in node.children.items():
        is_required = name in node.required
        if isinstance(child, ObjectNode):
            sub = _build(child, values)
            if sub or is_required:
                out[name] = sub
        elif child in values:
            out[name] = values[child]
        elif is_required:
            out[name] = _fallback(child)
    return out


def _fallback(f: Field) -> Any:
    """The value of a required property the text said nothing about."""
    if f.nullable:
        return None
    if f.kind == "enum_array":
        return []
    if f.has_default:
        return f.default
    if f.kind == "enum":
        return f.values[0]
    if f.kind == "boolean":
        return False
    if f.kind == "number":
        # The valid value nearest zero or the lower bound, trying the next step up for exclusive bounds.
        lo, hi = f.minimum, f.maximum
        candidates = [0.0, lo, hi, (lo + hi) / 2]
        if math.isfinite(lo):
            candidates[2:2] = [math.floor(lo) + 1, lo + (f.multiple_of or 1)]
            if f.multiple_of:
                candidates.insert(2, math.ceil(lo / f.multiple_of) * f.multiple_of)
        for candidate in candidates:
            if f.accepts_number(candidate):
                return f.number(candidate)
        return None
    return {"string": "", "array": [], "object": {}}.get(f.json_type or "")


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last ``user`` message; content parts of type ``text`` are joined."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
        return ""
    return ""


def reply(messages: Sequence[Mapping[str, Any]], response_format: Mapping[str, Any] | None = None) -> str:
    """The assistant message content the stand-in answers ``messages`` with.

    ``json_schema``: the schema filled from the last user message, as JSON. ``json_object``:
    a JSON object saying what the stand-in is. Anything else: :data:`PLAIN_ANSWER`.
    """
    kind = response_format.get("type") if response_format else None
    if kind == "json_schema" and response_format is not None:
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return json.dumps(extract(schema if isinstance(schema, Mapping) else {}, last_user_text(messages)))
    if kind == "json_object":
        return json.dumps({"standin": True, "note": PLAIN_ANSWER})
    return PLAIN_ANSWER
