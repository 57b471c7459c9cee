"""Checked filters -> one parameterised SQL query over the catalog.

Only column names from the fixed tables below are ever put into SQL text; every value the
user (or the model) chose travels as a ``?`` parameter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, fields

from .catalog import FEATURES, Car
from .filters import Value

PER_PAGE = 24

_EQUALS = {
    "make": "make",
    "model": "model",
    "body": "body",
    "color": "color",
    "fuel": "fuel",
    "transmission": "transmission",
    "drivetrain": "drivetrain",
}
_AT_LEAST = {"year_min": "year", "price_min": "price", "seats_min": "seats"}
_AT_MOST = {"year_max": "year", "price_max": "price", "mileage_max": "mileage"}
#: Every order ends with the id, so pages never overlap or skip a car.
ORDERS = {
    "price_asc": "price ASC, id ASC",
    "price_desc": "price DESC, id ASC",
    "year_desc": "year DESC, price ASC, id ASC",
    "year_asc": "year ASC, price ASC, id ASC",
    "mileage_asc": "mileage ASC, id ASC",
}
DEFAULT_ORDER = "id ASC"


#: One row of a result page: a listing exactly as the catalog generated it.
Listing = Car

_COLUMNS = [f.name for f in fields(Listing) if f.name != "features"]


@dataclass(frozen=True)
class Results:
    total: int
    page: int
    pages: int
    listings: list[Listing]
    #: Set when the requested page was past the last one and the last page is shown instead.
    requested_page: int | None = None


def where(filters: Mapping[str, Value]) -> tuple[str, list[object]]:
    """The WHERE clause (``"1"`` when there is no filter) and its parameters."""
    clauses: list[str] = []
    params: list[object] = []
    for name, value in filters.items():
        if name in _EQUALS:
            clauses.append(f"{_EQUALS[name]} = ?")
            params.append(value)
        elif name in _AT_LEAST:
            clauses.append(f"{_AT_LEAST[name]} >= ?")
            params.append(value)
        elif name in _AT_MOST:
            clauses.append(f"{_AT_MOST[name]} <= ?")
            params.append(value)
        elif name == "features" and isinstance(value, list):
            # A car must have every feature asked for.
            for feature in value:
                clauses.append("EXISTS (SELECT 1 FROM car_features f WHERE f.car_id = cars.id AND f.feature = ?)")
                params.append(feature)
    return (" AND ".join(clauses) or "1"), params


def search(conn: sqlite3.Connection, filters: Mapping[str, Value], page: int = 1) -> Results:
    """One page of the cars matching ``filters``, ordered by ``filters["sort"]`` if set."""
    clause, params = where(filters)
    order = ORDERS.get(str(filters.get("sort", "")), DEFAULT_ORDER)
    total = int(conn.execute(f"SELECT COUNT(*) FROM cars WHERE {clause}", params).fetchone()[0])  # noqa: S608
    pages = max(1, -(-total // PER_PAGE))
    requested = None
    if page > pages:
        requested, page = page, pages
    rows = conn.execute(
        f"SELECT cars.*, (SELECT group_concat(feature, ',') FROM car_features f WHERE f.car_id = cars.id) AS feats "  # noqa: S608
        f"FROM cars WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, PER_PAGE, (page - 1) * PER_PAGE],
    ).fetchall()
    listings = [
        Listing(
            **{name: row[name] for name in _COLUMNS},
            features=tuple(sorted(row["feats"].split(","), key=FEATURES.index)) if row["feats"] else (),
        )
        for row in rows
    ]
    return Results(total=total, page=page, pages=pages, listings=listings, requested_page=requested)
