"""Every error a request can meet, answered: one table from exception to refusal, and the answer.

The gateway's own refusals are :class:`~signgate.errors.Refusal` subclasses already; errors from
below (the upstream, the store) are mapped by :func:`refusal_for`, the way httpx maps httpcore's
exceptions in one table. :func:`answer` turns a refusal into the JSON answer a browser can read:
``{"error": {"code", "message", "request_id", ...details}}`` with ``x-signgate-error``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..errors import (
    ForbiddenAddress,
    Refusal,
    StoreError,
    StoreUnavailable,
    UpstreamError,
    UpstreamNotAllowed,
    UpstreamTimedOut,
    UpstreamTimeout,
    UpstreamUnreachable,
)

#: How to reach a local model, for refusals of a private address.
PRIVATE_HINT = (
    "to reach loopback or private addresses (a local model), start the gateway with --allow-private-upstreams"
)


def _forbidden(exc: Exception, host: str) -> Refusal:
    return UpstreamNotAllowed(f"the upstream resolves to a non-public address; {PRIVATE_HINT}")


def _timeout(exc: Exception, host: str) -> Refusal:
    return UpstreamTimedOut(f"the upstream did not answer within its timeout ({host})")


def _unreachable(exc: Exception, host: str) -> Refusal:
    return UpstreamUnreachable(f"could not reach the upstream ({host})")


def _store(exc: Exception, host: str) -> Refusal:
    return StoreUnavailable("the gateway's store is unavailable; retry shortly", retry_after=1)


#: Most specific first: the first class an exception is an instance of decides.
_TABLE: tuple[tuple[type[Exception], Callable[[Exception, str], Refusal]], ...] = (
    (ForbiddenAddress, _forbidden),
    (UpstreamTimeout, _timeout),
    (UpstreamError, _unreachable),
    (StoreError, _store),
)


def refusal_for(exc: Exception, host: str = "") -> Refusal:
    """The refusal that answers ``exc``: itself if it is one, else from the table. ``host`` names
    the upstream in messages (never its path or query, which may hold what a client sent)."""
    if isinstance(exc, Refusal):
        return exc
    for kind, make in _TABLE:
        if isinstance(exc, kind):
            return make(exc, host)
    raise TypeError(f"no refusal answers {type(exc).__name__}") from exc


def answer(refusal: Refusal, request_id: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers (beyond the content type, length and CORS) and the JSON body for ``refusal``."""
    error = {"code": refusal.code, "message": refusal.message, "request_id": request_id, **refusal.details}
    body = json.dumps({"error": error}).encode() + b"\n"
    headers = [(b"x-signgate-error", refusal.code.encode())]
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    if refusal.close:  # what follows on this connection is not HTTP/1.1 the gateway can read
        headers.append((b"connection", b"close"))
    return headers, body
