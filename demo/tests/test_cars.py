"""``/cars``: every filter against SQL written here, sorting, paging, chips, ignored values."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from demo import create_app
from demo.search import PER_PAGE

from .html import Page


def get(client: FlaskClient, query: str | list[tuple[str, str]]) -> Page:
    text = query if isinstance(query, str) else urlencode(query)
    response = client.get(f"/cars?{text}")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return Page(response.get_data(as_text=True))


def sql_ids(db: sqlite3.Connection, where: str, params: tuple[object, ...] = (), order: str = "id") -> list[int]:
    rows = db.execute(f"SELECT id FROM cars WHERE {where} ORDER BY {order}", params).fetchall()
    return [r[0] for r in rows]


def having_all(features: list[str]) -> tuple[str, tuple[object, ...]]:
    """Cars with every one of ``features``, written differently from the app's EXISTS clauses."""
    marks = ", ".join("?" * len(features))
    where = (
        f"id IN (SELECT car_id FROM car_features WHERE feature IN ({marks}) "
        f"GROUP BY car_id HAVING COUNT(DISTINCT feature) = {len(features)})"
    )
    return where, tuple(features)


FILTER_CASES = [
    ("", "1", ()),
    ("make=Toyota", "make = ?", ("Toyota",)),
    ("make=toyota", "make = ?", ("Toyota",)),
    ("model=Civic", "model = ?", ("Civic",)),
    ("model=f-150", "model = ?", ("F-150",)),
    ("body=pickup", "body = ?", ("pickup",)),
    ("body=SUV", "body = ?", ("suv",)),
    ("color=red", "color = ?", ("red",)),
    ("fuel=electric", "fuel = ?", ("electric",)),
    ("fuel=diesel", "fuel = ?", ("diesel",)),
    ("transmission=manual", "transmission = ?", ("manual",)),
    ("drivetrain=4wd", "drivetrain = ?", ("4wd",)),
    ("drivetrain=AWD", "drivetrain = ?", ("awd",)),
    ("year_min=2020", "year >= ?", (2020,)),
    ("year_max=2010", "year <= ?", (2010,)),
    ("year_min=2015&year_max=2018", "year BETWEEN ? AND ?", (2015, 2018)),
    ("year_min=2018&year_max=2018", "year = ?", (2018,)),
    ("price_min=30000", "price >= ?", (30000,)),
    ("price_max=10000", "price <= ?", (10000,)),
    ("price_min=15000&price_max=20000", "price BETWEEN ? AND ?", (15000, 20000)),
    ("mileage_max=30000", "mileage <= ?", (30000,)),
    ("seats_min=7", "seats >= ?", (7,)),
    ("seats_min=2", "seats >= ?", (2,)),
    ("make=Toyota&model=Civic", "make = ? AND model = ?", ("Toyota", "Civic")),
    (
        "make=Ford&body=pickup&drivetrain=4wd&price_max=40000&year_min=2015",
        "make = ? AND body = ? AND drivetrain = ? AND price <= ? AND year >= ?",
        ("Ford", "pickup", "4wd", 40000, 2015),
    ),
    (
        "body=suv&color=white&fuel=gasoline&transmission=automatic&seats_min=7&mileage_max=80000",
        "body = ? AND color = ? AND fuel = ? AND transmission = ? AND seats >= ? AND mileage <= ?",
        ("suv", "white", "gasoline", "automatic", 7, 80000),
    ),
]


@pytest.mark.parametrize(("query", "where", "params"), FILTER_CASES, ids=[c[0] or "none" for c in FILTER_CASES])
def test_filters_match_sql(
    client: FlaskClient, db: sqlite3.Connection, query: str, where: str, params: tuple[object, ...]
) -> None:
    expected = sql_ids(db, where, params)
    page = get(client, query)
    assert page.count() == len(expected)
    assert page.ids() == expected[:PER_PAGE]
    assert page.ignored() == []


FEATURE_CASES = [["sunroof"], ["tow_package"], ["leather", "navigation"], ["apple_carplay", "heated_seats", "sunroof"]]


@pytest.mark.parametrize("features", FEATURE_CASES, ids="+".join)
def test_features_must_all_match(client: FlaskClient, db: sqlite3.Connection, features: list[str]) -> None:
    where, params = having_all(features)
    expected = sql_ids(db, where, params)
    page = get(client, [("features", f) for f in features])
    assert page.count() == len(expected)
    assert page.ids() == expected[:PER_PAGE]
    # Every listed car shows every requested feature, and asking for more never finds more.
    assert len(expected) > 0
    if len(features) > 1:
        assert len(expected) < len(sql_ids(db, *having_all(features[:1])))


def test_features_combined_with_filters(client: FlaskClient, db: sqlite3.Connection) -> None:
    where, params = having_all(["third_row", "tow_package"])
    expected = sql_ids(db, f"body = ? AND {where}", ("suv", *params))
    page = get(client, "body=suv&features=third_row&features=tow_package&features=third_row")
    assert page.count() == len(expected) > 0
    assert page.ids() == expected[:PER_PAGE]
    assert page.ignored() == []  # a repeated feature is no error


SORTS = {
    "price_asc": "price ASC, id ASC",
    "price_desc": "price DESC, id ASC",
    "year_desc": "year DESC, price ASC, id ASC",
    "year_asc": "year ASC, price ASC, id ASC",
    "mileage_asc": "mileage ASC, id ASC",
}


@pytest.mark.parametrize("sort", list(SORTS))
def test_sort_orders(client: FlaskClient, db: sqlite3.Connection, sort: str) -> None:
    expected = sql_ids(db, "body = ?", ("sedan",), order=SORTS[sort])
    page = get(client, f"body=sedan&sort={sort}")
    assert page.ids() == expected[:PER_PAGE]
    column = sort.rsplit("_", 1)[0]
    values = [db.execute(f"SELECT {column} FROM cars WHERE id = ?", (i,)).fetchone()[0] for i in page.ids()]
    assert len(set(values)) > 1
    assert values == sorted(values, reverse=sort.endswith("_desc"))


def test_pagination_walks_every_result_once(client: FlaskClient, db: sqlite3.Connection) -> None:
    expected = sql_ids(db, "body = ?", ("suv",), order="price ASC, id ASC")
    assert len(expected) > 3 * PER_PAGE
    seen: list[int] = []
    url = "/cars?body=suv&sort=price_asc"
    pages = 0
    while True:
        page = Page(client.get(url).get_data(as_text=True))
        assert len(page.ids()) == min(PER_PAGE, len(expected) - len(seen))
        seen += page.ids()
        pages += 1
        nexts = page.all("page-next")
        if not nexts:
            break
        url = nexts[0]["href"]
        assert "sort=price_asc" in url and "body=suv" in url
    assert seen == expected
    assert pages == -(-len(expected) // PER_PAGE)
    assert page.one("page-current").text == f"Page {pages} of {pages}"
    prev = dict(parse_qsl(urlsplit(page.one("page-prev")["href"]).query))
    assert pages > 2 and prev["page"] == str(pages - 1)


def test_first_page_has_no_prev_link(client: FlaskClient) -> None:
    page = get(client, "")
    assert page.all("page-prev") == []
    assert urlsplit(page.one("page-next")["href"]).query == "page=2"


def test_page_past_the_end_shows_the_last_page(client: FlaskClient, db: sqlite3.Connection) -> None:
    expected = sql_ids(db, "body = ?", ("convertible",))
    last = -(-len(expected) // PER_PAGE)
    page = get(client, "body=convertible&page=50")
    assert page.ids() == expected[(last - 1) * PER_PAGE :]
    assert page.ignored() == [("page", "out_of_range")]


def test_no_results(client: FlaskClient) -> None:
    page = get(client, "make=Tesla&fuel=diesel")
    assert page.count() == 0
    assert page.ids() == []
    assert "No car matches" in page.one("no-results").text


def test_chips_link_to_the_search_without_that_value(client: FlaskClient, db: sqlite3.Connection) -> None:
    pairs = [
        ("make", "Toyota"),
        ("body", "suv"),
        ("price_max", "30000"),
        ("features", "sunroof"),
        ("features", "leather"),
        ("sort", "price_asc"),
    ]
    page = get(client, [*pairs, ("page", "2")])
    chips = page.all("chip")
    assert [(c["data-param"], c["data-value"]) for c in chips] == pairs
    assert [c.text.removesuffix(" \N{MULTIPLICATION SIGN}") for c in chips] == [
        "Make: Toyota",
        "Body: SUV",
        "Price ≤ $30,000",
        "Feature: Sunroof",
        "Feature: Leather",
        "Sort: Price, low to high",
    ]
    for chip, removed in zip(chips, pairs, strict=True):
        link = urlsplit(chip["href"])
        assert link.path == "/cars"
        assert parse_qsl(link.query) == [p for p in pairs if p != removed]  # and back to page 1
    # Following a chip really drops that filter.
    after = Page(client.get(chips[0]["href"]).get_data(as_text=True))
    where, params = having_all(["sunroof", "leather"])
    assert after.count() == len(sql_ids(db, f"body = ? AND price <= ? AND {where}", ("suv", 30000, *params)))
    assert page.one("chips-clear")["href"] == "/cars"


def test_no_chips_without_filters(client: FlaskClient) -> None:
    page = get(client, "")
    assert page.all("chip") == []
    assert page.all("ignored-notice") == []


IGNORED_CASES = [
    ("foo=bar", [("foo", "unknown_parameter")], "1", ()),
    ("body=spaceship", [("body", "not_an_option")], "1", ()),
    ("make=Yugo&color=red", [("make", "not_an_option")], "color = ?", ("red",)),
    ("model=Camry%20Solara", [("model", "not_an_option")], "1", ()),
    ("price_max=cheap", [("price_max", "not_a_number")], "1", ()),
    ("price_max=12.5", [("price_max", "not_a_number")], "1", ()),
    ("price_max=" + "9" * 40, [("price_max", "not_a_number")], "1", ()),
    ("mileage_max=-5", [("mileage_max", "out_of_range")], "1", ()),
    ("year_min=1700", [("year_min", "out_of_range")], "1", ()),
    ("seats_min=0&seats_min=12", [("seats_min", "out_of_range"), ("seats_min", "out_of_range")], "1", ()),
    (
        "year_min=2020&year_max=2010",
        [("year_min", "conflicting_range"), ("year_max", "conflicting_range")],
        "1",
        (),
    ),
    (
        "price_min=50000&price_max=100&body=coupe",
        [("price_min", "conflicting_range"), ("price_max", "conflicting_range")],
        "body = ?",
        ("coupe",),
    ),
    ("features=sunroof&features=jetpack", [("features", "not_an_option")], *having_all(["sunroof"])),
    ("make=Toyota&make=Honda", [("make", "repeated")], "make = ?", ("Toyota",)),
    ("make=Yugo&make=Honda", [("make", "not_an_option")], "make = ?", ("Honda",)),
    ("sort=random", [("sort", "not_an_option")], "1", ()),
    ("page=abc", [("page", "not_a_number")], "1", ()),
    ("page=0", [("page", "out_of_range")], "1", ()),
    ("make=%00%FF&x%00=1", [("make", "not_an_option"), ("x\x00", "unknown_parameter")], "1", ()),
    ("make=&model=&price_max=&features=&sort=", [], "1", ()),
]


@pytest.mark.parametrize(("query", "ignored", "where", "params"), IGNORED_CASES, ids=[c[0][:40] for c in IGNORED_CASES])
def test_ignored_values_are_listed_never_500(
    client: FlaskClient,
    db: sqlite3.Connection,
    query: str,
    ignored: list[tuple[str, str]],
    where: str,
    params: tuple[object, ...],
) -> None:
    page = get(client, query)
    assert page.ignored() == ignored
    assert page.count() == len(sql_ids(db, where, params))
    if ignored:
        assert page.one("ignored-notice")
    else:
        assert page.all("ignored-notice") == []


def test_ignored_values_are_escaped(client: FlaskClient) -> None:
    response = client.get("/cars?make=<script>alert(1)</script>&<b>=1")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>alert" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_form_works_without_javascript_and_is_prefilled(client: FlaskClient) -> None:
    page = get(client, "make=Toyota&model=RAV4&features=sunroof&price_max=20000&sort=price_asc&fuel=bogus")
    form = page.one("filter-form")
    assert form["method"] == "get" and form["action"] == "/cars"
    selected = {e.attrs.get("value") for e in page.elements if e.tag == "option" and "selected" in e.attrs}
    assert selected == {"Toyota", "RAV4", "price_asc"}  # the bogus fuel is not prefilled
    assert page.one("filter-price_max")["value"] == "20000"
    assert page.one("filter-year_min")["value"] == ""
    assert "checked" in page.one("filter-feature-sunroof").attrs
    assert "checked" not in page.one("filter-feature-leather").attrs
    names = {e.attrs.get("name") for e in page.elements if e.tag in ("select", "input") and e.attrs.get("name")}
    expected = {"make", "model", "body", "color", "fuel", "transmission", "drivetrain", "year_min", "year_max"}
    expected |= {"price_min", "price_max", "mileage_max", "seats_min", "features", "sort"}
    assert expected <= names
    # Labels point at their fields.
    ids = {e["id"] for e in page.elements if "id" in e.attrs}
    assert all(e["for"] in ids for e in page.elements if e.tag == "label" and "for" in e.attrs)


def test_submitting_the_untouched_form_shows_everything(client: FlaskClient, db: sqlite3.Connection) -> None:
    blank = [(n, "") for n in ("make", "model", "body", "year_min", "price_max", "mileage_max", "sort")]
    page = get(client, blank)
    assert page.count() == len(sql_ids(db, "1"))
    assert page.ignored() == []


def test_result_rows_show_the_cars(client: FlaskClient, db: sqlite3.Connection) -> None:
    page = get(client, "make=Subaru&sort=price_desc")
    first = page.all("result-row")[0]
    row = db.execute("SELECT year, make, model, price FROM cars WHERE id = ?", (int(first["data-car-id"]),)).fetchone()
    assert first.text.startswith(f"{row['year']} Subaru {row['model']}")
    assert f"${row['price']:,}" in first.text


def test_index_redirects_to_cars_keeping_the_query(client: FlaskClient) -> None:
    response = client.get("/?make=Toyota&features=sunroof&features=leather")
    assert response.status_code == 302
    assert response.headers["Location"] == "/cars?make=Toyota&features=sunroof&features=leather"
    assert client.get("/").headers["Location"] == "/cars"


def test_chat_box_and_page_data(client: FlaskClient) -> None:
    page = get(client, "")
    for testid in (
        "chat-input",
        "chat-submit",
        "chat-cancel",
        "chat-status",
        "chat-error",
        "understood",
        "standin-note",
    ):
        assert page.all(testid), testid
    # The script caps the question and says so; a maxlength would cut a paste without a word.
    assert page.one("chat-input")["data-max-chars"] == "300"
    assert "maxlength" not in page.one("chat-input").attrs
    assert page.one("chat-count").text.strip() == "0 / 300 characters"
    assert page.one("results-title")["tabindex"] == "-1"
    metas = {e.attrs.get("name"): e.attrs.get("content") for e in page.elements if e.tag == "meta"}
    assert metas["sign-url"] == "/api/search/sign"
    assert metas["signgate-js"] == "/assets/signgate.js"
    assert metas["csrf-token"]
    assert metas["answer-idle-ms"] == "60000"
    scripts = [e.attrs.get("src") for e in page.elements if e.tag == "script" and e.attrs.get("type") == "module"]
    assert scripts == ["/static/search.js"]


def test_real_model_note_instead_of_standin(app: Flask) -> None:
    app.config.update(STANDIN=False, MODEL="gpt-4o-mini")
    page = get(app.test_client(), "")
    assert page.all("standin-note") == []
    assert "gpt-4o-mini" in page.one("model-note").text


def test_without_a_signing_secret_the_chat_is_off(tmp_path: Path, catalog_path: Path) -> None:
    app = create_app({"DATABASE": str(catalog_path)}, instance_path=str(tmp_path), environ={})
    page = get(app.test_client(), "")
    assert page.all("chat-input") == []
    assert page.one("ai-unconfigured")
    assert page.count() > 0


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/cars")
    policy = response.headers["Content-Security-Policy"]
    assert "connect-src 'self' http://127.0.0.1:5999;" in policy
    assert "default-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_serves_the_packaged_browser_helper(app: Flask, tmp_path: Path) -> None:
    helper = tmp_path / "js" / "index.js"
    helper.parent.mkdir()
    helper.write_text("export async function askJSON() {}\n")
    (helper.parent / "sse.js").write_text("export const x = 1;\n")
    app.config["SIGNGATE_JS"] = str(helper)
    client = app.test_client()
    with client.get("/assets/signgate.js") as response:
        assert response.status_code == 200
        assert response.mimetype == "application/javascript"
        assert response.get_data() == helper.read_bytes()
    with client.get("/assets/sse.js") as sibling:
        assert sibling.status_code == 200 and sibling.mimetype == "application/javascript"
    assert client.get("/assets/missing.js").status_code == 404
    assert client.get("/assets/..%2Fsecret.js").status_code == 404
    helper.unlink()
    assert client.get("/assets/signgate.js").status_code == 404


def test_helper_path_is_the_repository_file(app: Flask) -> None:
    root = Path(__file__).resolve().parents[2]
    assert Path(app.config["SIGNGATE_JS"]) == root / "js" / "index.js"


def test_static_search_script_is_served(client: FlaskClient) -> None:
    with client.get("/static/search.js") as response:
        assert response.status_code == 200
        assert "askJSON" in response.get_data(as_text=True)
