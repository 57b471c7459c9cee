"""Picking the provider that answers a method and a path."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote

from . import anthropic, chat, gemini, responses
from .base import Provider, ProviderError, Query, Route

#: What a decoded path may not hold: a dot segment, a backslash, a control character.
_AMBIGUOUS = re.compile(r"(^|/)\.{1,2}(/|$)|[\\\x00-\x1f\x7f]")
#: Every provider, in the order paths are tried.
PROVIDERS: tuple[Provider, ...] = (chat, responses, anthropic, gemini)
#: Whose error shape a path no provider claims is answered in: OpenAI's, the most widely spoken.
FALLBACK: Provider = chat


class RouteError(ProviderError):
    """No route for this method and path: 404 (or 405, or 400 for a malformed Gemini stream
    URL). ``provider`` is the provider whose error shape to answer in."""

    def __init__(self, provider: Provider, error: ProviderError) -> None:
        super().__init__(error.message, status=error.status, param=error.param, code=error.code)
        self.provider = provider


def find(method: str, path: str, query: Query | None = None) -> tuple[Provider, Route]:
    """The provider and route for ``method`` and ``path``; :class:`RouteError` if none.

    ``path`` is the decoded path without the query; a trailing ``/`` is ignored.
    """
    path = path.rstrip("/") or "/"
    for provider in PROVIDERS:
        try:
            route = provider.match(method, path, query or {})
        except ProviderError as exc:
            raise RouteError(provider, exc) from None
        if route is None:
            continue
        if method not in route.methods:
            allowed = ", ".join(route.methods)
            message = f"{method} is not allowed on {path}; use {allowed}."
            raise RouteError(provider, ProviderError(message, status=405, code="method_not_allowed"))
        return provider, route
    raise RouteError(FALLBACK, ProviderError(f"Unknown request URL: {method} {path}.", status=404, code="unknown_url"))


def by_name(name: str) -> Provider:
    """The provider called ``name`` (``chat``, ``responses``, ``anthropic``, ``gemini``)."""
    for provider in PROVIDERS:
        if provider.name == name:
            return provider
    names = ", ".join(p.name for p in PROVIDERS)
    raise ValueError(f"No provider is called {name!r}; use one of {names}.")


def find_upstream(method: str, target: str) -> tuple[Provider, Route] | None:
    """The provider and route of a request the gateway forwards: ``target`` is the upstream
    URL's path with its query, as it will be sent. Unlike :func:`find` (a server's own routes),
    the path may start with any base URL (``/openai/deployments/NAME/chat/completions``,
    Vertex AI's ``/v1/projects/.../models/M:generateContent``). The path is matched decoded, as
    the upstream reads it (``gemini%2D2.5-flash`` is ``gemini-2.5-flash``); one that is not
    UTF-8 once decoded, that holds a dot segment, a backslash or a control character once decoded
    (which upstreams resolve in different ways), or a method the route does not serve, matches no
    provider: None."""
    path, _, query = target.partition("?")
    try:
        path = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    if _AMBIGUOUS.search(path):
        return None
    path = path.rstrip("/") or "/"
    params = parse_qs(query, keep_blank_values=True)
    for provider in PROVIDERS:
        route = provider.upstream(path, params)
        if route is not None:
            return (provider, route) if method in route.methods else None
    return None
