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

What the steps build from the configuration (the verifier's keys, CORS, the allowlists) is one
:class:`Settings`, which :meth:`Gateway.reconfigure` replaces whole: a request reads it once, at
its start, so a reload never changes a request in flight. :meth:`Gateway.revoke` revokes in the
gateway's store and, with ``revoke_live``, ends the live streams the revocation covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import (
    AtCapacity,
    ExpiryTooLong,
    InternalError,
    MalformedRequest,
    NotFound,
    Refusal,
    StoreError,
    StoreUnavailable,
    UnknownKey,
    UpgradeNotSupported,
)
from ..revocation import Attribution, Revocation, check_subject
from ..verifier import SignedParams, VerifiedRequest, Verifier, parse_query
from .accounting import Accounts, read_json, usage_keys
from .admission import Admitter, Extensions, limit_scopes
from .asgi import Receive, Scope, Send
from .body import BufferBudget, ClientGone, read_body
from .config import GatewayConfig, KeyConfig
from .cors import Cors
from .exchange import Exchange
from .live import LiveStreams
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

#: What a reload cannot change: these shape the store, the upstream pool, the processes and the
#: admin port, all made once. A reload that changes one keeps the running value and says so.
RESTART_ONLY = (
    "store",
    "store_fail_open",
    "workers",
    "usage_hook",
    "usage_webhook",
    "allow_private_upstreams",
    "connect_timeout",
    "read_timeout",
    "shutdown_timeout",
    "admin_host",
    "admin_port",
    "admin_token",
    "revoke_live",
)


class Settings:
    """What the request path builds from one configuration: a request takes the gateway's at its
    start and keeps it, so a reload changes nothing in flight."""

    __slots__ = ("config", "cors", "lifetime", "nonces_unshared", "targets", "usage_keys", "verifier")

    def __init__(self, config: GatewayConfig, clock: Callable[[], float]) -> None:
        keys = config.keys

        def secrets(key_id: str) -> tuple[str, ...] | None:
            key = keys.get(key_id)
            return key.secrets if key else None

        self.config = config
        self.verifier = Verifier(secrets, skew=config.skew, clock=clock)
        self.cors = Cors(config.cors_origins)
        self.targets = Targets(config)
        self.usage_keys = usage_keys(config)
        self.lifetime = config.longest_lifetime
        # With several workers and the memory store, each worker would count a nonce on its own.
        self.nonces_unshared = config.workers > 1 and (config.store is None or config.store == "memory")


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
        self.metrics = Metrics()
        self._store = store
        self._pool = upstream
        self._clock = clock
        self._access_log = access_log
        self._settings = Settings(config, clock)
        self._buffers = BufferBudget(config.max_buffered)
        self._admitter = Admitter(lambda: self.store, self.metrics, fail_open=config.store_fail_open, clock=clock)
        self._accounts = Accounts(config, self.metrics, self._admitter, clock)
        self._live = LiveStreams(self.metrics) if config.revoke_live else None
        self._relay = Relay(self._upstream_pool, self.metrics, self._live)
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def config(self) -> GatewayConfig:
        """The configuration new requests are served with."""
        return self._settings.config

    def reconfigure(self, config: GatewayConfig) -> list[str]:
        """Serve ``config`` from the next request on; requests in flight finish on the one they
        started with. The settings of :data:`RESTART_ONLY` keep their running values: returns the
        names of those ``config`` would have changed."""
        old = self._settings.config
        kept = [name for name in RESTART_ONLY if getattr(config, name) != getattr(old, name)]
        if kept:
            config = replace(config, **{name: getattr(old, name) for name in kept})
        settings = Settings(config, self._clock)
        self._buffers.limit = config.max_buffered
        grew = settings.lifetime > self._settings.lifetime
        self._settings = settings
        self._warn_open_keys()
        if grew and self._store is not None:
            self._spawn(self._announce_lifetime())
        return kept

    async def revoke(self, kind: str, subject: str) -> tuple[Revocation, int]:
        """Revoke, in this gateway's store, every URL of ``subject`` (a ``kind`` of key, tenant,
        user or nonce, exactly as signed) dated until now; with ``revoke_live``, end this
        process's streams it covers at once (other processes sharing the store end theirs within
        a second). Returns the revocation and the number of streams ended here.

        Raises RevocationError for a subject no URL could carry, and StoreUnavailable when the
        store fails, or is this worker's memory while other workers serve too."""
        subject = check_subject(kind, subject)
        store = self.store
        if store.local_revocations is not None and self.config.workers > 1:
            raise StoreUnavailable(
                "with several workers, a revocation needs one store shared by every worker: start the gateway with "
                "--store redis://... (or one worker)"
            )
        now = self._clock()
        try:
            revocation = await store.revoke(kind, subject, int(now), self._settings.lifetime, now)
        except StoreError:
            self.metrics.store_errors += 1
            raise StoreUnavailable("the gateway's store is unavailable; retry shortly", retry_after=1) from None
        ended = 0
        if self._live is not None:
            if store.local_revocations is None:  # a stream registering after this sees it too
                self._live.recent.add(kind, subject, revocation.at, revocation.expires_at, now)
            ended = self._live.end([revocation])
        logger.info("revoked the %s %r: URLs dated until %d are refused; %d live stream(s) ended",
                    kind, subject, revocation.at, ended)  # fmt: skip
        return revocation, ended

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
                self._warn_open_keys()
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _warn_open_keys(self) -> None:
        for key in self.config.keys.values():
            if not key.allow_upstreams:
                logger.warning(
                    "key %r has no allowed upstreams: it may reach any public http(s) upstream, as Signway "
                    "does; restrict it with --allow-upstream or allow_upstreams",
                    key.id,
                )

    async def revocations(self) -> list[Revocation]:
        """The revocations in force in this gateway's store."""
        try:
            return await self.store.revocations(self._clock(), self._settings.lifetime)
        except StoreError:
            self.metrics.store_errors += 1
            raise StoreUnavailable("the gateway's store is unavailable; retry shortly", retry_after=1) from None

    async def start(self) -> None:
        """What a serving gateway does once, at start-up (the ASGI lifespan calls it): tell
        revokers sharing the store how long its URLs live, and, with ``revoke_live`` and a shared
        store, watch it for revocations made elsewhere."""
        if self.store.local_revocations is None:
            await self._announce_lifetime()
            if self._live is not None:
                live = self._live
                self._spawn(live.watch(lambda: self.store, lambda: self._settings.lifetime, self._clock))

    async def _announce_lifetime(self) -> None:
        try:
            await self.store.announce_lifetime(self._settings.lifetime)
        except StoreError as exc:
            logger.warning(
                "could not tell the store how long URLs live (%s): revocations made with signgate revoke may "
                "expire before URLs this gateway accepts",
                exc,
            )

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Close pooled upstream connections, the store and the usage webhook; flush the access log."""
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
        settings = self._settings  # this request's, whatever a reload does meanwhile
        config = settings.config
        head = read_head(scope)
        ex.origin = head.origin
        head.check(config.max_header_bytes)
        if "X-Sw-" not in head.query:
            await self._local_route(head, send, ex)
            return None
        params = parse_query(head.query)
        ex.key = key = config.keys.get(params.key_id)
        if head.is_preflight:
            await self._preflight(head, key, send, ex)
            return None
        if key is None:
            raise UnknownKey("the key id in X-Sw-Credential is not known to this gateway")
        self._check_capacity()
        self._check_lifetime(params, key, config)
        head.check_signed_headers_once(params)
        target = settings.targets.check(key, params.proxy)
        ex.upstream_host = target.host
        verifier = settings.verifier
        # Whatever needs no body is checked before any body is read: a client without a valid URL
        # for this key and upstream never makes the gateway hold its bytes.
        verified = None if params.body_bound else self._verify(verifier, params, head, None)
        body = await read_body(
            receive,
            head,
            params.body_bound,
            self._buffers,
            max_body=config.max_body,
            timeout=config.client_timeout,
        )
        ex.bytes_in = len(body.data)
        try:
            if verified is None:
                verified = self._verify(verifier, params, head, body.data)
            ext = Extensions.from_verified(verified)
            if ext.nonce is not None and settings.nonces_unshared:
                raise StoreUnavailable(
                    "single-use URLs need one store shared by every worker; start the gateway with "
                    "--store redis://... (or one worker)"
                )
            wants_usage = key.id in settings.usage_keys
            controlled = ext.policy is not None or wants_usage
            tap = (
                read_json(body, head.headers, ext, wants_usage, head.method, target.path)
                if body.data or controlled
                else None
            )
        except BaseException:
            body.release()
            raise
        attribution = Attribution(key.id, ext.tenant, ext.user, ext.nonce_value, verified.signed_at)
        scopes = limit_scopes(key, ext)
        return Forward(key, target, body, verified.bound_headers, ext, scopes, tap, attribution, settings.cors)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, ex: Exchange, fw: Forward) -> None:
        """Admit, relay, release, account."""
        # The stream cap holds from here, with nothing awaited between the check and the count:
        # requests that all passed the early check while their bodies arrived would otherwise all
        # be relayed at once, however far past the cap.
        self._check_capacity()
        self.metrics.in_flight += 1
        try:
            admission = await self._admitter.admit(fw.ext.nonce, fw.scopes, fw.attribution)
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

    @staticmethod
    def _check_lifetime(params: SignedParams, key: KeyConfig, config: GatewayConfig) -> None:
        limit = key.max_expires or config.max_expires
        if params.expires > limit:
            raise ExpiryTooLong(f"X-Sw-Expires is {params.expires} s but this gateway accepts at most {limit} s")

    @staticmethod
    def _verify(verifier: Verifier, params: SignedParams, head: Head, body: bytes | None) -> VerifiedRequest:
        return verifier.verify(params, head.method, head.headers, body, path=head.path)

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
        cors = self._settings.cors
        headers = cors.preflight(ex.origin, key, head.headers["access-control-request-method"], requested)
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
            *self._settings.cors.headers(ex.origin, ex.key),
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
