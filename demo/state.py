"""Typed access to what ``create_app`` sets up: the catalog connection, the filter schema,
the signer and the rate limiter."""

from __future__ import annotations

import sqlite3

from flask import Flask, current_app, g

from signgate import Signer

from . import catalog
from .filters import FilterSchema
from .security import RateLimiter

_FILTERS = "demo.filters"
_SIGNER = "demo.signer"
_LIMITER = "demo.rate_limiter"


def install(app: Flask, schema: FilterSchema, signer: Signer | None, limiter: RateLimiter) -> None:
    app.extensions[_FILTERS] = schema
    app.extensions[_SIGNER] = signer
    app.extensions[_LIMITER] = limiter
    app.teardown_appcontext(_close_db)


def filter_schema() -> FilterSchema:
    schema: FilterSchema = current_app.extensions[_FILTERS]
    return schema


def signer() -> Signer | None:
    """The signer, or None when no signing secret is configured (the AI search is then off)."""
    active: Signer | None = current_app.extensions[_SIGNER]
    return active


def rate_limiter() -> RateLimiter:
    limiter: RateLimiter = current_app.extensions[_LIMITER]
    return limiter


def get_db() -> sqlite3.Connection:
    """This request's read-only catalog connection, opened on first use."""
    if "db" not in g:
        g.db = catalog.connect(current_app.config["DATABASE"])
    conn: sqlite3.Connection = g.db
    return conn


def _close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()
