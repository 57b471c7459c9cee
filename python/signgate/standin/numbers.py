"""The numeric stage: find amounts in the text and give each one to a numeric property.

Steps, each a function tests call on its own:

1. :func:`find_mentions` reads numbers as written ("30k", "20 grand", "$25,000", "1.5k",
   "seven") and joins ranges ("between 20 and 25 grand", "2016-2019", "from 10k to 18k").
2. :func:`read_bounds` marks a number as a lower or upper bound from the words around it
   ("under", "at least", "or newer", "+"), and as exclusive where the words say so of time
   ("newer than 2018", "before 2016").
3. :func:`attach_keywords` ties each keyword occurrence ("miles", "seats", "$") to the
   nearest number.
4. :func:`assign` gives each number to one stem (``price_min``/``price_max``, ``seats_min``):
   a keyword decides; else a currency mark picks a money stem; else the number must fit the
   stem's range, narrow ranges (years, counts) first, then money. A bare number (no bound, unit
   or keyword) only fills a narrow stem ("a 2018 Camry"), and a bare small one ("4 doors") nothing.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .schema import Field, Stem
from .text import Token, phrase_pattern, tokenize

Side = Literal["low", "high"]

#: Stems whose range is at most this wide (years, seats, screen sizes) take a bare number as exact.
NARROW = 100.0

_MULTIPLIERS = {"k": 1e3, "grand": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "mil": 1e6}
_CURRENCY_MARKS = frozenset({"$", "€", "£"})
_CURRENCY_AFTER = frozenset({"dollars", "dollar", "bucks", "usd", "euros", "eur", "pounds", "grand"})
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th"})
_RANGE_JOINERS = frozenset({"-", "\u2013", "\u2014", "to", "through", "thru", "till", "until"})
_FILLERS = frozenset({"a", "an", "the", "about", "around", "roughly", "approximately", "approx", "some", "of", "just"})
_BREAKS = frozenset(",.;:!?()[]{}|/")

UPPER_BEFORE = frozenset(
    {"under", "below", "less than", "at most", "up to", "upto", "no more than", "not more than", "max", "maximum",
     "nothing over", "nothing above", "nothing more than",
     "cheaper than", "older than", "before", "earlier than", "lower than", "fewer than", "no higher than",
     "not over", "not above",
     "within", "no newer than", "smaller than", "lighter than", "shorter than", "less then", "<", "< =", "≤", "tops"}
)  # fmt: skip
LOWER_BEFORE = frozenset(
    {"over", "above", "more than", "at least", "from", "newer than", "after", "min", "minimum", "since",
     "greater than", "higher than", "no less than", "not under", "starting at", "starting from", "no older than",
     "later than", "bigger than", "larger than", "heavier than", "longer than", ">", "> =", "≥", "upwards of"}
)  # fmt: skip
#: Bound phrases that leave the number itself out: "newer than 2018" is 2019 on, "before 2016" up to
#: 2015. Only where the property holds whole values (see :func:`placement`). Other bounds stay
#: inclusive, as shoppers mean them: "under $25,000" includes a car at $25,000.
EXCLUSIVE_BEFORE = frozenset({"newer than", "older than", "before", "after", "later than", "earlier than"})
UPPER_AFTER = frozenset(
    {"or less", "or under", "or below", "or lower", "or cheaper", "or older", "or earlier", "or fewer", "or smaller",
     "or lighter", "and under", "and below", "and less", "and older", "and lower", "and earlier", "max", "maximum",
     "tops", "at most", "or before", "at the most"}
)  # fmt: skip
LOWER_AFTER = frozenset(
    {"+", "or more", "or newer", "or later", "or above", "or higher", "or greater", "or over", "or bigger",
     "or larger", "or after", "and up", "and above", "and newer", "and later", "and over", "and more", "at least",
     "min", "minimum", "plus", "or better"}
)  # fmt: skip


@dataclass(slots=True)
class Mention:
    """A number, or a range of two, as written in the text; ``first``/``last`` are token indexes."""

    first: int
    last: int
    lo: float
    hi: float
    is_range: bool = False
    currency: bool = False
    amount: bool = False  # written like an amount: "$", "k", "grand", "25,000"
    multiplier: float = 1.0
    side: Side | None = None
    exclusive: bool = False  # the bound leaves the number out ("newer than 2018")
    stems: list[int] = field(default_factory=list)  # stems named by keywords, nearest first


def _contiguous(a: Token, b: Token) -> bool:
    return a.end == b.start


def _number(tok: Token) -> float | None:
    if tok.kind == "num":
        return float(tok.text.replace(",", ""))
    if tok.kind == "word":
        value = _NUMBER_WORDS.get(tok.text)
        return None if value is None else float(value)
    return None


def _single(tokens: Sequence[Token], i: int) -> Mention | None:
    tok = tokens[i]
    value = _number(tok)
    if value is None:
        return None
    prev = tokens[i - 1] if i > 0 else None
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    if tok.kind == "num":
        # "v6", "cx-5", "i7": digits glued to a word belong to a name, not a quantity.
        if prev is not None and _contiguous(prev, tok) and prev.kind in ("word", "num"):
            return None
        if prev is not None and prev.text == "-" and _contiguous(prev, tok) and i > 1:
            before = tokens[i - 2]
            glued_to_name = before.kind == "word" and before.text not in _MULTIPLIERS  # "10k-15k" is a range
            if glued_to_name and _contiguous(before, prev):
                return None
        if nxt is not None and nxt.kind == "word" and _contiguous(tok, nxt) and nxt.text in _ORDINAL_SUFFIXES:
            return None
    m = Mention(first=i, last=i, lo=value, hi=value, amount="," in tok.text)
    if prev is not None and prev.text in _CURRENCY_MARKS:
        m.first, m.currency, m.amount = i - 1, True, True
    if nxt is not None and nxt.kind == "word" and nxt.text in _MULTIPLIERS:
        m.multiplier = _MULTIPLIERS[nxt.text]
        m.lo = m.hi = round(value * m.multiplier, 6)  # 1.1 * 1000 is 1100.0000000000002 in floating point
        m.last, m.amount = i + 1, True
        m.currency |= nxt.text == "grand"
    after = tokens[m.last + 1] if m.last + 1 < len(tokens) else None
    if after is not None and after.text == "+" and _contiguous(tokens[m.last], after):
        m.last, m.side = m.last + 1, "low"
    elif after is not None and after.kind == "word" and after.text in _CURRENCY_AFTER:
        m.currency = m.amount = True
    return m


def find_mentions(tokens: Sequence[Token]) -> list[Mention]:
    """Numbers and ranges in text order. A range's low end borrows the high end's multiplier
    ("20-25k" is 20,000 to 25,000) when that keeps it no larger than the high end."""
    singles = [m for i in range(len(tokens)) if (m := _single(tokens, i)) is not None]
    out: list[Mention] = []
    i = 0
    while i < len(singles):
        a = singles[i]
        b = singles[i + 1] if i + 1 < len(singles) else None
        if b is not None and a.side is None and (merged := _range(tokens, a, b)) is not None:
            out.append(merged)
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def _range(tokens: Sequence[Token], a: Mention, b: Mention) -> Mention | None:
    between = [t.text for t in tokens[a.last + 1 : b.first]]
    if len(between) != 1:
        return None
    joiner = between[0]
    if joiner == "and":
        if a.first == 0 or tokens[a.first - 1].text != "between":
            return None
    elif joiner not in _RANGE_JOINERS:
        return None
    lo = a.lo
    if a.multiplier == 1.0 and b.multiplier != 1.0 and lo * b.multiplier <= b.hi:
        lo = round(lo * b.multiplier, 6)
    if lo > b.hi:
        return None
    return Mention(
        first=a.first,
        last=b.last,
        lo=lo,
        hi=b.hi,
        is_range=True,
        currency=a.currency or b.currency,
        amount=a.amount or b.amount,
    )


def _words(tokens: Sequence[Token], indexes: range, skip: frozenset[int] = frozenset()) -> list[str]:
    """Up to three words walking through ``indexes``, dropping fillers; punctuation ends the walk."""
    words: list[str] = []
    for j in indexes:
        tok = tokens[j]
        if j in skip or tok.text in _FILLERS or tok.text in _CURRENCY_MARKS:
            continue
        if tok.kind in ("mask", "num") or (tok.kind == "sym" and tok.text in _BREAKS):
            break
        words.append(tok.text)
        if len(words) == 3:
            break
    return words


def read_bounds(tokens: Sequence[Token], mentions: Sequence[Mention], keyword_tokens: frozenset[int]) -> None:
    """Set ``side`` on single numbers from bound phrases before ("under 30k") or after ("2015 or newer")."""
    for m in mentions:
        if m.is_range or m.side is not None:
            continue
        # Keywords may stand between a bound and its number ("under 50k miles or less"), and may
        # themselves be part of a bound ("newer than"), so look once through them and once past them.
        for skip in (frozenset[int](), keyword_tokens):
            before = list(reversed(_words(tokens, range(m.first - 1, -1, -1), skip)))
            phrases = [" ".join(before[-n:]) for n in (3, 2, 1) if len(before) >= n]
            m.side, phrase = _bound(phrases, UPPER_BEFORE, LOWER_BEFORE)
            m.exclusive = phrase in EXCLUSIVE_BEFORE
            if m.side is None:
                after = _words(tokens, range(m.last + 1, len(tokens)), skip)
                m.side, _ = _bound(
                    [" ".join(after[:n]) for n in (3, 2, 1) if len(after) >= n], UPPER_AFTER, LOWER_AFTER
                )
            if m.side is not None:
                break


def _bound(phrases: Sequence[str], upper: frozenset[str], lower: frozenset[str]) -> tuple[Side | None, str]:
    """The side named by the longest of ``phrases`` that is a bound phrase, and that phrase."""
    for phrase in phrases:
        if phrase in upper:
            return "high", phrase
        if phrase in lower:
            return "low", phrase
    return None, ""


@dataclass(frozen=True, slots=True)
class Occurrence:
    stem: int
    first: int
    last: int


def find_keywords(text: str, tokens: Sequence[Token], stems: Sequence[Stem]) -> list[Occurrence]:
    """Every place a stem's keyword appears, as token spans."""
    found: list[Occurrence] = []
    starts = [t.start for t in tokens]
    for index, stem in enumerate(stems):
        for keyword in stem.keywords:
            pattern = _keyword_pattern(keyword)
            if pattern is None:
                continue
            for match in pattern.finditer(text):
                first = bisect.bisect_right(starts, match.start()) - 1
                if first < 0 or tokens[first].end <= match.start():
                    first += 1
                last = bisect.bisect_left(starts, match.end()) - 1
                if first <= last:
                    found.append(Occurrence(index, first, last))
    return found


_KEYWORD_PATTERNS: dict[str, re.Pattern[str] | None] = {}


def _keyword_pattern(keyword: str) -> re.Pattern[str] | None:
    if keyword not in _KEYWORD_PATTERNS:
        if len(_KEYWORD_PATTERNS) > 4096:
            _KEYWORD_PATTERNS.clear()
        _KEYWORD_PATTERNS[keyword] = phrase_pattern(keyword)
    return _KEYWORD_PATTERNS[keyword]


def _gap(tokens: Sequence[Token], start: int, stop: int, limit: int) -> int | None:
    """How many words lie in ``start..stop-1``; None if punctuation separates the ends or there
    are more than ``limit`` (checked as it goes, so a far-away number costs nothing)."""
    count = 0
    for j in range(start, stop):
        tok = tokens[j]
        if tok.kind == "sym" and tok.text in _BREAKS:
            return None
        if tok.text not in _FILLERS:
            count += 1
            if count > limit:
                return None
    return count


def attach_keywords(tokens: Sequence[Token], mentions: Sequence[Mention], occurrences: Sequence[Occurrence]) -> None:
    """Give each keyword occurrence to the nearest number: up to 2 words after it ("50k miles",
    "16 gb of ram") or 3 before it ("mileage under 50000"); a tie goes to the number before,
    since units follow quantities."""
    firsts = [m.first for m in mentions]  # mentions are in text order and do not overlap
    for occ in occurrences:
        target: Mention | None = None
        i = bisect.bisect_right(firsts, occ.last)  # mentions[:i] start at or before the keyword ends
        prev = mentions[i - 1] if i > 0 else None
        nxt = mentions[i] if i < len(mentions) else None
        if prev is not None and prev.last >= occ.first:
            target = prev  # the keyword is part of the number: "$" or "grand"
        else:
            gap_prev = _gap(tokens, prev.last + 1, occ.first, 2) if prev else None
            gap_next = _gap(tokens, occ.last + 1, nxt.first, 3) if nxt else None
            if gap_prev is not None and (gap_next is None or gap_prev <= gap_next):
                target = prev
            elif gap_next is not None:
                target = nxt
        if target is not None and occ.stem not in target.stems:
            target.stems.append(occ.stem)


Placement = dict[Field, float]


def placement(stem: Stem, m: Mention) -> Placement:
    """Which of ``stem``'s fields ``m`` fills, and with what; empty if it fits none.

    A range fills both ends (or the one end the stem has). A bound fills its side only; an
    exclusive one ("newer than 2018") steps one past the number where the property holds whole
    values, and stays inclusive where it does not (no number is "just above" 2.5). A bare
    number fills an exact property; for a min/max pair it is exact when the pair is narrow
    ("a 2018 Camry") and a ceiling when it is wide ("a $25,000 car" is a budget).
    """
    wanted: Placement = {}
    if m.is_range:
        if stem.low is not None:
            wanted[stem.low] = m.lo
        if stem.high is not None:
            wanted[stem.high] = m.hi
    elif m.side == "low":
        if stem.low is not None:
            wanted[stem.low] = m.lo + 1 if m.exclusive and stem.low.integer else m.lo
    elif m.side == "high":
        if stem.high is not None:
            wanted[stem.high] = m.hi - 1 if m.exclusive and stem.high.integer else m.hi
    elif stem.exact is not None:
        wanted[stem.exact] = m.lo
    elif stem.low is not None and stem.high is not None:
        wanted = {stem.low: m.lo, stem.high: m.hi} if stem.width <= NARROW else {stem.high: m.hi}
    elif stem.high is not None:
        wanted[stem.high] = m.hi
    elif stem.low is not None:
        wanted[stem.low] = m.lo
    return {f: v for f, v in wanted.items() if f.accepts_number(v)}


def assign(mentions: Sequence[Mention], stems: Sequence[Stem]) -> Placement:
    """Give each mention to one stem; first keyworded numbers, then currency, then the rest."""
    chosen: Placement = {}

    def priority(m: Mention) -> int:
        return 0 if m.stems else 1 if m.currency else 2

    for m in sorted(mentions, key=priority):
        if m.stems:
            candidates = [stems[i] for i in m.stems]
        elif m.currency and any(s.money for s in stems):
            candidates = [s for s in stems if s.money]
        elif m.is_range or m.side or m.amount:
            candidates = list(stems)
        elif m.hi >= 100:
            # A bare number ("a 2018 Camry", "a Ram 1500") is only trusted where its range is narrow
            # enough to say what it is; a bare "1500" could be a price, a mileage or a model name.
            candidates = [s for s in stems if s.width <= NARROW]
        else:
            continue
        options = []
        for s in candidates:
            place = placement(s, m)
            if not place:
                continue
            taken = any(f in chosen for f in place)
            options.append(((taken, s.width > NARROW, not s.money, s.width, s.order), place))
        if not options:
            continue
        options.sort(key=lambda o: o[0])
        for f, v in options[0][1].items():
            chosen.setdefault(f, v)
    return chosen


def extract_numbers(text: str, stems: Sequence[Stem]) -> Placement:
    """Run every step on masked, lower-cased ``text``; a min above its max drops both."""
    if not stems:
        return {}
    tokens = tokenize(text)
    mentions = find_mentions(tokens)
    if not mentions:
        return {}
    occurrences = find_keywords(text, tokens, stems)
    keyword_tokens = frozenset(j for o in occurrences for j in range(o.first, o.last + 1))
    read_bounds(tokens, mentions, keyword_tokens)
    attach_keywords(tokens, mentions, occurrences)
    chosen = assign(mentions, stems)
    for s in stems:
        if s.low is None or s.high is None or s.low not in chosen or s.high not in chosen:
            continue
        if chosen[s.low] > chosen[s.high]:
            del chosen[s.low], chosen[s.high]
    return chosen
