"""Text helpers shared by the stand-in's stages: phrase patterns and a tokenizer.

Phrases from a schema (enum values, synonyms, keywords) become regular expressions that match
at word boundaries, treat ``_``, ``-`` and spaces alike (``backup_camera`` matches "backup
camera", ``F-150`` matches "f150"), and accept a plural ``s``/``es`` on a final word.
Text is lower-cased first; spans already claimed by an earlier stage are overwritten with
:data:`MASK` so later stages cannot match them again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

MASK = "\x00"

_PHRASE_TOKEN = re.compile(r"[^\W\d_]+|\d+(?:\.\d+)?|[^\s\w\-]")
_SEPARATOR = r"[\s_\-]*"

TokenKind = Literal["mask", "num", "word", "sym"]
_TOKEN = re.compile(
    r"(?P<mask>\x00+)"
    r"|(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<word>[^\W\d_]+(?:'[^\W\d_]+)?)"
    r"|(?P<sym>\S)"
)


def phrase_pattern(phrase: str, *, plural: bool = True) -> re.Pattern[str] | None:
    """A compiled pattern for ``phrase`` in lower-cased text, or None for an empty phrase."""
    tokens = _PHRASE_TOKEN.findall(phrase.lower())
    if not tokens:
        return None
    body = _SEPARATOR.join(re.escape(t) for t in tokens)
    last = tokens[-1]
    if plural and last.isalpha() and len(last) > 1:
        body += r"(?:e?s)?"
    prefix = r"(?<![^\W_])" if tokens[0][0].isalnum() else ""
    suffix = r"(?![^\W_])" if last[-1].isalnum() else ""
    return re.compile(prefix + body + suffix)


def mask(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` with each non-overlapping ``(start, end)`` span, in order, overwritten by :data:`MASK`."""
    parts, last = [], 0
    for start, end in spans:
        parts += [text[last:start], MASK * (end - start)]
        last = end
    parts.append(text[last:])
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Split masked, lower-cased text into masks, numbers, words and single symbols."""
    tokens = []
    for match in _TOKEN.finditer(text):
        # Every alternative is a named group, so lastgroup names the kind.
        tokens.append(Token(cast(TokenKind, match.lastgroup), match.group(), match.start(), match.end()))
    return tokens


# Words that, just before a phrase, mean the user does not want it: "no sunroof", "not a sedan".
NEGATIONS = frozenset({"no", "not", "without", "except", "excluding", "non", "never", "avoid", "neither", "nor"})
_NEGATION_SKIP = frozenset({"a", "an", "any", "the", "or", "and", "-", MASK})


def negated(text: str, start: int) -> bool:
    """Whether the phrase starting at ``start`` in ``text`` is negated by the words before it.

    Walks back over articles, "or"/"and" and other matched phrases, so "no sunroof or leather"
    negates both; any other word or punctuation ends the walk.
    """
    # Six tokens back is all the walk can use; a bounded window keeps long texts linear.
    for tok in reversed(tokenize(text[max(0, start - 120) : start])[-6:]):
        word = MASK if tok.kind == "mask" else tok.text
        if word in NEGATIONS:
            return True
        if word not in _NEGATION_SKIP:
            return False
    return False
