"""Reading a ``response_format`` JSON schema into the fields the stand-in can fill.

The stand-in understands a small, documented subset of JSON Schema (see ``docs/standin.md``):
objects (nested to any depth), string enums, arrays of string enums, integers and numbers with
bounds, and booleans. Nullable forms (``"type": ["string", "null"]``, an ``anyOf`` with a
``{"type": "null"}`` branch, ``null`` inside ``enum``) and local ``$ref`` are resolved, so
OpenAI strict-mode schemas work as they are.

Two conventions in a property's ``description`` steer it:

``Synonyms: crossover, sport utility = suv; truck = pickup.``
    ``;``-separated items, each comma-separated phrases, ``=``, and one value: an enum value
    (matched case-insensitively), a number for numeric properties, ``true``/``false`` for booleans.
``Keywords: miles, mileage, odometer.``
    words that tie a number in the text to a numeric property.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["enum", "enum_array", "number", "boolean", "unsupported"]
Scalar = str | int | float | bool

# A list ends at a full stop followed by white space or the end; "1.5" and "Mercedes-Benz." both work.
_SYNONYMS = re.compile(r"\bsynonyms\s*:\s*(.*?)(?:\.(?=\s)|\.?$)", re.IGNORECASE | re.DOTALL)
_KEYWORDS = re.compile(r"\bkeywords\s*:\s*(.*?)(?:\.(?=\s)|\.?$)", re.IGNORECASE | re.DOTALL)
_BOUND_NAME = re.compile(
    r"^(?:(?P<pre>min|max|minimum|maximum)_(?P<a>.+)|(?P<b>.+)_(?P<post>min|max|minimum|maximum))$"
)
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
#: How deep objects are read; deeper parts of a (possibly recursive) schema are left out.
MAX_DEPTH = 8


@dataclass(frozen=True, slots=True, eq=False)  # identity hashing: fields key dicts, defaults may be lists
class Field:
    """One leaf property of the schema: where it goes in the answer and what it accepts."""

    path: tuple[str, ...]
    kind: Kind
    description: str = ""
    values: tuple[str, ...] = ()  # enum values, for "enum" and "enum_array"
    integer: bool = False
    minimum: float = -math.inf
    maximum: float = math.inf
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    multiple_of: float | None = None
    max_items: int | None = None
    json_type: str | None = None  # the declared "type", kept for unsupported kinds
    nullable: bool = False
    required: bool = False
    default: Any = None
    has_default: bool = False
    synonyms: tuple[tuple[str, Scalar], ...] = ()
    keywords: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path[-1]

    def accepts_number(self, value: float) -> bool:
        """Whether ``value`` is allowed here: type, bounds and ``multipleOf``."""
        if self.kind != "number" or not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if value < self.minimum or (self.exclusive_minimum and value == self.minimum):
            return False
        if value > self.maximum or (self.exclusive_maximum and value == self.maximum):
            return False
        if self.multiple_of:
            ratio = value / self.multiple_of
            if abs(ratio - round(ratio)) > 1e-9:
                return False
        return True

    def number(self, value: float) -> int | float:
        """``value`` as the JSON number to emit: an ``int`` when it is whole."""
        return int(value) if float(value).is_integer() else value


@dataclass(frozen=True, slots=True)
class ObjectNode:
    """An object in the schema: its children in declaration order and which are required."""

    path: tuple[str, ...]
    children: dict[str, ObjectNode | Field] = field(default_factory=dict)
    required: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Stem:
    """Numeric properties that share a stem: ``price_min``/``price_max`` or a lone ``seats``.

    ``low``/``high`` take lower and upper bounds; ``exact`` is a property with no ``_min``/``_max``.
    """

    parent: tuple[str, ...]
    name: str
    order: int
    low: Field | None = None
    high: Field | None = None
    exact: Field | None = None
    keywords: tuple[str, ...] = ()
    money: bool = False

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(f for f in (self.low, self.high, self.exact) if f is not None)

    @property
    def width(self) -> float:
        """How wide the accepted range is; narrow stems (years, counts) win bare numbers."""
        lo = min(f.minimum for f in self.fields)
        hi = max(f.maximum for f in self.fields)
        return hi - lo


# Words that mark a quantity as money; a stem whose name, keywords or description uses one is "money".
CURRENCY_WORDS = frozenset(
    {"$", "€", "£", "usd", "eur", "gbp", "dollar", "dollars", "euro", "euros", "pound", "pounds", "bucks", "grand"}
    | {"price", "cost", "budget", "rent", "salary", "fee", "pay", "spend"}
)


def parse_list(pattern: re.Pattern[str], description: str) -> str | None:
    match = pattern.search(description)
    return match.group(1) if match else None


def parse_keywords(description: str) -> tuple[str, ...]:
    """The phrases of a ``Keywords: a, b, c.`` list in ``description``, lower-cased, in order."""
    text = parse_list(_KEYWORDS, description)
    if text is None:
        return ()
    return tuple(dict.fromkeys(p for p in (_clean_phrase(x) for x in text.split(",")) if p))


def parse_synonyms(description: str) -> list[tuple[str, str]]:
    """The ``(phrase, raw value)`` pairs of a ``Synonyms:`` list, before checking values."""
    text = parse_list(_SYNONYMS, description)
    if text is None:
        return []
    pairs: list[tuple[str, str]] = []
    for item in text.split(";"):
        phrases, eq, value = item.rpartition("=")
        value = value.strip().strip("'\"")
        if not eq or not value:
            continue
        pairs.extend((p, value) for p in (_clean_phrase(x) for x in phrases.split(",")) if p)
    return pairs


def _clean_phrase(text: str) -> str:
    return " ".join(text.strip().strip("'\"").lower().split())


def _canonical(value: str) -> str:
    return re.sub(r"[\s_\-]+", " ", value.strip().lower())


def resolve_synonym(f: Field, raw: str) -> Scalar | None:
    """The value a synonym's right-hand side names for field ``f``, or None if it names nothing valid."""
    if f.kind in ("enum", "enum_array"):
        wanted = _canonical(raw)
        return next((v for v in f.values if _canonical(v) == wanted), None)
    if f.kind == "number":
        if not _NUMBER.match(raw.replace(",", "")):
            return None
        number = float(raw.replace(",", ""))
        return f.number(number) if f.accepts_number(number) else None
    if f.kind == "boolean":
        return {"true": True, "yes": True, "false": False, "no": False}.get(raw.lower())
    return None


class SchemaReader:
    """Walks one schema once; ``root`` is the tree, ``fields`` the leaves in declaration order."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._root_schema = schema
        self.fields: list[Field] = []
        self.root: ObjectNode | Field = self._node(schema, (), required=True)

    def _resolve(self, node: Any, depth: int = 0) -> tuple[dict[str, Any], bool]:
        """Follow ``$ref`` and unwrap nullable ``anyOf``; return the schema and whether null is allowed."""
        if not isinstance(node, Mapping) or depth > 32:
            return {}, False
        node = dict(node)
        nullable = False
        ref = node.pop("$ref", None)
        if isinstance(ref, str) and ref.startswith("#"):
            target: Any = self._root_schema
            for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, Mapping) else None
            inner, inner_null = self._resolve(target, depth + 1)
            node = {**inner, **node}
            nullable |= inner_null
        for combiner in ("anyOf", "oneOf"):
            branches = node.get(combiner)
            if isinstance(branches, list):
                real = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
                if len(real) == 1 and len(real) < len(branches):
                    inner, _ = self._resolve(real[0], depth + 1)
                    node.pop(combiner)
                    node = {**inner, **{k: v for k, v in node.items() if k == "description" or k not in inner}}
                    nullable = True
        types = node.get("type")
        if isinstance(types, list):
            nullable |= "null" in types
            rest = [t for t in types if t != "null"]
            node["type"] = rest[0] if len(rest) == 1 else rest
        enum = node.get("enum")
        if isinstance(enum, list) and None in enum:
            nullable = True
            node["enum"] = [v for v in enum if v is not None]
        return node, nullable

    def _node(self, raw: Any, path: tuple[str, ...], *, required: bool) -> ObjectNode | Field:
        node, nullable = self._resolve(raw)
        if len(path) > MAX_DEPTH:  # a recursive schema ("$ref": "#") would otherwise never end
            leaf = Field(path=path, kind="unsupported", json_type="object", nullable=nullable, required=required)
            self.fields.append(leaf)
            return leaf
        if node.get("type") == "object" or (node.get("type") is None and isinstance(node.get("properties"), Mapping)):
            props = node.get("properties")
            children: dict[str, ObjectNode | Field] = {}
            req = node.get("required")
            req_set = frozenset(r for r in req if isinstance(r, str)) if isinstance(req, list) else frozenset()
            if isinstance(props, Mapping):
                for name, sub in props.items():
                    children[str(name)] = self._node(sub, (*path, str(name)), required=name in req_set)
            return ObjectNode(path=path, children=children, required=req_set)
        leaf = self._leaf(node, path, nullable=nullable, required=required)
        self.fields.append(leaf)
        return leaf

    def _leaf(self, node: dict[str, Any], path: tuple[str, ...], *, nullable: bool, required: bool) -> Field:
        description = node.get("description") if isinstance(node.get("description"), str) else ""
        base: dict[str, Any] = {
            "path": path,
            "description": description,
            "json_type": node.get("type") if isinstance(node.get("type"), str) else None,
            "nullable": nullable,
            "required": required,
            "has_default": "default" in node,
            "default": node.get("default"),
        }
        kind: Kind = "unsupported"
        typ = node.get("type")
        enum = node.get("enum")
        if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum) and typ in (None, "string"):
            kind = "enum"
            base["values"] = tuple(enum)
        elif typ == "array":
            items, _ = self._resolve(node.get("items"))
            item_enum = items.get("enum")
            if isinstance(item_enum, list) and item_enum and all(isinstance(v, str) for v in item_enum):
                kind = "enum_array"
                base["values"] = tuple(item_enum)
                item_description = items.get("description")
                if isinstance(item_description, str):
                    base["description"] = f"{description} {item_description}".strip()
                max_items = node.get("maxItems")
                base["max_items"] = (
                    max_items if isinstance(max_items, int) and not isinstance(max_items, bool) else None
                )
        elif typ in ("integer", "number"):
            kind = "number"
            base["integer"] = typ == "integer"
            base.update(_numeric_bounds(node))
        elif typ == "boolean":
            kind = "boolean"
        f = Field(kind=kind, **base)
        if kind == "unsupported":
            return f
        synonyms = tuple(
            (phrase, value)
            for phrase, raw in parse_synonyms(f.description)
            if (value := resolve_synonym(f, raw)) is not None
        )
        return Field(kind=kind, synonyms=synonyms, keywords=parse_keywords(f.description), **base)

    def stems(self) -> list[Stem]:
        """Group numeric fields into stems (``price_min`` + ``price_max`` → ``price``), in schema order."""
        groups: dict[tuple[tuple[str, ...], str], dict[str, Field]] = {}
        for f in self.fields:
            if f.kind != "number":
                continue
            match = _BOUND_NAME.match(f.name.lower())
            if match:
                stem = match.group("a") or match.group("b")
                side = "low" if (match.group("pre") or match.group("post")).startswith("min") else "high"
            else:
                stem, side = f.name.lower(), "exact"
            slots = groups.setdefault((f.path[:-1], stem), {})
            if side in slots:  # e.g. both "min_x" and "x_min": keep the first, do not guess
                continue
            slots[side] = f
        stems = []
        for order, ((parent, name), slots) in enumerate(groups.items()):
            fields = list(slots.values())
            name_words = tuple(w for w in re.split(r"[\s_\-]+", name) if len(w) > 1)
            keywords = tuple(
                dict.fromkeys([k for f in fields for k in f.keywords] + [" ".join(name_words), *name_words])
            )
            text_words = set(keywords) | {w for f in fields for w in re.findall(r"[a-z]+|[$€£]", f.description.lower())}
            stems.append(
                Stem(
                    parent=parent,
                    name=name,
                    order=order,
                    low=slots.get("low"),
                    high=slots.get("high"),
                    exact=slots.get("exact"),
                    keywords=keywords,
                    money=bool(text_words & CURRENCY_WORDS),
                )
            )
        return stems


def _numeric_bounds(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def num(key: str) -> float | None:
        value = node.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return None

    if (v := num("minimum")) is not None:
        out["minimum"] = v
    if (v := num("exclusiveMinimum")) is not None and v >= out.get("minimum", -math.inf):
        out["minimum"], out["exclusive_minimum"] = v, True
    if (v := num("maximum")) is not None:
        out["maximum"] = v
    if (v := num("exclusiveMaximum")) is not None and v <= out.get("maximum", math.inf):
        out["maximum"], out["exclusive_maximum"] = v, True
    if (v := num("multipleOf")) is not None and v > 0:
        out["multiple_of"] = v
    return out


def iter_fields(node: ObjectNode | Field) -> Iterator[Field]:
    if isinstance(node, Field):
        yield node
        return
    for child in node.children.values():
        yield from iter_fields(child)
