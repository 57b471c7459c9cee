"""``POST /api/search/sign``: the only thing the app does for the AI search is sign.

It checks the session, the CSRF token, the rate limit and the question, then returns a signed
request in the shape of the configured API (``PROVIDER``: chat completions by default; see
:mod:`demo.apis`) as ``Signer.sign(...).to_dict()``, for the browser to send to the gateway.
The body and its headers are bound by the signature, so the browser cannot change the prompt,
the schema or the model; the app never sees an API key and never waits on the model.
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, current_app, jsonify, request, session

from . import apis, security
from .apis import SearchRequest
from .filters import FilterSchema
from .state import filter_schema, rate_limiter, signer

bp = Blueprint("api", __name__, url_prefix="/api")

_CSRF_MESSAGES = {
    "no_session": "there is no session; reload the page to start one",
    "csrf_missing": f"the {security.HEADER} header is missing; send the token embedded in the page",
    "csrf_invalid": f"the {security.HEADER} token does not belong to this session; reload the page",
}


def error(status: int, code: str, message: str, **headers: str) -> Response:
    """A JSON error in the gateway's shape, ``{"error": {"code", "message"}}``."""
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def search_request(schema: FilterSchema, query: str) -> SearchRequest:
    """The request the model gets for ``query``, in the configured API's shape, and its policy."""
    config = current_app.config
    return apis.search_request(
        config["PROVIDER"],
        system=schema.system_prompt(),
        query=query,
        schema=schema.json_schema(),
        model=config["MODEL"],
        max_tokens=int(config["MAX_TOKENS"]),
        max_chars=int(config["QUERY_MAX_CHARS"]),
        answer_as=config["ANSWER_AS"],
    )


@bp.errorhandler(413)
def too_large(_exc: Exception) -> Response:
    return error(413, "too_large", 'the request body is too large; send {"query": ...} only')


@bp.post("/search/sign")
def sign() -> Response:
    problem = security.check_csrf(request.headers.get(security.HEADER))
    if problem is not None:
        return error(403, problem, _CSRF_MESSAGES[problem])

    wait = rate_limiter().hit(session[security.SESSION_KEY])
    if wait is not None:
        seconds = security.retry_after(wait)
        limit = rate_limiter().limit
        return error(
            429,
            "rate_limited",
            f"at most {limit} AI searches a minute; try again in {seconds} s or use the filters",
            **{"Retry-After": seconds},
        )

    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict) or "query" not in data:
        return error(400, "bad_request", 'send a JSON object like {"query": "a red SUV under $20,000"}')
    query = data["query"]
    if not isinstance(query, str):
        return error(400, "bad_query", f"query must be a string, got {type(query).__name__}")
    query = query.strip()
    if not query:
        return error(400, "empty_query", "query is empty; describe the car you want")
    cap = int(current_app.config["QUERY_MAX_CHARS"])
    if len(query) > cap:
        return error(400, "query_too_long", f"query is {len(query)} characters; the limit is {cap}")

    active = signer()
    if active is None:
        return error(503, "not_configured", "the AI search is not configured (SIGNGATE_SECRET is unset)")
    # Beyond binding the exact body: the URL works once, it is attributed to this session's
    # (opaque) user, so the gateway's per-user limits apply, and a policy fixes everything that
    # costs money, so even a backend that stopped binding the body could not be abused.
    search = search_request(filter_schema(), query)
    user = hashlib.sha256(session[security.SESSION_KEY].encode()).hexdigest()[:24]
    signed = active.sign(
        "POST",
        current_app.config["UPSTREAM_URL"],
        json=search.body,
        single_use=True,
        user=user,
        policy=search.policy,
    )
    response = jsonify(signed.to_dict())
    response.headers["Cache-Control"] = "no-store"
    return response
