"""The stand-in parser step by step, and the promise that every answer is valid against its schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signgate.standin import PLAIN_ANSWER, extract, reply
from signgate.standin.model import MAX_TEXT, last_user_text
from signgate.standin.numbers import find_mentions, read_bounds
from signgate.standin.schema import parse_keywords, parse_synonyms
from signgate.standin.text import phrase_pattern, tokenize

HERE = Path(__file__).parent
CAR = json.loads((HERE / "standin_car_schema.json").read_text())
LAPTOP = json.loads((HERE / "standin_laptop_schema.json").read_text())
FLAT_CAR = CAR["properties"]["filters"]  # the same parameters without the wrapping object


# --- conventions in descriptions -------------------------------------------------------------


def test_synonyms_convention() -> None:
    text = "Body style. Synonyms: crossover, sport utility = suv; truck = pickup; van = minivan."
    assert parse_synonyms(text) == [
        ("crossover", "suv"),
        ("sport utility", "suv"),
        ("truck", "pickup"),
        ("van", "minivan"),
    ]


def test_synonyms_with_numbers_and_following_sentence() -> None:
    text = "Maximum mileage. Synonyms: low miles, low mileage = 50000. Keywords: miles, odometer."
    assert parse_synonyms(text) == [("low miles", "50000"), ("low mileage", "50000")]
    assert parse_keywords(text) == ("miles", "odometer")


def test_keywords_convention_and_absence() -> None:
    assert parse_keywords("Maximum mileage. Keywords: miles, mileage, odometer.") == ("miles", "mileage", "odometer")
    assert parse_keywords("Keywords: $, dollars") == ("$", "dollars")
    assert parse_keywords("Maximum mileage.") == ()
    assert parse_synonyms("Sort order.") == []


def test_synonym_naming_a_value_outside_the_enum_is_dropped() -> None:
    schema = {"type": "object", "properties": {"body": {"enum": ["sedan"], "description": "Synonyms: truck = pickup."}}}
    assert extract(schema, "a truck") == {}


# --- phrases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "text", "matches"),
    [
        ("backup_camera", "with a backup camera", True),
        ("backup_camera", "with a backup-camera", True),
        ("sedan", "cheap sedans", True),
        ("suv", "newest suvs", True),
        ("pickup", "lowest mileage pickups", True),
        ("F-150", "a used f150", True),
        ("CR-V", "honda crv", True),
        ("ev", "every car", False),
        ("van", "a minivan", False),
        ("$", "$25,000", True),
    ],
)
def test_phrase_pattern(phrase: str, text: str, matches: bool) -> None:
    pattern = phrase_pattern(phrase)
    assert pattern is not None
    assert bool(pattern.search(text)) is matches


# --- numbers ---------------------------------------------------------------------------------


def mentions(text: str) -> list[tuple[float, float, bool, bool]]:
    found = find_mentions(tokenize(text.lower()))
    return [(m.lo, m.hi, m.is_range, m.currency) for m in found]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("under 30k", [(30000, 30000, False, False)]),
        ("20 grand", [(20000, 20000, False, True)]),
        ("$25,000", [(25000, 25000, False, True)]),
        ("1.5k", [(1500, 1500, False, False)]),
        ("1.1k", [(1100, 1100, False, False)]),
        ("between 1.1 and 2.3k", [(1100, 2300, True, False)]),
        ("25000 dollars", [(25000, 25000, False, True)]),
        ("seven seats", [(7, 7, False, False)]),
        ("between 20 and 25 grand", [(20000, 25000, True, True)]),
        ("from 2016 to 2019", [(2016, 2019, True, False)]),
        ("2016-2019", [(2016, 2019, True, False)]),
        ("20-25k", [(20000, 25000, True, False)]),
        ("10k-15k", [(10000, 15000, True, False)]),
        ("2019 to 2016", [(2019, 2019, False, False), (2016, 2016, False, False)]),
        ("a v6 and a 3rd row", []),
        ("2016 and 2019", [(2016, 2016, False, False), (2019, 2019, False, False)]),
    ],
)
def test_find_mentions(text: str, expected: list[tuple[float, float, bool, bool]]) -> None:
    assert mentions(text) == expected


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("under 30k", "high"),
        ("less than $20k", "high"),
        ("no more than 100k miles", "high"),
        ("nothing over $18k", "high"),
        ("cheaper than 20k", "high"),
        ("older than 2015", "high"),
        ("30k max", "high"),
        ("50k miles or less", "high"),
        ("over 15k", "low"),
        ("at least 7 seats", "low"),
        ("newer than 2018", "low"),
        ("2015 or newer", "low"),
        ("2019+", "low"),
        ("since 2017", "low"),
        ("a 2018 camry", None),
        ("$25,000", None),
    ],
)
def test_read_bounds(text: str, side: str | None) -> None:
    tokens = tokenize(text.lower())
    found = find_mentions(tokens)
    keyword_tokens = frozenset(i for i, t in enumerate(tokens) if t.text in {"miles", "seats"})
    read_bounds(tokens, found, keyword_tokens)
    assert [m.side for m in found] == [side]


# --- whole answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("crossover under 30k", {"body": "suv", "price_max": 30000}),
        ("stick shift", {"transmission": "manual"}),
        ("with leather and a sunroof", {"features": ["sunroof", "leather"]}),
        ("no sunroof, with leather", {"features": ["leather"]}),
        ("not a sedan", {}),
        ("Toyota or Honda", {}),
        ("low miles, under 60k miles", {"mileage_max": 60000}),
        ("at least 300 miles of range", {}),
        ("a 2020 Camry with 4 doors", {"model": "Camry", "year_min": 2020, "year_max": 2020}),
    ],
)
def test_nested_and_flat_schemas_read_alike(text: str, expected: dict[str, Any]) -> None:
    assert extract(CAR, text) == {"filters": expected}
    assert extract(FLAT_CAR, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Words of time that leave the year out.
        ("newer than 2018", {"year_min": 2019}),
        ("later than 2018", {"year_min": 2019}),
        ("after 2018", {"year_min": 2019}),
        ("older than 2015", {"year_max": 2014}),
        ("earlier than 2015", {"year_max": 2014}),
        ("before 2015", {"year_max": 2014}),
        ("made after 2012 and before 2016", {"year_min": 2013, "year_max": 2015}),
        # Words that keep it, and bounds on amounts, which shoppers mean inclusively.
        ("2018 or newer", {"year_min": 2018}),
        ("since 2018", {"year_min": 2018}),
        ("no newer than 2018", {"year_max": 2018}),
        ("no older than 2018", {"year_min": 2018}),
        ("2015 or older", {"year_max": 2015}),
        ("under $25,000", {"price_max": 25000}),
        ("over 15k", {"price_min": 15000}),
    ],
)
def test_exclusive_bounds_on_whole_years(text: str, expected: dict[str, Any]) -> None:
    assert extract(FLAT_CAR, text) == expected


def test_an_exclusive_bound_on_a_fractional_property_stays_inclusive() -> None:
    """No number is "just after" 2.5: the bound is kept as written where the property is not whole."""
    schema = {
        "type": "object",
        "properties": {
            "version_min": {"type": "number", "minimum": 0, "maximum": 10, "description": "Keywords: version."},
            "year_min": {"type": "integer", "minimum": 1900, "maximum": 2100},
        },
    }
    assert extract(schema, "version after 2.5") == {"version_min": 2.5}
    assert extract(schema, "version after 3") == {"version_min": 3}
    assert extract(schema, "after 2001") == {"year_min": 2002}


def test_strict_schema_gets_nulls_and_empty_arrays() -> None:
    answer = extract(LAPTOP, "a thinkpad with 16gb of ram")
    assert answer["brand"] == "Lenovo" and answer["ram_gb_min"] == 16
    assert answer["features"] == []
    assert set(answer) == set(LAPTOP["properties"])
    assert all(v is None for k, v in answer.items() if k not in {"brand", "ram_gb_min", "features"})


def test_generic_schema_with_refs_booleans_and_numbers() -> None:
    schema = {
        "$defs": {"kind": {"type": "string", "enum": ["studio", "apartment", "house"]}},
        "type": "object",
        "properties": {
            "search": {
                "type": "object",
                "properties": {
                    "kind": {"$ref": "#/$defs/kind", "description": "Synonyms: flat = apartment; bungalow = house."},
                    "bedrooms_min": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 10,
                        "description": "Keywords: bed, bedroom, br.",
                    },
                    "rent_max": {
                        "type": "integer",
                        "minimum": 100,
                        "maximum": 20000,
                        "description": "Monthly rent in euros.",
                    },
                    "pets_allowed": {"type": "boolean", "description": "Synonyms: dog, cat, pet friendly = true."},
                    "floor_area_min": {
                        "type": "number",
                        "minimum": 10,
                        "maximum": 1000,
                        "description": "Keywords: m2, sqm, square meters.",
                    },
                },
            }
        },
    }
    answer = extract(schema, "A pet friendly flat with at least 2 bedrooms, 60 sqm or more, rent under 1,400 euros")
    assert answer == {
        "search": {"kind": "apartment", "bedrooms_min": 2, "rent_max": 1400, "pets_allowed": True, "floor_area_min": 60}
    }
    # A boolean also matches its own name ("pets allowed"), not just its synonyms.
    assert extract(schema, "a bungalow, pets allowed") == {"search": {"kind": "house", "pets_allowed": True}}


def test_required_values_without_null_fall_back_to_valid_values() -> None:
    schema = {
        "type": "object",
        "required": ["kind", "count", "ratio", "flag", "tags", "name", "inner"],
        "additionalProperties": False,
        "properties": {
            "kind": {"type": "string", "enum": ["b", "a"]},
            "count": {"type": "integer", "exclusiveMinimum": 3, "maximum": 9},
            "ratio": {"type": "number", "minimum": 0.5, "maximum": 0.75, "multipleOf": 0.25},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"enum": ["x", "y"]}},
            "name": {"type": "string"},
            "inner": {"type": "object", "properties": {"z": {"type": "integer"}}},
        },
    }
    answer = extract(schema, "nothing useful")
    jsonschema.validate(answer, schema)
    assert answer == {"kind": "b", "count": 4, "ratio": 0.5, "flag": False, "tags": [], "name": "", "inner": {}}


def test_reply_formats() -> None:
    messages = [
        {"role": "system", "content": "x"},
        {"role": "user", "content": [{"type": "text", "text": "stick shift"}]},
    ]
    assert last_user_text(messages) == "stick shift"
    fmt = {"type": "json_schema", "json_schema": {"name": "f", "schema": FLAT_CAR}}
    assert json.loads(reply(messages, fmt)) == {"transmission": "manual"}
    assert json.loads(reply(messages, {"type": "json_object"}))["standin"] is True
    assert reply(messages) == PLAIN_ANSWER
    assert json.loads(reply(messages, {"type": "json_schema", "json_schema": {"name": "f"}})) == {}


def test_empty_and_odd_schemas() -> None:
    assert extract({}, "anything") == {}
    assert extract({"type": "object"}, "anything") == {}
    assert extract({"type": "object", "properties": {"x": {"type": "string"}}}, "anything") == {}


# --- every answer is valid -------------------------------------------------------------------

_VOCAB = [
    "under", "over", "between", "and", "to", "at least", "no more than", "or newer", "+", "-", "$", "k", "grand",
    "miles", "seats", "year", "price", "budget", "gb", "ram", "inch", "kg", "not", "no", "without", "or", ",",
    "suv", "crossover", "sedans", "toyota", "chevy", "stick", "leather", "sunroof", "cheapest", "newest", "low miles",
    "macbook", "rtx", "oled", "touch screen", "integrated graphics", "1.5", "0", "7", "2018", "30000", "99999999",
]  # fmt: skip
_words = st.one_of(st.sampled_from(_VOCAB), st.integers(-10, 10**7).map(str), st.text(max_size=6))
_texts = st.lists(_words, max_size=25).map(" ".join)


@pytest.mark.parametrize("schema", [CAR, FLAT_CAR, LAPTOP], ids=["car", "flat-car", "laptop"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_texts)
def test_answers_are_always_valid(schema: dict[str, Any], text: str) -> None:
    jsonschema.validate(extract(schema, text), schema)


def _number_property() -> st.SearchStrategy[dict[str, Any]]:
    def build(kind: str, lo: int, width: int, keywords: list[str]) -> dict[str, Any]:
        prop: dict[str, Any] = {"type": kind, "minimum": lo, "maximum": lo + width}
        if keywords:
            prop["description"] = "Keywords: " + ", ".join(keywords) + "."
        return prop

    return st.builds(
        build,
        st.sampled_from(["integer", "number"]),
        st.integers(-100, 3000),
        st.integers(0, 100000),
        st.lists(st.sampled_from(["miles", "seats", "year", "price", "$"]), max_size=2),
    )


_enum_property = st.builds(
    lambda values, synonyms: {
        "type": "string",
        "enum": values,
        "description": "Synonyms: " + "; ".join(f"{p} = {values[0]}" for p in synonyms) + ".",
    },
    st.lists(
        st.sampled_from(["suv", "sedan", "red", "Toyota", "manual", "gb", "a_b"]), min_size=1, max_size=4, unique=True
    ),
    st.lists(st.sampled_from(["crossover", "stick", "chevy", "cheapest"]), max_size=2),
)
_names = st.sampled_from(["price_min", "price_max", "year_min", "year_max", "seats_min", "min_miles", "count", "x"])
_schemas = st.dictionaries(
    st.one_of(_names, st.sampled_from(["body", "color", "tags"])),
    st.one_of(_number_property(), _enum_property, st.builds(lambda e: {"type": "array", "items": e}, _enum_property)),
    max_size=6,
).map(lambda props: {"type": "object", "properties": props, "required": sorted(props), "additionalProperties": False})


@settings(max_examples=300, deadline=None)
@given(schema=_schemas, text=_texts)
def test_answers_are_valid_for_generated_schemas(schema: dict[str, Any], text: str) -> None:
    jsonschema.validate(extract(schema, text), schema)


def test_only_the_start_of_a_long_message_is_read() -> None:
    # The server parses on its event loop, so the work per request is bounded by MAX_TEXT.
    padding = "blah " * (MAX_TEXT // 5)
    assert extract(FLAT_CAR, "sedan " + padding) == {"body": "sedan"}
    assert extract(FLAT_CAR, padding + " sedan") == {}


def test_recursive_schema_ends() -> None:
    schema = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"color": {"enum": ["red", "blue"]}, "child": {"$ref": "#/$defs/node"}},
            }
        },
        "$ref": "#/$defs/node",
    }
    answer = extract(schema, "red")
    jsonschema.validate(answer, schema)
    assert answer == {"color": "red"}
