"""Small checks the request readers share: each returns the value or raises a ProviderError
that names the field, the value's fault, and what to send instead."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Headers, ProviderError, Query

#: Function and schema names the OpenAI and Anthropic APIs accept.
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def kind(value: object) -> str:
    """The JSON type of ``value``, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def shown(value: object) -> str:
    """``value`` quoted for a message: a string's first 40 characters, else its JSON type."""
    return json.dumps(value[:40]) if isinstance(value, str) else kind(value)


def json_text(value: object, where: str) -> str:
    """``value`` as JSON text (a tool call's arguments, a tool's result). A value nested close to
    the interpreter's recursion limit parses but cannot be written back: a 400, not a crash."""
    try:
        return json.dumps(value)
    except RecursionError:
        raise ProviderError(f"{where} is nested too deeply; send at most a few dozen levels.", param=where) from None


def body_object(body: object, hint: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ProviderError(f"The body of your request must be a JSON object {hint}, not {kind(body)}.")
    return body


def mapping(value: object, where: str, example: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProviderError(f"{where} must be an object such as {example}, not {kind(value)}.", param=where)
    return value


def array(value: object, where: str, *, nonempty: bool = False) -> Sequence[Any]:
    if not isinstance(value, list):
        raise ProviderError(f"{where} must be an array, not {kind(value)}.", param=where, code="invalid_type")
    if nonempty and not value:
        raise ProviderError(f"{where} must not be empty.", param=where, code="invalid_value")
    return value


def string(value: object, where: str, *, nonempty: bool = True) -> str:
    if not isinstance(value, str) or (nonempty and not value):
        wanted = "a non-empty string" if nonempty else "a string"
        raise ProviderError(f"{where} must be {wanted}, not {kind(value)}.", param=where, code="invalid_type")
    return value


def optional_string(value: object, where: str) -> str:
    return "" if value is None else string(value, where, nonempty=False)


def flag(value: object, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProviderError(f"{where} must be true or false, not {kind(value)}.", param=where, code="invalid_type")
    return value


def count(value: object, where: str, *, minimum: int = 1) -> int | None:
    """A token count: None when absent, else an integer of at least ``minimum``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ProviderError(f"{where} must be an integer, not {kind(value)}.", param=where, code="invalid_type")
    if value < minimum:
        raise ProviderError(
            f"{where} is {int(value)}; it must be at least {minimum}.", param=where, code="integer_below_min_value"
        )
    return int(value)


def smallest(*caps: int | None) -> int | None:
    known = [c for c in caps if c is not None]
    return min(known) if known else None


def schema(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProviderError(
            f'{where} must be a JSON Schema object such as {{"type": "object", "properties": {{...}}}}, '
            f"not {kind(value)}.",
            param=where,
            code="invalid_type",
        )
    return value


def function_name(value: object, where: str, pattern: re.Pattern[str] = NAME) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ProviderError(
            f"{where} must be 1 to 64 letters, digits, '_' or '-', not {shown(value)}.",
            param=where,
            code="invalid_value",
        )
    return value


def unique_names(names: Sequence[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ProviderError(f"{where} names the function {name!r} twice; give each once.", param=where)
        seen.add(name)


def known_names(names: Sequence[str], offered: Sequence[str], where: str) -> tuple[str, ...]:
    for name in names:
        if name not in offered:
            listed = ", ".join(offered) or "none"
            raise ProviderError(
                f"{where} names the function {name!r}, which is not among the tools (offered: {listed}).",
                param=where,
                code="invalid_value",
            )
    return tuple(names)


def joined_text(parts: Sequence[str]) -> str:
    return " ".join(p for p in parts if p)


def one_query_value(query: Query, name: str) -> str | None:
    """The one value of query parameter ``name``, None if absent; a 400 if it is repeated."""
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ProviderError(f"The query parameter {name!r} appears {len(values)} times; send it once.", param=name)
    return values[0]


def bearer(headers: Headers, where: str) -> str | None:
    """The token of an ``Authorization: Bearer`` header, None if there is no such header."""
    header = headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or "," in token:
        raise ProviderError(
            f"The Authorization header must be 'Bearer <key>'. {where}", status=401, code="invalid_api_key"
        )
    return token.strip()


def tokens(value: object) -> int | None:
    """A token count in an answer: a non-negative integer, else None (not reported)."""
    return value if type(value) is int and value >= 0 else None  # type(), not isinstance: True is no count
