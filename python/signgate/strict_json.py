"""One strict reading of a JSON request body, for every control that reads one.

Decoders disagree on the corners of JSON: which of two equal keys wins, whether ``"MODEL"`` is
``"model"`` (Go's ``encoding/json``, behind many OpenAI-compatible servers, matches struct fields
case-insensitively, Unicode folding included, so ``"\u017ftream"``, with a long s, is ``"stream"``), whether ``NaN``,
``1e400``, a lone surrogate or a byte-order mark is allowed. A policy or a token count that reads
a body one way while the upstream reads it another can be walked around. So the gateway's
policies, its accounting and its re-serialisation all read a body with :func:`loads`, which
refuses every such body with :class:`~signgate.errors.InvalidJSON` naming the problem:

- UTF-8 only, and only JSON's own whitespace (space, tab, CR, LF) around the value;
- no key twice in one object;
- no ``NaN``, ``Infinity``, or number beyond a double's range;
- no lone UTF-16 surrogate (``"\\ud800"``: a string no UTF-8 encoder can write back);
- at most :data:`MAX_DEPTH` levels of nesting.

:func:`check_spelling` then refuses another spelling of a key a control reads (case, Unicode
case folding, control characters), where the caller names those keys.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from .errors import InvalidJSON

#: Deepest nesting accepted. LLM requests nest a few levels (a JSON schema a dozen at most).
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJSON(f"the key {_show(key)} appears twice in one object; send each key once")
            seen.add(key)
    return obj


def _constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON number; send a finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"the number {text[:40]} is too large for a double; send a finite number")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)


def loads(body: bytes | str) -> Any:
    """The JSON value of ``body``, read strictly (see the module docstring); raises InvalidJSON."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJSON(f"the body is not UTF-8 text (byte {exc.start}); send JSON encoded as UTF-8") from None
    else:
        text = body
    try:
        # JSONDecoder.decode, unlike json.loads, neither guesses UTF-16 nor skips a byte-order
        # mark: around the value it allows exactly JSON's four whitespace characters.
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"the body is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise InvalidJSON(f"the body's JSON nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise InvalidJSON(f"the body holds a number that cannot be read: {str(exc)[:80]}") from None
    # Walk the value only when the text could hold what the decoder let through: deep nesting
    # needs more brackets than MAX_DEPTH, and a lone surrogate needs a \u escape.
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    if deep or "\\u" in text:
        _walk(value, deep)
    return value


def _walk(value: Any, deep: bool) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    raise InvalidJSON("a key holds a lone UTF-16 surrogate escape; send valid Unicode text")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if _SURROGATE.search(item):
                raise InvalidJSON("a string holds a lone UTF-16 surrogate escape; send valid Unicode text")
            continue
        else:
            continue
        if deep and depth > MAX_DEPTH:
            raise InvalidJSON(f"the body's JSON nests deeper than {MAX_DEPTH} levels")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of a value :func:`loads` returned (and the caller may have changed)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class Spellings:
    """The keys a control reads in one kind of object, and every other spelling of them."""

    __slots__ = ("_folded", "keys")

    def __init__(self, keys: Collection[str]) -> None:
        self.keys = frozenset(keys)
        self._folded = {_fold(key): key for key in keys}

    def check(self, obj: Mapping[str, Any], where: str) -> None:
        """Raise InvalidJSON if ``obj`` spells one of the keys another way."""
        for key in obj:
            if key not in self.keys and (meant := self._folded.get(_fold(key))) is not None:
                raise InvalidJSON(
                    f"{where}: the key {_show(key)} is another spelling of {meant!r}; "
                    f"upstream decoders may read it as {meant!r}, so send {meant!r} exactly"
                )


def _fold(key: str) -> str:
    # Case folding covers Go's: U+017F (long s) folds to "s" and U+212A (Kelvin sign) to "k".
    return _CONTROL.sub("", key).strip().casefold()


def check_spelling(obj: Any, spellings: Spellings, where: str) -> None:
    """:meth:`Spellings.check` when ``obj`` is an object; anything else passes."""
    if isinstance(obj, dict):
        spellings.check(obj, where)


def _show(key: str) -> str:
    """A key for an error message: at most 40 characters, escapes visible."""
    return repr(key[:40])
