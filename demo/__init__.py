"""The signgate demo: a used-car search whose chat box is answered through the gateway.

``create_app`` is a Flask app factory. Configuration comes from, in increasing priority, the
defaults in :data:`DEFAULTS`, environment variables of the same names, and ``test_config``.
The app holds the signing secret and never an API key.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response

from signgate import Signer

from . import api, apis, catalog, views
from .filters import FilterSchema
from .security import RateLimiter
from .state import install

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, Any] = {
    "SIGNGATE_KEY_ID": "demo",
    "SIGNGATE_SECRET": "",
    "GATEWAY_URL": "http://127.0.0.1:5001",
    "UPSTREAM_URL": "http://127.0.0.1:5002/v1/chat/completions",
    # The LLM API the upstream speaks (demo/apis.py): chat, responses, anthropic or gemini.
    "PROVIDER": "chat",
    # How the answer comes back: "schema" (JSON text matching a schema) or "tool" (a forced
    # function call's arguments); empty for the API's own default (a tool call for anthropic).
    "ANSWER_AS": "",
    "MODEL": "gpt-4o-mini",
    "SIGN_EXPIRES": 30,
    # AI searches per session per minute.
    "SIGN_RATE_LIMIT": 10,
    "QUERY_MAX_CHARS": 300,
    # The ceiling the signed policy puts on the model's answer.
    "MAX_TOKENS": 400,
    # Seconds the page waits for the next byte of an answer before it gives up: a slow local
    # model that keeps streaming keeps the search alive.
    "ANSWER_IDLE_TIMEOUT": 60,
    # True when the upstream is the offline stand-in, which the page then says.
    "STANDIN": True,
    "CATALOG_SEED": catalog.DEFAULT_SEED,
    "CATALOG_SIZE": catalog.DEFAULT_SIZE,
    # The browser helper the package ships; the demo serves this very file.
    "SIGNGATE_JS": str(REPO_ROOT / "js" / "index.js"),
    "MAX_CONTENT_LENGTH": 16 * 1024,
    "SESSION_COOKIE_SAMESITE": "Lax",
}


def _integer(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be true or false (1/0, yes/no), got {raw!r}")


def _text(_name: str, raw: str) -> str:
    return raw


#: Config keys read from environment variables of the same name, and how to read each.
ENVIRONMENT: dict[str, Callable[[str, str], Any]] = {
    "SECRET_KEY": _text,
    "SIGNGATE_KEY_ID": _text,
    "SIGNGATE_SECRET": _text,
    "GATEWAY_URL": _text,
    "UPSTREAM_URL": _text,
    "PROVIDER": _text,
    "ANSWER_AS": _text,
    "MODEL": _text,
    "SIGN_EXPIRES": _integer,
    "SIGN_RATE_LIMIT": _integer,
    "MAX_TOKENS": _integer,
    "ANSWER_IDLE_TIMEOUT": _integer,
    "STANDIN": _boolean,
}


def _configure(app: Flask, test_config: Mapping[str, Any] | None, environ: Mapping[str, str]) -> None:
    app.config.from_mapping(DEFAULTS)
    app.config["DATABASE"] = os.path.join(app.instance_path, "catalog.sqlite3")
    given = dict(test_config or {})
    for key, read in ENVIRONMENT.items():
        if key not in given and key in environ:
            app.config[key] = read(key, environ[key])
    app.config.from_mapping(given)
    provider = app.config["PROVIDER"]
    if provider not in apis.APIS:
        raise ValueError(f"PROVIDER must be one of {', '.join(apis.APIS)}, got {provider!r}")
    if not app.config["ANSWER_AS"]:
        app.config["ANSWER_AS"] = apis.APIS[provider].answer_as
    if app.config["ANSWER_AS"] not in ("schema", "tool"):
        raise ValueError(f"ANSWER_AS must be schema or tool, got {app.config['ANSWER_AS']!r}")
    if not app.config.get("SECRET_KEY"):
        # Sessions then last as long as the process, which is all a demo needs.
        app.config["SECRET_KEY"] = secrets.token_urlsafe(32)


def _security_headers(app: Flask) -> Callable[[Response], Response]:
    gateway = urlsplit(app.config["GATEWAY_URL"])
    connect = f"'self' {gateway.scheme}://{gateway.netloc}" if gateway.netloc else "'self'"
    policy = (
        f"default-src 'self'; connect-src {connect}; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    )

    def add(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return add


def create_app(
    test_config: Mapping[str, Any] | None = None,
    *,
    instance_path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Flask:
    """Build the demo app; the catalog is generated in the instance folder on first run.

    ``environ`` defaults to ``os.environ``; ``instance_path`` to ``demo/instance``.
    """
    # demo/instance/ (gitignored), not Flask's default of instance/ beside the package.
    default_instance = str(Path(__file__).resolve().parent / "instance")
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path or default_instance)
    _configure(app, test_config, os.environ if environ is None else environ)

    catalog.ensure_catalog(app.config["DATABASE"], app.config["CATALOG_SEED"], app.config["CATALOG_SIZE"])
    with catalog.reading(app.config["DATABASE"]) as conn:
        schema = FilterSchema.from_catalog(conn)

    signer = None
    if app.config["SIGNGATE_SECRET"]:
        signer = Signer(
            app.config["SIGNGATE_KEY_ID"],
            app.config["SIGNGATE_SECRET"],
            app.config["GATEWAY_URL"],
            expires_in=app.config["SIGN_EXPIRES"],
        )
    install(app, schema, signer, RateLimiter(app.config["SIGN_RATE_LIMIT"]))

    app.after_request(_security_headers(app))
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    return app
