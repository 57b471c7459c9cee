"""``POST /api/search/sign``: the only thing the app does for the AI search is sign.

It checks the session, the CSRF token, the rate limit and the question, then returns a signed
chat-completions request (``Signer.sign(...).to_dict()``) for the browser to send to the
gateway. The body and its headers are bound by the signature, so the browser cannot change
the prompt, the schema or the model; the app never sees an API key and never waits on the model.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, session

from signgate import Policy

from . import security
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


def chat_request(schema: FilterSchema, query: str, model: str) -> dict[str, Any]:
    """The chat-completions body the model gets: the options as a system prompt, the
    question as the user message, and the answer's JSON schema in strict mode, streamed."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": schema.system_prompt()},
            {"role": "user", "content": query},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "car_filters", "strict": True, "schema": schema.json_schema()},
        },
        "stream": True,
    }


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
    body = chat_request(filter_schema(), query, current_app.config["MODEL"])
    # Beyond binding the exact body: the URL works once, it is attributed to this session's
    # (opaque) user, so the gateway's per-user limits apply, and a policy fixes everything that
    # costs money, so even a backend that stopped binding the body could not be abused.
    policy = Policy(
        models=[body["model"]],
        max_tokens=int(current_app.config["MAX_TOKENS"]),
        system_prompt=body["messages"][0]["content"],
        response_format=body["response_format"],
        require_stream=True,
        max_user_chars=cap,
        # Only the fields this request has (and max_tokens, under its ceiling): any
        # other field, such as service_tier or n, is refused instead of passing unchecked.
        fields=[*body, "max_tokens"],
    )
    user = hashlib.sha256(session[security.SESSION_KEY].encode()).hexdigest()[:24]
    signed = active.sign(
        "POST", current_app.config["UPSTREAM_URL"], json=body, single_use=True, user=user, policy=policy
    )
    response = jsonify(signed.to_dict())
    response.headers["Cache-Control"] = "no-store"
    return response
