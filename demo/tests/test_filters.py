"""The filter schema: checking values, the JSON schema the model gets, and model answers."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import pytest

from demo import apis, catalog
from demo.filters import FilterSchema, Query, answer_pairs
from signgate import strict_json
from signgate.errors import PolicyViolation
from signgate.extensions import PolicyRules
from signgate.gateway.policy import enforce
from signgate.providers import find_upstream


@pytest.fixture
def schema(db: sqlite3.Connection) -> FilterSchema:
    return FilterSchema.from_catalog(db)


PARAMS = [
    "make",
    "model",
    "body",
    "color",
    "fuel",
    "transmission",
    "drivetrain",
    "year_min",
    "year_max",
    "price_min",
    "price_max",
    "mileage_max",
    "seats_min",
    "features",
    "sort",
]


def reasons(query: Query) -> list[tuple[str, str]]:
    return [(i.param, i.reason) for i in query.ignored]


def test_parameters_are_the_contract(schema: FilterSchema) -> None:
    assert list(schema.params) == PARAMS
    assert schema.params["body"].options == catalog.BODIES
    assert schema.params["fuel"].options == ("gasoline", "diesel", "hybrid", "electric")
    assert schema.params["transmission"].options == ("automatic", "manual")
    assert schema.params["drivetrain"].options == ("fwd", "rwd", "awd", "4wd")
    assert schema.params["features"].options == catalog.FEATURES
    assert schema.params["sort"].options == ("price_asc", "price_desc", "year_desc", "year_asc", "mileage_asc")


def test_enums_come_from_the_catalog(schema: FilterSchema, db: sqlite3.Connection) -> None:
    makes = {r[0] for r in db.execute("SELECT DISTINCT make FROM cars")}
    models = {r[0] for r in db.execute("SELECT DISTINCT model FROM cars")}
    colors = {r[0] for r in db.execute("SELECT DISTINCT color FROM cars")}
    assert set(schema.params["make"].options) == makes
    assert set(schema.params["model"].options) == models
    assert set(schema.params["color"].options) == colors
    assert {m for ms in schema.models_by_make.values() for m in ms} == models
    # Each model belongs to one make, so a model name alone is never ambiguous.
    assert sum(len(ms) for ms in schema.models_by_make.values()) == len(models)


def test_parse_canonicalises_and_orders(schema: FilterSchema) -> None:
    query = schema.parse(
        [
            ("sort", "PRICE_ASC"),
            ("features", "leather"),
            ("make", " toyota "),
            ("features", "SUNROOF"),
            ("features", "leather"),
            ("year_min", "+2015"),
            ("page", "3"),
        ]
    )
    assert query.filters == {
        "make": "Toyota",
        "year_min": 2015,
        "features": ["sunroof", "leather"],
        "sort": "price_asc",
    }
    assert list(query.filters) == ["make", "year_min", "features", "sort"]
    assert query.page == 3
    assert query.ignored == []


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("colour", "red")], [("colour", "unknown_parameter")]),
        ([("body", "tank")], [("body", "not_an_option")]),
        ([("price_max", "20k")], [("price_max", "not_a_number")]),
        ([("price_max", "1e5")], [("price_max", "not_a_number")]),
        ([("price_max", "2000000")], [("price_max", "out_of_range")]),
        ([("year_max", "1979")], [("year_max", "out_of_range")]),
        ([("year_max", str(catalog.CURRENT_YEAR + 2))], [("year_max", "out_of_range")]),
        ([("seats_min", "10")], [("seats_min", "out_of_range")]),
        (
            [("price_min", "900"), ("price_max", "800")],
            [("price_min", "conflicting_range"), ("price_max", "conflicting_range")],
        ),
        ([("fuel", "diesel"), ("fuel", "electric")], [("fuel", "repeated")]),
        ([("features", "wings"), ("features", "leather")], [("features", "not_an_option")]),
        ([("page", "-1")], [("page", "out_of_range")]),
        ([("page", "two")], [("page", "not_a_number")]),
    ],
)
def test_parse_reports_every_ignored_value(
    schema: FilterSchema, pairs: list[tuple[str, str]], expected: list[tuple[str, str]]
) -> None:
    query = schema.parse(pairs)
    assert reasons(query) == expected
    for item in query.ignored:
        assert item.message and item.param in {p for p, _ in pairs}


def test_parse_keeps_the_good_values_next_to_bad_ones(schema: FilterSchema) -> None:
    query = schema.parse([("features", "wings"), ("features", "leather"), ("fuel", "steam"), ("fuel", "diesel")])
    assert query.filters == {"fuel": "diesel", "features": ["leather"]}


def test_equal_range_ends_are_fine(schema: FilterSchema) -> None:
    assert schema.parse([("year_min", "2018"), ("year_max", "2018")]).filters == {"year_min": 2018, "year_max": 2018}


def test_shown_values_are_truncated(schema: FilterSchema) -> None:
    [item] = schema.parse([("make", "x" * 5000)]).ignored
    assert len(item.value) <= 60 and item.value.endswith("…")


def test_to_pairs_and_without_round_trip(schema: FilterSchema) -> None:
    filters = schema.parse(
        [("make", "Honda"), ("features", "sunroof"), ("features", "leather"), ("seats_min", "7")]
    ).filters
    pairs = schema.to_pairs(filters)
    assert pairs == [("make", "Honda"), ("seats_min", "7"), ("features", "sunroof"), ("features", "leather")]
    assert schema.parse(pairs).filters == filters
    assert schema.without(filters, "features", "sunroof") == [
        ("make", "Honda"),
        ("seats_min", "7"),
        ("features", "leather"),
    ]
    assert schema.without(filters, "seats_min", 7) == [
        ("make", "Honda"),
        ("features", "sunroof"),
        ("features", "leather"),
    ]


# -- the JSON schema -------------------------------------------------------------------------


def test_json_schema_is_strict_mode_valid(schema: FilterSchema) -> None:
    root = schema.json_schema()
    assert root["required"] == ["filters"] and root["additionalProperties"] is False
    filters = root["properties"]["filters"]
    assert filters["additionalProperties"] is False
    assert filters["required"] == PARAMS == list(filters["properties"])
    for name, prop in filters["properties"].items():
        param = schema.params[name]
        assert prop["description"] == param.description
        if param.kind == "choice":
            assert prop["type"] == ["string", "null"]
            assert prop["enum"] == [*param.options, None]
        elif param.kind == "number":
            assert prop["type"] == ["integer", "null"]
            assert (prop["minimum"], prop["maximum"]) == (param.minimum, param.maximum)
        else:
            assert prop == {
                "type": "array",
                "items": {"type": "string", "enum": list(catalog.FEATURES)},
                "maxItems": len(catalog.FEATURES),
                "description": param.description,
            }
    assert "page" not in filters["properties"]
    json.dumps(root, allow_nan=False)


def _arrays(node: object) -> list[dict[str, object]]:
    if isinstance(node, dict):
        found = [node] if node.get("type") == "array" else []
        return found + [a for value in node.values() for a in _arrays(value)]
    if isinstance(node, list):
        return [a for value in node for a in _arrays(value)]
    return []


def test_every_array_in_the_schema_is_bounded(schema: FilterSchema) -> None:
    """A small local model under a grammar repeated one feature until the 400-token cap cut the
    JSON off; a bound lets the grammar stop it. The bound is the number of distinct options."""
    arrays = _arrays(schema.json_schema())
    assert arrays
    for array in arrays:
        items = array["items"]
        assert isinstance(items, dict)
        assert array["maxItems"] == len(items["enum"])


def test_ranges_are_min_max_pairs(schema: FilterSchema) -> None:
    for name, param in schema.params.items():
        if name.endswith("_min") and name.replace("_min", "_max") in schema.params:
            partner = schema.params[name.replace("_min", "_max")]
            assert (param.minimum, param.maximum) == (partner.minimum, partner.maximum)


_SYNONYMS = re.compile(r"Synonyms: (.*?)\.(?: |$)")


@pytest.mark.parametrize("name", PARAMS)
def test_synonyms_map_to_real_values(schema: FilterSchema, name: str) -> None:
    """Every ``Synonyms: a, b = value;`` entry names an option (or a number in range)."""
    param = schema.params[name]
    match = _SYNONYMS.search(param.description)
    if match is None:
        assert param.kind == "number", f"{name} has no synonyms"
        return
    for entry in match.group(1).split(";"):
        phrases, _, value = entry.partition("=")
        assert phrases.strip() and value.strip(), entry
        value = value.strip()
        if param.kind == "number":
            assert param.minimum <= int(value) <= param.maximum
        else:
            assert value in param.options, f"{name}: synonym target {value!r} is not an option"


def test_descriptions_follow_the_standin_conventions(schema: FilterSchema) -> None:
    body = schema.params["body"].description
    assert body.startswith("Body style. Synonyms: crossover, sport utility = suv; truck = pickup; van = minivan;")
    assert "stick shift, stick = manual" in schema.params["transmission"].description
    assert "cheapest first, lowest price" in schema.params["sort"].description
    assert "newest = year_desc" in schema.params["sort"].description
    assert "lowest mileage = mileage_asc" in schema.params["sort"].description
    mileage = schema.params["mileage_max"].description
    assert "Synonyms: low miles, low mileage = 50000." in mileage
    assert "Keywords: miles, mileage, odometer." in mileage
    for name in ("year_min", "year_max", "price_min", "price_max", "seats_min"):
        assert "Keywords: " in schema.params[name].description


def test_system_prompt_holds_the_options(schema: FilterSchema) -> None:
    prompt = schema.system_prompt()
    described = json.loads(prompt.split("Filter options (JSON):\n", 1)[1])
    assert list(described["parameters"]) == PARAMS
    assert described["parameters"]["make"]["options"] == list(schema.params["make"].options)
    assert described["parameters"]["price_max"]["maximum"] == 1_000_000
    assert described["models_by_make"]["Toyota"][:2] == ["4Runner", "Camry"]


def test_chat_request(schema: FilterSchema) -> None:
    body = chat_body(schema, "a red suv", "some-model")
    assert body["model"] == "some-model"
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": schema.system_prompt()},
        {"role": "user", "content": "a red suv"},
    ]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "car_filters", "strict": True, "schema": schema.json_schema()},
    }


def chat_body(schema: FilterSchema, query: str, model: str) -> dict[str, Any]:
    return apis.search_request(
        "chat", system=schema.system_prompt(), query=query, schema=schema.json_schema(), model=model,
        max_tokens=400, max_chars=300, answer_as="schema",
    ).body  # fmt: skip


@pytest.mark.parametrize("answer_as", ["schema", "tool"])
@pytest.mark.parametrize("name", apis.API_NAMES)
def test_every_apis_request_obeys_the_policy_signed_with_it(
    schema: FilterSchema, name: str, answer_as: apis.AnswerAs
) -> None:
    api = apis.APIS[name]
    search = apis.search_request(
        name, system=schema.system_prompt(), query="a red suv", schema=schema.json_schema(), model="m",
        max_tokens=400, max_chars=300, answer_as=answer_as,
    )  # fmt: skip
    rules = PolicyRules.from_header(search.policy.header())
    found = find_upstream("POST", api.path("m"))
    assert found is not None and found[0].name == name
    body = strict_json.loads(json.dumps(search.body))
    enforce(rules, body, found)  # the output cap inserted where the API keeps it
    # The schema or the tool is fixed, and the question is the only text the shopper chooses.
    assert (rules.response_format_sha256 is None) == (answer_as == "tool")
    assert (rules.tools_sha256 is None) == (answer_as == "schema")
    longer = json.loads(json.dumps(search.body).replace("a red suv", "x" * 301))
    with pytest.raises(PolicyViolation) as info:
        enforce(rules, longer, found)
    assert info.value.rule == "max_user_chars"


# -- model answers ---------------------------------------------------------------------------


def test_answer_with_nulls_is_empty(schema: FilterSchema) -> None:
    answer: dict[str, Any] = {"filters": dict.fromkeys(PARAMS)}
    answer["filters"]["features"] = []
    query = schema.parse_answer(answer)
    assert query.filters == {} and query.ignored == []


def test_answer_is_checked_like_the_url(schema: FilterSchema) -> None:
    answer = {
        "filters": {
            "make": "toyota",
            "model": "RAV4",
            "body": "spaceship",
            "color": None,
            "price_max": 25000,
            "year_min": 2018.0,
            "mileage_max": "50000",
            "seats_min": 99,
            "features": ["sunroof", "jetpack", "leather", None, "sunroof"],
            "sort": "cheapest",
            "warp_drive": True,
            "page": 4,
        }
    }
    query = schema.parse_answer(answer)
    assert query.filters == {
        "make": "Toyota",
        "model": "RAV4",
        "year_min": 2018,
        "price_max": 25000,
        "mileage_max": 50000,
        "features": ["sunroof", "leather"],
    }
    assert reasons(query) == [
        ("body", "not_an_option"),
        ("seats_min", "out_of_range"),
        ("features", "not_an_option"),
        ("sort", "not_an_option"),
        ("warp_drive", "unknown_parameter"),
        ("page", "unknown_parameter"),
    ]
    assert query.page == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [(2.5, "not_a_number"), (True, "not_a_number"), ({"lt": 5}, "not_a_number"), ([1, 2], "repeated"), ("", None)],
)
def test_answer_numbers_must_be_whole(schema: FilterSchema, value: object, reason: str | None) -> None:
    query = schema.parse_answer({"filters": {"seats_min": value}})
    assert [r for _, r in reasons(query)] == ([reason] if reason else [])


@pytest.mark.parametrize("answer", [None, [], "filters", {"filter": {}}, {"filters": ["make"]}, {"filters": None}])
def test_answer_without_a_filters_object(schema: FilterSchema, answer: object) -> None:
    query = schema.parse_answer(answer)
    assert query.filters == {}
    assert reasons(query) == [("filters", "invalid_answer")]


def test_answer_pairs_match_what_the_browser_builds() -> None:
    # The same conversion as answerToParams in demo/static/search.js (JavaScript's String()).
    pairs = answer_pairs(
        {"a": None, "b": "", "c": 3, "d": 3.0, "e": 2.5, "f": False, "g": ["x", None, "", 7], "h": {"k": 1}}
    )
    assert pairs == [("c", "3"), ("d", "3"), ("e", "2.5"), ("f", "false"), ("g", "x"), ("g", "7"), ("h", '{"k":1}')]
