"""The search filters: the one source of truth for the form, ``/cars`` and the model.

A :class:`FilterSchema` knows every parameter ``/cars`` accepts and its options (makes, models
and colours come from the catalog). From it come

* :meth:`FilterSchema.parse`: the validation ``/cars`` runs on its query string. It never
  raises; each value it cannot use is returned as an :class:`Ignored` with the reason;
* :meth:`FilterSchema.json_schema` and :meth:`FilterSchema.system_prompt`: what the model is
  told, in OpenAI's strict structured-output form;
* :meth:`FilterSchema.parse_answer`: a model's answer checked exactly as ``/cars`` checks it.

Descriptions follow the conventions the offline stand-in model reads (and that help a real
model too): ``Synonyms: a, b = value; c = value.`` maps phrases to a value, ``Keywords: ...``
ties numbers in the question to a property, and ``<stem>_min``/``<stem>_max`` form a range.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import catalog

#: A filter's checked value: an option, a whole number, or (for ``features``) a list of options.
Value = str | int | list[str]
Kind = Literal["choice", "number", "multi"]

PAGE = "page"
MAX_PAGE = 10_000
_INTEGER = re.compile(r"[+-]?[0-9]{1,12}")
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class Param:
    """One query parameter of ``/cars``."""

    name: str
    label: str
    kind: Kind
    #: What the model reads. Keep the Synonyms/Keywords conventions (see the module docstring).
    description: str
    options: tuple[str, ...] = ()
    #: Display names of options, where they differ from the option itself.
    option_labels: Mapping[str, str] = field(default_factory=dict)
    minimum: int = 0
    maximum: int = 0
    #: "$" for prices, "mi" for miles: how a number is shown on a chip.
    unit: str = ""

    def option_label(self, option: str) -> str:
        return self.option_labels.get(option, option)

    def show(self, value: str | int) -> str:
        """A value as a person reads it: ``$20,000``, ``50,000 mi``, ``Backup camera``."""
        if isinstance(value, int):
            if self.unit == "$":
                return f"${value:,}"
            if self.unit:
                return f"{value:,} {self.unit}"
            return str(value)
        return self.option_label(value)

    def chip(self, value: str | int) -> str:
        """The text of an active-filter chip."""
        if self.name.endswith("_min"):
            return f"{self.label} ≥ {self.show(value)}"
        if self.name.endswith("_max"):
            return f"{self.label} ≤ {self.show(value)}"
        return f"{self.label}: {self.show(value)}"


@dataclass(frozen=True)
class Ignored:
    """A value that was not used, and why. ``reason`` is a stable code:

    ``unknown_parameter``, ``not_an_option``, ``not_a_number``, ``out_of_range``,
    ``conflicting_range`` (a minimum above its maximum), ``repeated`` (a second value for a
    parameter that takes one), ``invalid_answer`` (a model answer without a filters object).
    """

    param: str
    value: str
    reason: str
    message: str


@dataclass
class Query:
    """A checked search: the filters to apply, in schema order, and what was left out."""

    filters: dict[str, Value] = field(default_factory=dict)
    ignored: list[Ignored] = field(default_factory=list)
    page: int = 1


def _shown(value: str) -> str:
    return value if len(value) <= _SHOWN_CHARS else value[: _SHOWN_CHARS - 1] + "…"


def _params(makes: Sequence[str], models: Sequence[str], colors: Sequence[str]) -> list[Param]:
    upper = {"suv": "SUV", "fwd": "FWD", "rwd": "RWD", "awd": "AWD", "4wd": "4WD"}
    feature_labels = {
        "backup_camera": "Backup camera",
        "apple_carplay": "Apple CarPlay",
        "heated_seats": "Heated seats",
        "tow_package": "Tow package",
        "third_row": "Third row",
    }

    def titled(options: Iterable[str], special: Mapping[str, str]) -> dict[str, str]:
        return {o: special.get(o, o.replace("_", " ").capitalize()) for o in options}

    year_max = catalog.CURRENT_YEAR + 1
    return [
        Param(
            "make",
            "Make",
            "choice",
            "Manufacturer (brand). Synonyms: chevy = Chevrolet; vw = Volkswagen; mercedes, benz = Mercedes-Benz.",
            tuple(makes),
        ),
        Param(
            "model",
            "Model",
            "choice",
            "Model name, without the make. Synonyms: f150 = F-150; crv = CR-V; miata, mx-5 = MX-5 Miata; "
            "mach-e = Mustang Mach-E.",
            tuple(models),
        ),
        Param(
            "body",
            "Body",
            "choice",
            "Body style. Synonyms: crossover, sport utility = suv; truck = pickup; van = minivan; "
            "estate = wagon; cabriolet, drop top = convertible.",
            catalog.BODIES,
            titled(catalog.BODIES, upper),
        ),
        Param(
            "color",
            "Color",
            "choice",
            "Exterior color. Synonyms: grey = gray; tan = beige.",
            tuple(colors),
            titled(colors, {}),
        ),
        Param(
            "fuel",
            "Fuel",
            "choice",
            "Fuel or power source. Synonyms: gas, petrol = gasoline; ev, battery electric = electric.",
            catalog.FUELS,
            titled(catalog.FUELS, {}),
        ),
        Param(
            "transmission",
            "Transmission",
            "choice",
            "Gearbox. Synonyms: stick shift, stick = manual.",
            catalog.TRANSMISSIONS,
            titled(catalog.TRANSMISSIONS, {}),
        ),
        Param(
            "drivetrain",
            "Drivetrain",
            "choice",
            "Driven wheels. Synonyms: front-wheel drive, front wheel drive = fwd; rear-wheel drive, "
            "rear wheel drive = rwd; all-wheel drive, all wheel drive = awd; four-wheel drive, "
            "four wheel drive, 4x4 = 4wd.",
            catalog.DRIVETRAINS,
            titled(catalog.DRIVETRAINS, upper),
        ),
        Param(
            "year_min",
            "Year",
            "number",
            "Oldest model year wanted. Keywords: year, model year.",
            minimum=1980,
            maximum=year_max,
        ),
        Param(
            "year_max",
            "Year",
            "number",
            "Newest model year wanted. Keywords: year, model year.",
            minimum=1980,
            maximum=year_max,
        ),
        Param(
            "price_min",
            "Price",
            "number",
            "Lowest price in US dollars. Keywords: price, dollars, budget, cost, $.",
            minimum=0,
            maximum=1_000_000,
            unit="$",
        ),
        Param(
            "price_max",
            "Price",
            "number",
            "Highest price in US dollars. Keywords: price, dollars, budget, cost, $.",
            minimum=0,
            maximum=1_000_000,
            unit="$",
        ),
        Param(
            "mileage_max",
            "Mileage",
            "number",
            "Highest odometer reading in miles. Synonyms: low miles, low mileage = 50000. "
            "Keywords: miles, mileage, odometer.",
            minimum=0,
            maximum=1_000_000,
            unit="mi",
        ),
        Param(
            "seats_min",
            "Seats",
            "number",
            "Fewest seats wanted. Keywords: seats, seater, passengers.",
            minimum=1,
            maximum=9,
        ),
        Param(
            "features",
            "Feature",
            "multi",
            "Equipment the car must have (all of those listed). Synonyms: moonroof, sun roof = sunroof; "
            "leather seats = leather; nav, gps = navigation; backup camera, rear camera, reversing camera "
            "= backup_camera; carplay = apple_carplay; heated seats = heated_seats; towing, tow hitch = "
            "tow_package; third row, 3rd row = third_row.",
            catalog.FEATURES,
            titled(catalog.FEATURES, feature_labels),
        ),
        Param(
            "sort",
            "Sort",
            "choice",
            "Order of the results. Synonyms: cheapest first, lowest price, cheapest = price_asc; most expensive, "
            "highest price = price_desc; newest = year_desc; oldest = year_asc; lowest mileage = mileage_asc.",
            ("price_asc", "price_desc", "year_desc", "year_asc", "mileage_asc"),
            {
                "price_asc": "Price, low to high",
                "price_desc": "Price, high to low",
                "year_desc": "Newest first",
                "year_asc": "Oldest first",
                "mileage_asc": "Lowest mileage",
            },
        ),
    ]


_PAGE_PARAM = Param(PAGE, "Page", "number", "The page of results.", minimum=1, maximum=MAX_PAGE)


class FilterSchema:
    """The parameters of ``/cars`` and their options. Build one with :meth:`from_catalog`."""

    def __init__(self, params: Sequence[Param], models_by_make: Mapping[str, Sequence[str]]) -> None:
        self.params: dict[str, Param] = {p.name: p for p in params}
        if len(self.params) != len(params):
            raise ValueError("two filter parameters share a name")
        if PAGE in self.params:
            raise ValueError(f"{PAGE!r} is the page number, not a filter")
        self.models_by_make: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in models_by_make.items()}
        # Options are matched case-insensitively and reported in their catalog spelling.
        self._folded = {p.name: {o.casefold(): o for o in p.options} for p in params}

    @classmethod
    def from_catalog(cls, conn: sqlite3.Connection) -> FilterSchema:
        """The schema for the makes, models and colours that the catalog holds."""
        rows = conn.execute("SELECT DISTINCT make, model FROM cars ORDER BY make, model").fetchall()
        models_by_make: dict[str, list[str]] = {}
        for make, model in rows:
            models_by_make.setdefault(make, []).append(model)
        present = {c for (c,) in conn.execute("SELECT DISTINCT color FROM cars")}
        colors = [c for c in catalog.COLORS if c in present] + sorted(present - set(catalog.COLORS))
        models = sorted({m for ms in models_by_make.values() for m in ms}, key=str.casefold)
        return cls(_params(list(models_by_make), models, colors), models_by_make)

    # -- checking --------------------------------------------------------------------------

    def parse(self, pairs: Iterable[tuple[str, str]], *, allow_page: bool = True) -> Query:
        """Check a query string's (name, value) pairs; never raises.

        Empty values mean "not set" (an untouched form field sends them) and are skipped.
        """
        grouped: dict[str, list[str]] = {}
        for name, value in pairs:
            grouped.setdefault(name, []).append(value)
        query = Query()
        for name, values in grouped.items():
            param = self.params.get(name) or (_PAGE_PARAM if allow_page and name == PAGE else None)
            if param is None:
                query.ignored.extend(
                    Ignored(_shown(name), _shown(v), "unknown_parameter", f"{_shown(name)!r} is not a search filter")
                    for v in values
                )
                continue
            given = [v.strip() for v in values if v.strip()]
            check = functools.partial(self._value, param, query.ignored)
            if param.kind == "multi":
                wanted = {check(v) for v in given}
                if wanted - {None}:
                    query.filters[name] = [o for o in param.options if o in wanted]
                continue
            found = _first(name, given, check, query.ignored)
            if param is _PAGE_PARAM:
                query.page = found if isinstance(found, int) else 1
            elif found is not None:
                query.filters[name] = found
        self._check_ranges(query)
        # Report filters in schema order, whatever order the URL had.
        query.filters = {n: query.filters[n] for n in self.params if n in query.filters}
        return query

    def parse_answer(self, answer: object) -> Query:
        """Check a model's answer ``{"filters": {...}}`` exactly as ``/cars`` would check it."""
        if not isinstance(answer, Mapping) or not isinstance(answer.get("filters"), Mapping):
            shown = _shown(json.dumps(answer, default=str))
            return Query(ignored=[Ignored("filters", shown, "invalid_answer", "the answer has no filters object")])
        return self.parse(answer_pairs(answer["filters"]), allow_page=False)

    def _value(self, param: Param, ignored: list[Ignored], value: str) -> str | int | None:
        if param.kind == "number":
            return _whole(param.name, value, param.minimum, param.maximum, ignored)
        return self._option(param, value, ignored)

    def _option(self, param: Param, value: str, ignored: list[Ignored]) -> str | None:
        option = self._folded[param.name].get(value.casefold())
        if option is None:
            ignored.append(
                Ignored(
                    param.name,
                    _shown(value),
                    "not_an_option",
                    f"{_shown(value)!r} is not one of the {param.label.lower()} options",
                )
            )
        return option

    def _check_ranges(self, query: Query) -> None:
        for name in list(query.filters):
            if not name.endswith("_min"):
                continue
            upper = name[: -len("_min")] + "_max"
            low, high = query.filters.get(name), query.filters.get(upper)
            if isinstance(low, int) and isinstance(high, int) and low > high:
                message = f"{name} {low} is above {upper} {high}, so nothing could match"
                query.ignored.append(Ignored(name, str(low), "conflicting_range", message))
                query.ignored.append(Ignored(upper, str(high), "conflicting_range", message))
                del query.filters[name], query.filters[upper]

    # -- building links ----------------------------------------------------------------------

    def to_pairs(self, filters: Mapping[str, Value]) -> list[tuple[str, str]]:
        """The query-string pairs of checked filters, in schema order."""
        pairs: list[tuple[str, str]] = []
        for name in self.params:
            value = filters.get(name)
            if isinstance(value, list):
                pairs.extend((name, v) for v in value)
            elif value is not None:
                pairs.append((name, str(value)))
        return pairs

    def without(self, filters: Mapping[str, Value], name: str, value: str | int) -> list[tuple[str, str]]:
        """The pairs of ``filters`` with one value removed (for a chip's removal link)."""
        return [(n, v) for n, v in self.to_pairs(filters) if (n, v) != (name, str(value))]

    # -- what the model is told -----------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of an answer, ``{"filters": {...}}``, valid for OpenAI's strict mode.

        Strict mode needs every property required and no others allowed, so a filter that the
        question does not mention is ``null`` (``[]`` for ``features``). Every array is bounded
        (``maxItems``), as a constrained decoder needs a bound to stop a repeating model.
        """
        properties: dict[str, Any] = {}
        for p in self.params.values():
            if p.kind == "choice":
                properties[p.name] = {"type": ["string", "null"], "enum": [*p.options, None]}
            elif p.kind == "number":
                properties[p.name] = {"type": ["integer", "null"], "minimum": p.minimum, "maximum": p.maximum}
            else:
                # Bounded: a small model may repeat one item until the token cap cuts the JSON off.
                properties[p.name] = {
                    "type": "array",
                    "items": {"type": "string", "enum": list(p.options)},
                    "maxItems": len(p.options),
                }
            properties[p.name]["description"] = p.description
        return {
            "type": "object",
            "properties": {
                "filters": {
                    "type": "object",
                    "properties": properties,
                    "required": list(properties),
                    "additionalProperties": False,
                }
            },
            "required": ["filters"],
            "additionalProperties": False,
        }

    def description(self) -> dict[str, Any]:
        """The options as plain JSON, for the system prompt."""
        params: dict[str, Any] = {}
        for p in self.params.values():
            entry: dict[str, Any] = {"description": p.description}
            if p.kind == "number":
                entry.update(type="integer", minimum=p.minimum, maximum=p.maximum)
            else:
                entry.update(type="list of options" if p.kind == "multi" else "one option", options=list(p.options))
            params[p.name] = entry
        return {"parameters": params, "models_by_make": {k: list(v) for k, v in self.models_by_make.items()}}

    def system_prompt(self) -> str:
        """Instructions for the model, with :meth:`description` as JSON."""
        return (
            "You turn a shopper's description of the used car they want into search filters for a car "
            'catalog. Answer with JSON only, in the form {"filters": {...}}. Use only the parameters and '
            "option values listed below, spelled exactly as listed. Set a parameter only when the shopper "
            "asks for it; otherwise use null (an empty list for features). Never guess a make or model the "
            "shopper did not name. A maximum price, mileage or year is an upper limit; a minimum is a lower "
            "limit.\n\nFilter options (JSON):\n" + json.dumps(self.description(), separators=(",", ":"))
        )


def _first(
    name: str, given: list[str], check: Callable[[str], str | int | None], ignored: list[Ignored]
) -> str | int | None:
    """The first value that passes ``check``; later good ones are reported as repeated."""
    found: str | int | None = None
    for value in given:
        checked = check(value)
        if checked is None:
            continue
        if found is None:
            found = checked
        else:
            ignored.append(Ignored(name, _shown(value), "repeated", f"{name} takes one value; {found!r} is used"))
    return found


def _whole(name: str, value: str, minimum: int, maximum: int, ignored: list[Ignored]) -> int | None:
    if not _INTEGER.fullmatch(value):
        ignored.append(Ignored(name, _shown(value), "not_a_number", f"{name} must be a whole number"))
        return None
    number = int(value)
    if not minimum <= number <= maximum:
        message = f"{name} must be between {minimum:,} and {maximum:,}"
        ignored.append(Ignored(name, _shown(value), "out_of_range", message))
        return None
    return number


def _scalar(value: object) -> str | None:
    # Mirrors how demo/static/search.js puts an answer into a URL (JavaScript's String()).
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def answer_pairs(filters: Mapping[str, object]) -> list[tuple[str, str]]:
    """The query string a browser builds from an answer's filters: nulls and empty strings
    are left out, a list gives one pair per element, anything else is passed on for ``/cars``
    to check (and report)."""
    pairs: list[tuple[str, str]] = []
    for name, value in filters.items():
        for item in value if isinstance(value, list) else [value]:
            text = _scalar(item)
            if text:
                pairs.append((str(name), text))
    return pairs
