"""The pages: ``/cars`` (the search that works without JavaScript) and the assets it needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue

from . import security
from .filters import Ignored
from .search import PER_PAGE, search
from .state import filter_schema, get_db, signer

bp = Blueprint("views", __name__)

_MODULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Chip:
    param: str
    value: str
    label: str
    remove_url: str


def _cars_url(pairs: list[tuple[str, str]]) -> str:
    base = url_for("views.cars")
    return f"{base}?{urlencode(pairs)}" if pairs else base


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(_cars_url(list(request.args.items(multi=True))), code=302)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/cars")
def cars() -> str:
    schema = filter_schema()
    query = schema.parse(request.args.items(multi=True))
    results = search(get_db(), query.filters, query.page)
    ignored = list(query.ignored)
    if results.requested_page is not None:
        ignored.append(
            Ignored(
                "page",
                str(results.requested_page),
                "out_of_range",
                f"there are only {results.pages} pages; showing the last one",
            )
        )

    chips = []
    for name, value in query.filters.items():
        param = schema.params[name]
        for item in value if isinstance(value, list) else [value]:
            chips.append(Chip(name, str(item), param.chip(item), _cars_url(schema.without(query.filters, name, item))))

    pairs = schema.to_pairs(query.filters)

    def page_url(number: int) -> str:
        return _cars_url(pairs + ([("page", str(number))] if number > 1 else []))

    labels: dict[str, Any] = {
        p.name: {"label": p.label, "kind": p.kind, "unit": p.unit, "options": {o: p.option_label(o) for o in p.options}}
        for p in schema.params.values()
    }
    first = (results.page - 1) * PER_PAGE + 1
    return render_template(
        "cars.html",
        schema=schema,
        params=schema.params,
        filters=query.filters,
        results=results,
        first=first,
        last=first + len(results.listings) - 1,
        chips=chips,
        clear_url=url_for("views.cars"),
        ignored=ignored,
        page_url=page_url,
        csrf_token=security.csrf_token(),
        ai_enabled=signer() is not None,
        standin=current_app.config["STANDIN"],
        model=current_app.config["MODEL"],
        query_max_chars=current_app.config["QUERY_MAX_CHARS"],
        answer_idle_ms=int(current_app.config["ANSWER_IDLE_TIMEOUT"]) * 1000,
        labels=labels,
    )


def _js_dir() -> Path:
    return Path(current_app.config["SIGNGATE_JS"]).parent


@bp.get("/assets/signgate.js")
def signgate_js() -> Response:
    """Exactly the browser helper the package ships (``js/index.js``), not a copy."""
    path = Path(current_app.config["SIGNGATE_JS"])
    if not path.is_file():
        abort(404, description=f"the signgate browser helper is missing: {path.name} was not found")
    return send_file(path, mimetype="application/javascript", max_age=0)


@bp.get("/assets/<name>.js")
def signgate_module(name: str) -> Response:
    """Sibling modules that ``js/index.js`` may import relatively (``./x.js``)."""
    if not _MODULE_NAME.fullmatch(name):
        abort(404)
    path = _js_dir() / f"{name}.js"
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="application/javascript", max_age=0)
