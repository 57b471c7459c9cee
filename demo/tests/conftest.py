"""Fixtures in the shape of Flask's tutorial: ``app`` and ``client``, plus the catalog itself.

The catalog is generated once per test session and shared read-only (the app only ever opens
it read-only); each app still gets its own temporary instance folder.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from demo import catalog, create_app

KEY_ID = "demo-test"
SECRET = "test-signing-secret"
GATEWAY_URL = "http://127.0.0.1:5999"
UPSTREAM_URL = "http://127.0.0.1:5998/v1/chat/completions"


@pytest.fixture(scope="session")
def catalog_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "catalog.sqlite3"
    catalog.ensure_catalog(path)
    return path


@pytest.fixture
def app(tmp_path: Path, catalog_path: Path) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-session-key",
            "DATABASE": str(catalog_path),
            "SIGNGATE_KEY_ID": KEY_ID,
            "SIGNGATE_SECRET": SECRET,
            "GATEWAY_URL": GATEWAY_URL,
            "UPSTREAM_URL": UPSTREAM_URL,
        },
        instance_path=str(tmp_path / "instance"),
        environ={},
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(catalog_path: Path) -> Iterator[sqlite3.Connection]:
    """The same catalog, for checking the app's answers with SQL written here."""
    with catalog.reading(catalog_path) as conn:
        yield conn
