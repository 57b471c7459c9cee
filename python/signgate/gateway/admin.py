"""The admin endpoint: revoke and reload over HTTP, for operators and their tools.

``signgate serve --admin-port PORT --admin-token-env VAR`` serves it on its own listening socket
(``--admin-host``, loopback by default), never on the public port: :class:`Router` hands it only
the connections accepted on that socket. Every request must carry ``Authorization: Bearer
<token>``, compared in constant time; without it, every path answers ``401 unauthorized``, so
the routes are not even listed to a caller without the token.

================  ================================================================================
route             does
================  ================================================================================
POST /revoke      ``{"user": "u-42"}`` (or ``key``, ``tenant``, ``nonce``: exactly one) revokes every
                  URL of that subject signed until now; answers the revocation and how many of this
                  process's live streams it ended
GET /revocations  the revocations in force
POST /reload      reads the configuration file again (as ``SIGHUP`` does); a broken one is refused
                  with ``400 config_rejected`` naming the error, and the running one stays
================  ================================================================================

Answers are JSON; errors have the gateway's shape ``{"error": {"code", "message", "request_id"}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .. import strict_json
from ..errors import InvalidJSON, MalformedRequest, NotFound, Refusal, RevocationError, Unauthorized
from ..revocation import KINDS, one_subject
from .app import Gateway
from .asgi import Receive, Scope, Send
from .body import BufferBudget, ClientGone, read_body
from .exchange import request_id as new_request_id
from .refusals import answer
from .request import read_head

logger = logging.getLogger("signgate.admin")

#: The largest admin request body: a revocation is a few hundred bytes.
MAX_BODY = 16 * 1024
MIN_TOKEN = 16

ROUTES = "POST /revoke, GET /revocations, POST /reload"

#: What a reload answers: a JSON-ready result, or raises ConfigRejected.
Reload = Callable[[], Awaitable[dict[str, Any]]]


def check_token(token: str | None, where: str) -> str:
    """The admin token, if it is good enough to guard revocations and reloads; raises ValueError
    naming ``where`` it came from (never showing it)."""
    if not token or len(token) < MIN_TOKEN:
        raise ValueError(
            f"{where}: the admin token must be at least {MIN_TOKEN} characters (e.g. from openssl rand -hex 32)"
        )
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError(f"{where}: the admin token must be visible ASCII without spaces")
    return token


class Admin:
    """The admin application for one gateway. ``reload`` reloads its configuration (None: there
    is no file to reload)."""

    def __init__(self, gateway: Gateway, token: str, reload: Reload | None = None) -> None:
        self._gateway = gateway
        # Compared as digests: equal lengths, so compare_digest's time says nothing of the token.
        self._digest = hashlib.sha256(check_token(token, "admin token").encode()).digest()
        self._reload = reload
        self._buffers = BufferBudget(4 * MAX_BODY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = new_request_id()
        try:
            status, result = await self._handle(scope, receive)
        except Refusal as refusal:
            extra, body = answer(refusal, request_id)
            await _send(send, refusal.status, body, extra)
            if refusal.status != 401:
                logger.info("admin request refused: %s %s", refusal.code, refusal.message)
            return
        except ClientGone:
            return
        await _send(send, status, json.dumps({**result, "request_id": request_id}).encode() + b"\n")

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        head = read_head(scope)
        self._authorize(head.headers.get("authorization"))
        route = (head.method, head.path)
        if route == ("POST", "/revoke"):
            kind, subject = self._subject(await self._json(receive, head))
            revocation, ended = await self._gateway.revoke(kind, subject)
            return 200, {"revoked": revocation.to_dict(), "streams_ended": ended}
        if route == ("GET", "/revocations"):
            revocations = await self._gateway.revocations()
            return 200, {"revocations": [r.to_dict() for r in revocations]}
        if route == ("POST", "/reload"):
            if self._reload is None:
                raise NotFound("this gateway was not started from a configuration file: there is nothing to reload")
            return 200, await self._reload()
        raise NotFound(f"admin routes: {ROUTES}")

    def _authorize(self, header: str | None) -> None:
        scheme, _, token = (header or "").partition(" ")
        given = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        if not (hmac.compare_digest(given, self._digest) and scheme.lower() == "bearer"):
            raise Unauthorized("send the admin token as 'Authorization: Bearer <token>'")

    async def _json(self, receive: Receive, head: Any) -> Any:
        body = await read_body(receive, head, False, self._buffers, max_body=MAX_BODY, timeout=10)
        try:
            return strict_json.loads(body.data)
        finally:
            body.release()

    @staticmethod
    def _subject(data: Any) -> tuple[str, str]:
        if not isinstance(data, dict) or set(data) - set(KINDS):
            raise InvalidJSON(f'send a JSON object naming one of {", ".join(KINDS)}, e.g. {{"user": "u-42"}}')
        try:
            return one_subject({kind: data.get(kind) for kind in KINDS})
        except RevocationError as exc:
            raise MalformedRequest(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from None


async def _send(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Router:
    """The ASGI application ``signgate serve`` runs: connections accepted on the admin socket go
    to the admin application, every other one (and the lifespan) to the gateway. The local port a
    connection was accepted on is the kernel's, not anything a client sends."""

    __slots__ = ("_admin", "_admin_port", "_gateway")

    def __init__(self, gateway: Gateway, admin: Admin, admin_port: int) -> None:
        self._gateway = gateway
        self._admin = admin
        self._admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server is not None and server[1] == self._admin_port:
            await self._admin(scope, receive, send)
        else:
            await self._gateway(scope, receive, send)
