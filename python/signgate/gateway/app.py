"""The gateway as a plain ASGI application: one request's path through named steps.

::

    head ─▶ local route? ─▶ parameters ─▶ preflight? ─▶ capacity ─▶ target ─▶ verify (unbound body)
                                                                                    │
    account ◀─ release ◀─ relay ◀─ admission ◀─ capacity ◀─ policy ◀─ extensions ◀─ verify ◀─ body

Each step is a small function or object of its own module (request, targets, body, admission,
accounting, relay; refusals and cors answer). Everything that needs no body is checked before the
body is read. :meth:`Gateway._prepare` returns a :class:`~.relay.Forward` holding only what the
relay and the accounting need, so a stream that lasts minutes holds nothing else. Every refusal is
JSON ``{"error": {"code", "message", "request_id"}}`` with ``x-signgate-error`` and CORS headers
(see :mod:`.refusals`). docs/architecture.md draws the same path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..errors import (
    AtCapacity,
    ExpiryTooLong,
    InternalError,
    MalformedRequest,
    NotFound,
    Refusal,
    StoreUnavailable,
    UnknownKey,
    UpgradeNotSupported,
)
from ..verifier import SignedParams, VerifiedRequest, Verifier, parse_query
from .accounting import Accounts, read_json
from .admission import Admitter, Extensions, limit_scopes
from .asgi import Receive, Scope, Send
from .body import BufferBudget, ClientGone, read_body
from .config import GatewayConfig, KeyConfig
from .cors import Cors
from .exchange import Exchange
from .metrics import Metrics
from .refusals import answer
from .relay import Forward, Relay
from .request import Head, read_head
from .store import MemoryStore, RedisStore, Store
from .targets import Targets
from .upstream import Pool

access_logger = logging.getLogger("signgate.access")
logger = logging.getLogger("signgate.gateway")

_UPGRADE_MESSAGE = "this gateway speaks HTTP/1.1 only: WebSocket and other protocol upgrades are not supported"


class Gateway:
    """The ASGI application. Build one with :func:`create_app` or ``Gateway(config)``.

    ``store`` and ``upstream`` replace the store the configuration names and the upstream pool
    (tests, or an application that shares them); ``clock`` returns epoch seconds; access log lines
    go to ``access_log`` (one JSON line without its newline), or to the ``signgate.access`` logger.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        store: Store | None = None,
        upstream: Pool | None = None,
        clock: Callable[[], float] = time.time,
        access_log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        self._store = store
        self._pool = upstream
        self._clock = clock
        self._access_log = access_log
        self._verifier = Verifier(self._secrets, skew=config.skew, clock=clock)
        self._cors = Cors(config.cors_origins)
        self._targets = Targets(config)
        self._buffers = BufferBudget(config.max_buffered)
        self._admitter = Admitter(lambda: self.store, self.metrics, fail_open=config.store_fail_open, clock=clock)
        self._accounts = Accounts(config, self.metrics, self._admitter, clock)
        self._relay = Relay(self._upstream_pool, self.metrics, self._cors)
        # With several workers and the memory store, each worker would count a nonce on its own.
        self._nonces_unshared = config.workers > 1 and (config.store is None or config.store == "memory")

    def _secrets(self, key_id: str) -> tuple[str, ...] | None:
        key = self.config.keys.get(key_id)
        return key.secrets if key else None

    @property
    def store(self) -> Store:
        if self._store is None:
            url = self.config.store
            self._store = RedisStore(url) if url and url != "memory" else MemoryStore()
        return self._store

    def _upstream_pool(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(
                allow_private=self.config.allow_private_upstreams,
                connect_timeout=self.config.connect_timeout,
                read_timeout=self.config.read_timeout,
            )
        return self._pool

    # -- ASGI -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for key in self.config.keys.values():
                    if not key.allow_upstreams:
                        logger.warning(
                            "key %r has no allowed upstreams: it may reach any public http(s) upstream, as Signway "
                            "does; restrict it with --allow-upstream or allow_upstreams",
                            key.id,
                        )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close pooled upstream connections, the store and the usage webhook; flush the access log."""
        await self._accounts.aclose()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        flush = getattr(self._access_log, "flush", None)
        if flush is not None:  # a batching sink, such as signgate serve's AccessLogWriter
            flush()

    # -- one request ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = Exchange.start(scope["method"])
        try:
            forward = await self._prepare(scope, receive, send, ex)
            if forward is not None:
                await self._forward(scope, receive, send, ex, forward)
        except Refusal as refusal:
            await self._refuse(send, ex, refusal)
        except ClientGone:
            ex.status, ex.code = 499, "client_disconnected"
        except Exception:
            # A bug, not the client's fault: say so in JSON (if nothing was sent yet) and log it once.
            logger.exception("unexpected error while handling request %s", ex.request_id)
            if ex.status == 0:
                await self._refuse(send, ex, InternalError("the gateway failed on this request; it has been logged"))
            else:
                ex.code = "internal_error"
        finally:
            self._record(ex)

    async def _prepare(self, scope: Scope, receive: Receive, send: Send, ex: Exchange) -> Forward | None:
        """Every step before the relay. Returns what the relay needs, or None when the request has
        been answered here (a local route or a CORS preflight); raises a Refusal."""
        head = read_head(scope)
        ex.origin = head.origin
        head.check(self.config.max_header_bytes)
        if "X-Sw-" not in head.query:
            await self._local_route(head, send, ex)
            return None
        params = parse_query(head.query)
        ex.key = key = self.config.keys.get(params.key_id)
        if head.is_preflight:
            await self._preflight(head, key, send, ex)
            return None
        if key is None:
            raise UnknownKey("the key id in X-Sw-Credential is not known to this gateway")
        self._check_capacity()
        self._check_lifetime(params, key)
        head.check_signed_headers_once(params)
        target = self._targets.check(key, params.proxy)
        ex.upstream_host = target.host
        # Whatever needs no body is checked before any body is read: a client without a valid URL
        # for this key and upstream never makes the gateway hold its bytes.
        verified = None if params.body_bound else self._verify(params, head, None)
        body = await read_body(
            receive,
            head,
            params.body_bound,
            self._buffers,
            max_body=self.config.max_body,
            timeout=self.config.client_timeout,
        )
        ex.bytes_in = len(body.data)
        try:
            if verified is None:
                verified = self._verify(params, head, body.data)
            ext = Extensions.from_verified(verified)
            if ext.nonce is not None and self._nonces_unshared:
                raise StoreUnavailable(
                    "single-use URLs need one store shared by every worker; start the gateway with "
                    "--store redis://... (or one worker)"
                )
            wants_usage = key.id in self._accounts.usage_keys
            controlled = ext.policy is not None or wants_usage
            tap = (
                read_json(body, head.headers, ext, wants_usage, head.method, target.path)
                if body.data or controlled
                else None
            )
        except BaseException:
            body.release()
            raise
        return Forward(key, target, body, verified.bound_headers, ext, limit_scopes(key, ext), tap)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, ex: Exchange, fw: Forward) -> None:
        """Admit, relay, release, account."""
        # The stream cap holds from here, with nothing awaited between the check and the count:
        # requests that all passed the early check while their bodies arrived would otherwise all
        # be relayed at once, however far past the cap.
        self._check_capacity()
        self.metrics.in_flight += 1
        try:
            admission = await self._admitter.admit(fw.ext.nonce, fw.scopes)
            try:
                await self._relay(scope, receive, send, ex, fw)
            finally:
                await self._admitter.release(admission)
                if fw.tap is not None and ex.forwarded:
                    await self._accounts.account(ex.request_id, ex.status, ex.code, fw.key, fw.ext, fw.scopes, fw.tap)
        finally:
            self.metrics.in_flight -= 1
            fw.body.release()

    def _check_capacity(self) -> None:
        if self.metrics.in_flight >= self.config.max_streams:
            raise AtCapacity("the gateway is at its stream limit; retry shortly")

    def _check_lifetime(self, params: SignedParams, key: KeyConfig) -> None:
        limit = key.max_expires or self.config.max_expires
        if params.expires > limit:
            raise ExpiryTooLong(f"X-Sw-Expires is {params.expires} s but this gateway accepts at most {limit} s")

    def _verify(self, params: SignedParams, head: Head, body: bytes | None) -> VerifiedRequest:
        return self._verifier.verify(params, head.method, head.headers, body, path=head.path)

    # -- answers the gateway gives itself -----------------------------------------------------------

    async def _local_route(self, head: Head, send: Send, ex: Exchange) -> None:
        if head.method in ("GET", "HEAD") and head.path == "/healthz":
            ex.status, ex.code = 200, "health"
            await self._send_body(send, ex, 200, b'{"status":"ok"}\n', b"application/json")
        elif head.method in ("GET", "HEAD") and head.path == "/metrics":
            ex.status, ex.code = 200, "metrics"
            body = self.metrics.render().encode()
            await self._send_body(send, ex, 200, body, b"text/plain; version=0.0.4; charset=utf-8")
        else:
            routes = "send a signed URL (X-Sw-* parameters), GET /healthz or GET /metrics"
            if head.path == "/":
                raise MalformedRequest("X-Sw-*", f"missing: this is a signgate gateway; {routes}")
            raise NotFound(f"this is a signgate gateway: {routes}")

    async def _preflight(self, head: Head, key: KeyConfig | None, send: Send, ex: Exchange) -> None:
        requested = head.headers.get("access-control-request-headers", "")
        headers = self._cors.preflight(ex.origin, key, head.headers["access-control-request-method"], requested)
        headers.append((b"x-request-id", ex.request_id.encode()))
        ex.status, ex.code = 204, "preflight"
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, send: Send, ex: Exchange, refusal: Refusal) -> None:
        ex.status, ex.code = refusal.status, refusal.code
        extra, body = answer(refusal, ex.request_id)
        await self._send_body(send, ex, refusal.status, body, b"application/json", extra)

    async def _send_body(
        self,
        send: Send,
        ex: Exchange,
        status: int,
        body: bytes,
        content_type: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-request-id", ex.request_id.encode()),
            *(extra or []),
            *self._cors.headers(ex.origin, ex.key),
        ]
        ex.bytes_out = len(body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if ex.method != "HEAD" else b""})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a WebSocket handshake (under a server that upgrades by itself; ``signgate serve``
        does not): as a JSON answer where the server can send one, else by closing."""
        ex = Exchange.start("GET")
        refusal = UpgradeNotSupported(_UPGRADE_MESSAGE)
        ex.status, ex.code = refusal.status, refusal.code
        try:
            await receive()  # websocket.connect
            if "websocket.http.response" in (scope.get("extensions") or {}):
                extra, body = answer(refusal, ex.request_id)
                headers = [(b"content-type", b"application/json"), (b"x-request-id", ex.request_id.encode()), *extra]
                await send({"type": "websocket.http.response.start", "status": refusal.status, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": refusal.code})
        finally:
            self._record(ex)

    def _record(self, ex: Exchange) -> None:
        self.metrics.requests[(ex.code, ex.status)] += 1
        self.metrics.bytes_in += ex.bytes_in
        self.metrics.bytes_out += ex.bytes_out
        sink = self._access_log
        if sink is None:
            if not access_logger.isEnabledFor(logging.INFO):
                return
            sink = access_logger.info
        sink(ex.log_line())


def create_app(
    config: GatewayConfig,
    *,
    store: Store | None = None,
    upstream: Pool | None = None,
    clock: Callable[[], float] = time.time,
    access_log: Callable[[str], None] | None = None,
) -> Gateway:
    """The ASGI application factory: run it under any ASGI server, or mount it in your own app.

    Access log lines go to the ``signgate.access`` logger at INFO, or to ``access_log`` when given:
    a callable taking one JSON line without its newline; its ``flush()``, if it has one, is called
    at shutdown (see ``signgate.gateway.accesslog.AccessLogWriter``).
    """
    return Gateway(config, store=store, upstream=upstream, clock=clock, access_log=access_log)
