"""The gateway as a plain ASGI application.

A request flows: parse the ``X-Sw-*`` parameters -> CORS preflight? -> capacity -> read the body
(bounded) -> verify -> allowlist and address checks -> forward -> relay the answer chunk by chunk.
Every refusal is JSON ``{"error": {"code", "message"}}`` with an ``x-signgate-error`` header and
CORS headers, so a browser can read it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import aiohttp

from .. import extensions, scheme, strict_json
from ..errors import (
    Expired,
    ExpiryTooLong,
    InvalidJSON,
    MalformedRequest,
    NotYetValid,
    UnknownKey,
    VerificationError,
)
from ..extensions import PolicyRules
from ..verifier import SignedParams, VerifiedRequest, Verifier, parse_query
from .client import UpstreamError, UpstreamPool, UpstreamTimeout
from .config import GatewayConfig, KeyConfig, split_url
from .metrics import Metrics
from .policy import PolicyViolation, check_fields, enforce
from .protocol import CLIENT_LOST
from .store import Admission, MemoryStore, Nonce, RedisStore, Store, StoreUnavailable
from .store import Scope as LimitScope
from .upstream import ForbiddenAddress, check_literal
from .usage import UsageRecord, UsageTap

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

access_logger = logging.getLogger("signgate.access")
logger = logging.getLogger("signgate.gateway")

#: Header fields a request may have. A browser sends about twenty; thousands of tiny ones fit in
#: the byte limit and would each cost the gateway work.
MAX_HEADER_FIELDS = 100

# Hop-by-hop headers (RFC 9110 7.6.1) and what must never travel upstream from a browser.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_UPSTREAM = _HOP_BY_HOP | {
    "host",
    "cookie",
    "authorization",
    "content-length",
    "origin",
    "referer",
    "expect",
    "accept-encoding",
    "forwarded",
    "forwarded-for",
    "x-forwarded",
    "x-original-forwarded-for",
    "x-original-host",
    "front-end-https",
    "x-url-scheme",
    "via",
    # Where a request came from: only a proxy the operator runs may say, never the browser.
    "x-real-ip",
    "x-proxyuser-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-host",
    # Who the user is, as an authenticating proxy in front of an upstream tells it.
    "remote-user",
    "x-remote-user",
    "x-remote-email",
    "x-remote-groups",
    "x-webauth-user",
    # Another method or path than the signed one, for servers and frameworks that honour them.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-middleware-subrequest",  # Next.js skips its middleware (often the auth check) for it
}
# Whole families: signgate's own extensions, the browser's fetch metadata, every forwarding header,
# and Envoy's controls (original path, retries, timeouts), which it obeys from inside the mesh.
_NOT_UPSTREAM_PREFIXES = ("x-signgate-", "sec-", "x-forwarded-", "proxy-", "x-envoy-", "x-auth-request-")
# What an upstream's answer may not say to the browser: hop-by-hop and framing headers, whatever
# speaks for the gateway (its error codes, its request id, the date, CORS, caching), cookies,
# whatever changes the security of the gateway's origin for every later page (HSTS, Alt-Svc,
# Clear-Site-Data, reporting, isolation and permission policies, authentication prompts), and
# what the proxy or CDN in front of the gateway obeys (nginx's X-Accel-Redirect serves any of its
# internal locations; X-Accel-Expires, Surrogate-Control and CDN-Cache-Control make it cache).
_NOT_DOWNSTREAM = _HOP_BY_HOP | {
    "date",  # the server adds its own; two would break the field's single-value rule
    "server",
    "x-request-id",
    "x-content-type-options",  # the gateway sets its own
    "x-sendfile",
    "x-lighttpd-send-file",
    "surrogate-control",
    "surrogate-key",
    "cdn-cache-control",
    "cloudflare-cdn-cache-control",
    "edge-control",
    "set-cookie",
    "set-cookie2",
    "cache-control",
    "expires",
    "vary",
    "strict-transport-security",
    "alt-svc",
    "clear-site-data",
    "public-key-pins",
    "public-key-pins-report-only",
    "expect-ct",
    "nel",
    "report-to",
    "reporting-endpoints",
    "origin-agent-cluster",
    "permissions-policy",
    "feature-policy",
    "document-policy",
    "service-worker-allowed",
    "www-authenticate",
    "refresh",
    "link",
    "accept-ch",
    "critical-ch",
    "timing-allow-origin",
    "x-frame-options",
    "x-xss-protection",
    "x-dns-prefetch-control",
    "x-permitted-cross-domain-policies",
}
_NOT_DOWNSTREAM_PREFIXES = (
    b"x-signgate-",
    b"access-control-",
    b"content-security-policy",
    b"cross-origin-",
    b"sec-",
    b"x-accel-",
    b"x-litespeed-",
)
_NOT_DOWNSTREAM_BYTES = frozenset(name.encode() for name in _NOT_DOWNSTREAM)
_EXPOSE = b"x-signgate-error, x-request-id, retry-after, content-type"
# On every relayed answer: whatever type an upstream names (text/html, a script), the browser
# neither sniffs nor runs it as a page of the gateway's origin, where it could read other
# answers or register a service worker over every later request.
_RELAYED = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; sandbox"),
]
# In the path of an allowlisted upstream: encoded '/', '\\', '.', '%', ';' or NUL, ';' itself, and
# a '%' that starts no escape (IIS reads %u002e as '.', and %%32%65 becomes %2e on a second pass).
_ENCODED_PATH = re.compile(r"%(?:2[fFeE5]|5[cC]|3[bB]|00|(?![0-9A-Fa-f]{2}))|;")
# What uvicorn refuses to write (it raises mid-response): header names that are not tokens,
# values with control characters. llhttp's lenient corners may let some through from an upstream.
_BAD_NAME = re.compile(rb'[\x00-\x1f\x7f()<>@,;:\\\[\]={} \t"]')
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class Refusal(Exception):
    """A request the gateway answers itself, with a status and a stable code."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class _ClientGone(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Extensions:
    """signgate's bound extensions of one request (see signgate.extensions)."""

    nonce: Nonce | None = None
    user: str | None = None
    tenant: str | None = None
    policy: PolicyRules | None = None

    @classmethod
    def from_verified(cls, verified: VerifiedRequest) -> _Extensions:
        bound = verified.bound_headers
        for name in bound:
            if name.startswith(extensions.PREFIX):
                break
        else:
            return _NO_EXTENSIONS
        nonce = None
        if extensions.NONCE in bound:
            uses_text = bound.get(extensions.USES, "1")
            # isdigit() alone takes '³' (a Latin-1 header byte), which int() refuses.
            if not (uses_text.isascii() and uses_text.isdigit()) or not 1 <= int(uses_text) <= extensions.MAX_USES:
                raise MalformedRequest(extensions.USES, f"must be a whole number in 1..{extensions.MAX_USES}")
            value = bound[extensions.NONCE]
            if not 8 <= len(value) <= 64:
                raise MalformedRequest(extensions.NONCE, "must be 8 to 64 characters")
            nonce = Nonce(scope_id(verified.key_id, value), int(uses_text), verified.expires_at)
        policy = None
        if extensions.POLICY in bound:
            try:
                policy = PolicyRules.from_header(bound[extensions.POLICY])
            except ValueError as exc:
                raise MalformedRequest(extensions.POLICY, str(exc)) from None
        return cls(nonce, bound.get(extensions.USER), bound.get(extensions.TENANT), policy)


def scope_id(*parts: str) -> str:
    """Ids joined so that no two different tuples give the same string: each part is
    percent-encoded (``:`` and ``%`` included), then joined with ``:``."""
    return ":".join(quote(part, safe="") for part in parts)


_NO_EXTENSIONS = _Extensions()  # most requests: shared, as it is frozen


class _Deadline:
    """``asyncio.timeout`` for the body read, with its semantics and a third of its cost on uvloop.

    One ``call_later`` that cancels the task; on the way out a cancellation it caused becomes
    TimeoutError, while one from elsewhere (shutdown) still propagates, as in asyncio.timeout.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_task")

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self._handle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._handle.cancel()
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


@dataclass(slots=True)
class _Exchange:
    """What the access log records about one request. Never the query string or header values."""

    request_id: str
    method: str
    started: float
    key_id: str = "-"
    upstream_host: str = "-"
    status: int = 0
    code: str = "-"
    bytes_in: int = 0
    bytes_out: int = 0
    ttfb: float | None = None
    forwarded: bool = False  # the request may have reached the upstream: it is accounted for


class Gateway:
    """The ASGI application. Build one with :func:`create_app` or ``Gateway(config)``."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Callable[[], float] = time.time,
        access_log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        # Where access log lines go; None: the signgate.access logger, for embedding applications.
        self._access_log = access_log
        self.metrics = Metrics()
        self._clock = clock
        self._verifier = Verifier(self._secrets, skew=config.skew, clock=clock)
        self._pool: UpstreamPool | None = None
        # (key id, upstream URL) -> its checked target: a key's clients call the same few URLs.
        self._targets: dict[tuple[str, str], tuple[str, str, int, str]] = {}
        self._origins = set(config.cors_origins)
        self._wildcard = "*" in self._origins
        self._no_allowlist = [k.id for k in config.keys.values() if not k.allow_upstreams]
        self._store: Store | None = None
        self._webhook_queue: asyncio.Queue[UsageRecord] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._buffers = _BufferBudget(config.max_buffered)
        # Keys whose requests budgets or billing account for (and whose streams are asked for usage).
        sinks = config.usage_hook is not None or config.usage_webhook is not None
        self._usage_keys = frozenset(k.id for k in config.keys.values() if sinks or k.has_budgets)
        # With several workers and the memory store, each worker would count a nonce on its own.
        self._nonces_unshared = config.workers > 1 and (config.store is None or config.store == "memory")

    def _secrets(self, key_id: str) -> tuple[str, ...] | None:
        key = self.config.keys.get(key_id)
        return key.secrets if key else None

    # -- ASGI entry points --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a WebSocket handshake (under a server that upgrades by itself; ``signgate serve``
        does not): as a JSON answer where the server can send one, else by closing."""
        ex = _Exchange(request_id=os.urandom(8).hex(), method="GET", started=time.perf_counter())
        ex.status, ex.code = 400, "upgrade_not_supported"
        message = "this gateway speaks HTTP/1.1 only: WebSocket and other protocol upgrades are not supported"
        try:
            await receive()  # websocket.connect
            if "websocket.http.response" in (scope.get("extensions") or {}):
                body = json.dumps({"error": {"code": ex.code, "message": message, "request_id": ex.request_id}})
                headers = [
                    (b"content-type", b"application/json"),
                    (b"x-signgate-error", ex.code.encode()),
                    (b"x-request-id", ex.request_id.encode()),
                ]
                await send({"type": "websocket.http.response.start", "status": 400, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body.encode() + b"\n"})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": "upgrade_not_supported"})
        finally:
            self._record(ex)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for key_id in self._no_allowlist:
                    logger.warning(
                        "key %r has no allowed upstreams: it may reach any public http(s) upstream, as Signway "
                        "does; restrict it with --allow-upstream or allow_upstreams",
                        key_id,
                    )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close pooled upstream connections, the store and the usage webhook; flush the access log."""
        for task in list(self._background):
            task.cancel()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        flush = getattr(self._access_log, "flush", None)
        if flush is not None:  # a batching sink, such as signgate serve's AccessLogWriter
            flush()

    @property
    def store(self) -> Store:
        if self._store is None:
            url = self.config.store
            self._store = RedisStore(url) if url and url != "memory" else MemoryStore()
        return self._store

    def _upstream_pool(self) -> UpstreamPool:
        if self._pool is None:
            self._pool = UpstreamPool(
                allow_private=self.config.allow_private_upstreams,
                connect_timeout=self.config.connect_timeout,
                read_timeout=self.config.read_timeout,
            )
        return self._pool

    # -- one request ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = _Exchange(request_id=os.urandom(8).hex(), method=scope["method"], started=time.perf_counter())
        headers: dict[str, str] = {}
        repeated: list[str] | None = None
        size = 0
        # Too many fields are refused below without reading them (joining repeats costs work).
        fields = scope["headers"] if len(scope["headers"]) <= MAX_HEADER_FIELDS else ()
        for raw_name, raw_value in fields:
            size += len(raw_name) + len(raw_value)
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            if name in headers:
                # Joined as HTTP allows for lists; a bound header may not be sent twice (below).
                headers[name] = f"{headers[name]}, {value}"
                if repeated is None:
                    repeated = []
                repeated.append(name)
            else:
                headers[name] = value
        origin = headers.get("origin")
        key: KeyConfig | None = None
        body: Body | None = None
        streaming = False  # counted in metrics.in_flight, which --max-streams caps
        try:
            if size > self.config.max_header_bytes:
                raise Refusal(431, "headers_too_large", f"request headers exceed {self.config.max_header_bytes} bytes")
            if not fields and scope["headers"]:
                raise Refusal(431, "headers_too_large", f"the request has more than {MAX_HEADER_FIELDS} header fields")
            if "upgrade" in headers:
                raise Refusal(
                    400,
                    "upgrade_not_supported",
                    "this gateway speaks HTTP/1.1 only: WebSocket and other protocol upgrades are not supported",
                    close=True,
                )
            query = scope["query_string"].decode("latin-1")
            if "X-Sw-" not in query:
                await self._local_route(scope, send, ex, origin)
                return
            params = parse_query(query)
            key = self.config.keys.get(params.key_id)
            if key is not None:
                ex.key_id = key.id
            if ex.method == "OPTIONS" and "access-control-request-method" in headers:
                await self._preflight(send, ex, origin, key, headers)
                return
            if key is None:
                raise UnknownKey("the key id in X-Sw-Credential is not known to this gateway")
            if self.metrics.in_flight >= self.config.max_streams:
                raise _at_stream_limit()
            limit = key.max_expires or self.config.max_expires
            if params.expires > limit:
                raise ExpiryTooLong(f"X-Sw-Expires is {params.expires} s but this gateway accepts at most {limit} s")
            for name in repeated or ():
                if name in params.signed_headers:
                    raise MalformedRequest(name, "is a signed header sent more than once; send it once, as signed")
            # Everything that needs no body is checked before any body is read: a client without a
            # valid URL for this key and upstream never makes the gateway hold its bytes.
            target = self._check_upstream(key, params.proxy, ex)
            path = scope.get("path") or "/"
            verified = None
            if not params.body_bound:
                verified = self._verifier.verify(params, ex.method, headers, None, path=path)
            body = await self._read_body(receive, headers, params, ex)
            if verified is None:
                verified = self._verifier.verify(params, ex.method, headers, body.data, path=path)
            ext = _Extensions.from_verified(verified)
            if ext.nonce is not None and self._nonces_unshared:
                raise Refusal(
                    503,
                    "store_unavailable",
                    "single-use URLs need one store shared by every worker; start the gateway with "
                    "--store redis://... (or one worker)",
                )
            tap = (
                self._read_json(body, key, ext, headers)
                if body.data or ext.policy is not None or key.id in self._usage_keys
                else None
            )
            scopes = self._scopes(key, ext)
            # The stream cap holds from here, with nothing awaited between the check and the count:
            # requests that all passed the early check while their bodies arrived would otherwise
            # all be relayed at once, however far past the cap.
            if self.metrics.in_flight >= self.config.max_streams:
                raise _at_stream_limit()
            self.metrics.in_flight += 1
            streaming = True
            admission = await self._admit(ext, scopes, ex)
            bound = verified.bound_headers
            # A stream may last minutes: keep only what the relay and the accounting need.
            del headers, query, params, verified
            try:
                await self._relay(scope, receive, send, ex, key, target, body, bound, origin, tap)
            finally:
                if admission is not None and admission.lease is not None:
                    await self._quietly(self.store.release(admission))
                if tap is not None and ex.forwarded:
                    await self._account(ex, key, ext, scopes, tap)
        except (VerificationError, InvalidJSON) as exc:
            extra = {"now": exc.now} if isinstance(exc, Expired | NotYetValid) else {}
            await self._refuse(send, ex, origin, key, Refusal(exc.status, exc.code, exc.message, **extra))
        except PolicyViolation as exc:
            await self._refuse(send, ex, origin, key, Refusal(exc.status, exc.code, exc.message, rule=exc.rule))
        except Refusal as exc:
            await self._refuse(send, ex, origin, key, exc)
        except _ClientGone:
            ex.status, ex.code = 499, "client_disconnected"
        except Exception:
            # A bug, not the client's fault: say so in JSON (if nothing was sent yet) and log it once.
            logger.exception("unexpected error while handling request %s", ex.request_id)
            if ex.status == 0:
                refusal = Refusal(500, "internal_error", "the gateway failed on this request; it has been logged")
                await self._refuse(send, ex, origin, key, refusal)
            else:
                ex.code = "internal_error"
        finally:
            if streaming:
                self.metrics.in_flight -= 1
            if body is not None:
                body.release()
            self._record(ex)

    async def _read_body(self, receive: Receive, headers: dict[str, str], params: SignedParams, ex: _Exchange) -> Body:
        declared = headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                raise MalformedRequest("Content-Length", "must be a whole number of bytes")
            if int(declared) > self.config.max_body:
                raise Refusal(
                    413, "body_too_large", f"the body is {declared} bytes; the limit is {self.config.max_body}"
                )
        elif params.body_bound and "transfer-encoding" in headers:
            raise Refusal(411, "length_required", "a signed body must be sent with Content-Length, not chunked")
        body = Body(self._buffers)
        try:
            chunks: list[bytes] = []
            size = 0
            with _Deadline(self.config.client_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.config.max_body:
                        raise Refusal(
                            413, "body_too_large", f"the body exceeds the limit of {self.config.max_body} bytes"
                        )
                    # Bytes as they arrive, not the length announced: a length costs a client
                    # nothing to announce, and 64 connections announcing 1 MiB, with forged
                    # signatures over bound bodies, once held the whole budget for client_timeout.
                    if chunk:
                        body.reserve(len(chunk))
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            body.release()
            raise Refusal(
                408, "client_timeout", f"the body did not arrive within {self.config.client_timeout:g} s"
            ) from None
        except BaseException:
            body.release()
            raise
        ex.bytes_in = size
        body.data = b"".join(chunks)
        return body

    def _read_json(self, body: Body, key: KeyConfig, ext: _Extensions, headers: dict[str, str]) -> UsageTap | None:
        """Read the body strictly, enforce the policy, and set up the accounting; returns the tap.

        Policies, budgets and usage sinks need one reading of the body that the upstream cannot
        read another way: a body that is, or claims to be, JSON is read by strict_json, and any
        failure refuses the request. With none of them (metrics only), an unreadable body is
        counted by its size instead."""
        wants_usage = key.id in self._usage_keys
        controlled = ext.policy is not None or wants_usage
        coding = headers.get("content-encoding", "").strip(" \t").lower()
        if controlled and body.data and coding not in ("", "identity"):
            # An upstream that inflates the body (aiohttp, cpp-httplib with zlib, some proxies)
            # would read a prompt the gateway counted by its compressed size.
            raise Refusal(
                415,
                "unsupported_encoding",
                f"the body is sent with Content-Encoding {coding[:40]!r}; the gateway's policies and token budgets "
                "read the body, so send it uncompressed",
            )
        data: Any = None
        if body.data:
            if controlled and (ext.policy is not None or _claims_json(body.data, headers.get("content-type", ""))):
                data = strict_json.loads(body.data)
            elif not controlled:
                # Counted for the metrics only, never enforced or rewritten: any reading will do.
                try:
                    data = json.loads(body.data)
                except (ValueError, RecursionError):
                    data = None  # counted by its size
        changed = False
        if ext.policy is not None:
            changed = enforce(ext.policy, data)
        elif isinstance(data, dict) and controlled:
            check_fields(data)
        tap, asked = UsageTap.for_request(data, len(body.data), wants_usage)
        if changed or asked:
            written = strict_json.dumps(data)
            # Written back, a number takes its full form (1e15 becomes 1000000000000000.0, 4.5
            # times as long): the worker's share of held bytes grows with it.
            body.reserve(max(0, len(written) - body.held))
            body.data = written
        return tap

    @staticmethod
    def _scopes(key: KeyConfig, ext: _Extensions) -> list[LimitScope]:
        scopes = []
        if key.limits:
            scopes.append(LimitScope("key", scope_id("k", key.id), key.limits))
        if ext.tenant is not None and key.tenant_limits:
            scopes.append(LimitScope("tenant", scope_id("t", key.id, ext.tenant), key.tenant_limits))
        if ext.user is not None and key.user_limits:
            # A user of no tenant and a user of an (empty) tenant are apart: the parts differ in number.
            parts = (ext.user,) if ext.tenant is None else (ext.tenant, ext.user)
            scopes.append(LimitScope("user", scope_id("u", key.id, *parts), key.user_limits))
        return scopes

    async def _admit(self, ext: _Extensions, scopes: list[LimitScope], ex: _Exchange) -> Admission | None:
        if ext.nonce is None and not scopes:
            return None
        try:
            admission = await self.store.admit(ext.nonce, scopes, self._clock())
        except StoreUnavailable as exc:
            self.metrics.store_errors += 1
            if self.config.store_fail_open:
                logger.warning("store unavailable (%s): serving without limits (--store-fail-open)", exc)
                return None
            raise Refusal(
                503, "store_unavailable", "the gateway's store is unavailable; retry shortly", retry_after=1
            ) from None
        if admission.replayed:
            raise Refusal(
                409, "replayed", "this signed URL has been used as often as it may be; ask the backend for a new one"
            )
        if not admission.admitted:
            assert admission.scope is not None and admission.limit is not None
            limit = getattr(admission.scope.limits, admission.limit)
            raise Refusal(
                429,
                f"{admission.limit}_exceeded",
                f"the {admission.scope.kind}'s limit of {limit} {admission.limit.replace('_', ' ')} is reached",
                scope=admission.scope.kind,
                limit=limit,
                retry_after=admission.retry_after,
            )
        return admission

    async def _account(
        self, ex: _Exchange, key: KeyConfig, ext: _Extensions, scopes: list[LimitScope], tap: UsageTap
    ) -> None:
        tap.finish()
        prompt, completion, total, estimated = tap.tokens()
        self.metrics.count_tokens(key.id, prompt, completion, estimated)
        budgets = [s for s in scopes if s.limits.tokens_per_day]
        if budgets and total:
            await self._quietly(self.store.add_tokens(budgets, total, self._clock()))
        if self.config.usage_hook is None and self.config.usage_webhook is None:
            return
        record = UsageRecord(
            request_id=ex.request_id, key_id=key.id, tenant=ext.tenant, user=ext.user, model=tap.model,
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=total, estimated=estimated,
            status=ex.status, code=ex.code, ts=round(time.time(), 3),
        )  # fmt: skip
        if self.config.usage_hook is not None:
            try:
                result = self.config.usage_hook(record)
                if asyncio.iscoroutine(result):
                    self._spawn(result)
            except Exception:
                logger.exception("the usage hook failed")
        if self.config.usage_webhook is not None:
            self._queue_webhook(record)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _queue_webhook(self, record: UsageRecord) -> None:
        if self._webhook_queue is None:
            self._webhook_queue = asyncio.Queue(maxsize=10_000)
            self._spawn(self._deliver_webhooks(self._webhook_queue))
        try:
            self._webhook_queue.put_nowait(record)
        except asyncio.QueueFull:
            self.metrics.webhook_dropped += 1

    async def _deliver_webhooks(self, queue: asyncio.Queue[UsageRecord]) -> None:
        assert self.config.usage_webhook is not None
        # The operator's own endpoint: it may be private, so it gets a plain session of its own.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                record = await queue.get()
                try:
                    async with session.post(self.config.usage_webhook, json=record.to_dict()) as response:
                        if response.status >= 300:
                            self.metrics.webhook_failed += 1
                except (aiohttp.ClientError, TimeoutError, OSError):
                    self.metrics.webhook_failed += 1

    async def _quietly(self, coro: Any) -> None:
        """Await a store update whose failure must not fail the request (it is counted instead)."""
        try:
            await coro
        except StoreUnavailable:
            self.metrics.store_errors += 1

    def _check_upstream(self, key: KeyConfig, url: str, ex: _Exchange) -> tuple[str, str, int, str]:
        """The checked target of X-Sw-Proxy (as signed, not yet verified) for this key."""
        target = self._targets.get((key.id, url))
        if target is None:
            forward = scheme.normalize_upstream(url)
            if forward is None or not forward.startswith(("http://", "https://")):
                raise MalformedRequest(scheme.X_PROXY, "is not an absolute http(s) URL")
            target = self._allowed_target(key, forward, ex)
            # The few URLs a key's clients call, not every long one a client without a valid
            # signature may send (this runs before verification).
            if len(url) <= 512:
                if len(self._targets) >= 1024:
                    self._targets.clear()
                self._targets[(key.id, url)] = target
        ex.upstream_host = target[1]
        return target

    def _allowed_target(self, key: KeyConfig, url: str, ex: _Exchange) -> tuple[str, str, int, str]:
        target = split_url(url)
        if target is None:
            raise Refusal(403, "upstream_not_allowed", "upstream URLs with a user name or password are not allowed")
        ex.upstream_host = target[1]
        if key.allow_upstreams:
            # Not before verification, and not to a client: which upstreams a key may reach.
            if not any(prefix.allows(target) for prefix in key.allow_upstreams):
                raise Refusal(
                    403,
                    "upstream_not_allowed",
                    f"this key may not reach {target[0]}://{target[1]}{target[3].split('?', 1)[0][:80]}; "
                    "the gateway's operator chooses the upstreams each key may reach (--allow-upstream)",
                )
            if not _plain_path(target[3].split("?", 1)[0]):
                # An upstream that decodes %2F, %2E or %25 once more, reads ';' as a path
                # parameter (Tomcat's '..;') or an overlong UTF-8 %c0%ae as '.', would route it
                # outside the allowed prefix.
                raise Refusal(
                    403,
                    "upstream_not_allowed",
                    "the upstream path holds an encoded '/', '\\', '.', '%', ';' or NUL, a ';' segment, a '%' "
                    "that is no escape, or escapes that are not UTF-8; a key with allowed upstreams accepts "
                    "plain paths only",
                )
        if not self.config.allow_private_upstreams:
            try:
                check_literal(target[1])
            except ForbiddenAddress:
                raise Refusal(
                    403,
                    "upstream_not_allowed",
                    "the upstream is not a public address; to reach loopback or private addresses "
                    "(a local model), start the gateway with --allow-private-upstreams",
                ) from None
        return target

    def _upstream_headers(self, scope: Scope, key: KeyConfig, bound: Mapping[str, str]) -> list[tuple[str, str]]:
        """The client's headers without those that must not travel upstream; every bound header
        exactly as it was verified; then the key's headers, which replace the client's."""
        added = key.header_names
        dropped: set[str] = set()  # client headers dropped by name: those Connection lists, and below
        for name, value in scope["headers"]:
            if name == b"connection":
                dropped.update(v.strip(" \t").lower() for v in value.decode("latin-1").split(","))
        # CGI-style servers (WSGI, Rack, PHP) read '_' in a header name as '-': X_Forwarded_For
        # arrives there as X-Forwarded-For, and X_User_Id beside a bound X-User-Id. So no client
        # header with '_' goes upstream (nginx's default too), nor one that a bound or key header
        # with '_' would be read as.
        if any("_" in name for name in bound) or any("_" in name for name in added):
            dropped.update(name.replace("_", "-") for name in (*bound, *added))
        out = []
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1")
            if (
                "_" in name
                or name in bound
                or name in added
                or name in dropped
                or name in _NOT_UPSTREAM
                or name.startswith(_NOT_UPSTREAM_PREFIXES)
            ):
                continue
            out.append((name, raw_value.decode("latin-1")))
        # A bound header is never dropped by the client (naming it in Connection does nothing).
        out.extend((name, value) for name, value in bound.items() if name not in added and not _not_upstream(name))
        out.extend(key.headers)
        # Ask for the bytes as they are, so the gateway can relay (and later read) them unchanged.
        out.append(("accept-encoding", "identity"))
        return out

    async def _relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ex: _Exchange,
        key: KeyConfig,
        target: tuple[str, str, int, str],
        body: Body,
        bound: Mapping[str, str],
        origin: str | None,
        tap: UsageTap | None = None,
    ) -> None:
        pool = self._upstream_pool()
        headers = self._upstream_headers(scope, key, bound)
        host = target[1]
        current = asyncio.current_task()
        assert current is not None
        state = {"gone": False, "finishing": False}

        def on_lost() -> None:
            # Cancel the relay the moment the client hangs up, so the upstream stops generating.
            if not state["finishing"]:
                state["gone"] = True
                current.cancel()

        def on_message(done: asyncio.Future[Message]) -> None:
            if not done.cancelled() and done.exception() is None and done.result()["type"] == "http.disconnect":
                on_lost()

        # signgate serve's protocol calls on_lost itself; under another ASGI server a task waits in
        # receive() for the disconnect message.
        watch = (scope.get("extensions") or {}).get(CLIENT_LOST)
        watcher: asyncio.Future[Message] | None = None
        if watch is not None:
            if watch(on_lost):  # gone while the request was verified or admitted: nothing is sent
                ex.status, ex.code = 499, "client_disconnected"
                return
        else:
            watcher = asyncio.ensure_future(receive())
            watcher.add_done_callback(on_message)
        sent_at = time.perf_counter()
        response = None
        try:
            ex.forwarded = True
            try:
                response = await pool.request(ex.method, *target, headers, body.data)
            except ForbiddenAddress:
                ex.forwarded = False
                raise Refusal(
                    403,
                    "upstream_not_allowed",
                    "the upstream resolves to a non-public address; to reach loopback or private addresses "
                    "(a local model), start the gateway with --allow-private-upstreams",
                ) from None
            except UpstreamTimeout as exc:
                ex.forwarded = exc.sent
                raise Refusal(
                    504, "upstream_timeout", f"the upstream did not answer within its timeout ({host})"
                ) from None
            except UpstreamError as exc:
                ex.forwarded = exc.sent
                raise Refusal(502, "upstream_unreachable", f"could not reach the upstream ({host})") from None
            finally:
                # Sent (or never to be): a stream that lasts minutes does not hold its request body.
                body.release()
            ex.ttfb = time.perf_counter() - sent_at
            self.metrics.upstream_ttfb.observe(ex.ttfb)
            if not _relayable(response.status, response.headers):
                raise Refusal(502, "upstream_unreachable", f"the upstream's answer is not valid HTTP ({host})")
            ex.status = response.status
            ex.code = "ok" if response.status < 400 else "upstream_status"
            headers_out = self._downstream_headers(response.headers, ex, origin, key)
            if tap is not None:
                tap.start(_header(response.headers, b"content-type"))
            # The server frames the body itself when it may shrink (the usage chunk removed); a
            # 204 or 304 has no body, whatever length the upstream names (a 304 may name one),
            # and the server would fail the response for the missing bytes.
            if response.status in (204, 304) or (tap is not None and tap.strip_usage_chunk):
                headers_out = [(k, v) for k, v in headers_out if k.lower() != b"content-length"]
            await send({"type": "http.response.start", "status": response.status, "headers": headers_out})
            last = False
            try:
                while not last and (chunk := await response.read()):
                    data = tap.feed(chunk) if tap is not None else chunk
                    # The body's last bytes end the response in the same message (for a small
                    # answer, one send and one write fewer).
                    last = response.complete
                    if last and tap is not None:
                        data += tap.flush()
                    if data or last:
                        ex.bytes_out += len(data)
                        state["finishing"] = last
                        await send({"type": "http.response.body", "body": data, "more_body": not last})
                if not last and tap is not None and (rest := tap.flush()):
                    ex.bytes_out += len(rest)
                    await send({"type": "http.response.body", "body": rest, "more_body": True})
            except UpstreamError as exc:
                # Return without finishing the response: the server then closes the connection
                # without the final chunk, so the client sees a broken stream, not a clean end.
                ex.code = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_broken"
                return
            if not last:
                state["finishing"] = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.metrics.upstream_duration.observe(time.perf_counter() - sent_at)
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            current.uncancel()
            ex.status, ex.code = 499, "client_disconnected"
        finally:
            if watch is not None:
                watch(None)
            elif watcher is not None:
                watcher.remove_done_callback(on_message)
                watcher.cancel()
            if response is not None:
                response.release()  # to the pool after a complete body; mid-stream it drops the connection

    def _downstream_headers(
        self, headers: list[tuple[bytes, bytes]], ex: _Exchange, origin: str | None, key: KeyConfig | None
    ) -> list[tuple[bytes, bytes]]:
        out = [(name, value) for name, value in headers if _downstream(name.lower())]
        out.extend(_RELAYED)
        out.append((b"x-request-id", ex.request_id.encode()))
        out.extend(self._cors(origin, key))
        return out

    # -- CORS ---------------------------------------------------------------------------------------

    def _origin_allowed(self, origin: str | None, key: KeyConfig | None) -> str | None:
        if origin is None:
            return None
        if self._wildcard or (key is not None and "*" in key.cors_origins):
            return "*"
        lowered = origin.lower()
        if lowered in self._origins or (key is not None and lowered in key.cors_origins):
            return origin
        return None

    def _cors(self, origin: str | None, key: KeyConfig | None) -> list[tuple[bytes, bytes]]:
        allowed = self._origin_allowed(origin, key)
        if allowed is None:
            return [(b"vary", b"origin")] if origin is not None else []
        return [
            (b"access-control-allow-origin", allowed.encode("latin-1")),
            (b"access-control-expose-headers", _EXPOSE),
            (b"vary", b"origin"),
        ]

    async def _preflight(
        self, send: Send, ex: _Exchange, origin: str | None, key: KeyConfig | None, headers: dict[str, str]
    ) -> None:
        allowed = self._origin_allowed(origin, key)
        if allowed is None:
            raise Refusal(403, "origin_not_allowed", "this origin may not call the gateway; configure --cors-origin")
        requested = headers.get("access-control-request-headers", "")
        out = [
            (b"access-control-allow-origin", allowed.encode("latin-1")),
            (b"access-control-allow-methods", headers["access-control-request-method"].encode("latin-1")),
            (b"access-control-max-age", b"600"),
            (b"vary", b"origin"),
            (b"content-length", b"0"),
            (b"x-request-id", ex.request_id.encode()),
        ]
        if requested:
            out.append((b"access-control-allow-headers", requested.encode("latin-1")))
        ex.status, ex.code = 204, "preflight"
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})

    # -- local routes and errors -------------------------------------------------------------------

    async def _local_route(self, scope: Scope, send: Send, ex: _Exchange, origin: str | None) -> None:
        path = scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix by an embedding application
            path = path[len(root) :] or "/"
        if ex.method in ("GET", "HEAD") and path == "/healthz":
            ex.status, ex.code = 200, "health"
            await self._send_body(send, 200, b'{"status":"ok"}\n', b"application/json", ex, origin, None)
        elif ex.method in ("GET", "HEAD") and path == "/metrics":
            ex.status, ex.code = 200, "metrics"
            body = self.metrics.render().encode()
            await self._send_body(send, 200, body, b"text/plain; version=0.0.4; charset=utf-8", ex, origin, None)
        else:
            raise Refusal(
                400 if path == "/" else 404,
                "malformed" if path == "/" else "not_found",
                "this is a signgate gateway: send a signed URL (X-Sw-* parameters), GET /healthz or GET /metrics",
            )

    async def _refuse(self, send: Send, ex: _Exchange, origin: str | None, key: KeyConfig | None, exc: Refusal) -> None:
        ex.status, ex.code = exc.status, exc.code
        error: dict[str, Any] = {"code": exc.code, "message": exc.message, "request_id": ex.request_id}
        retry_after = exc.extra.pop("retry_after", None)
        close = exc.extra.pop("close", False)
        error.update(exc.extra)
        body = json.dumps({"error": error}).encode() + b"\n"
        extra = [(b"x-signgate-error", exc.code.encode())]
        if retry_after is not None:
            extra.append((b"retry-after", str(retry_after).encode()))
        if close:  # what follows on this connection is not HTTP/1.1 the gateway can read
            extra.append((b"connection", b"close"))
        await self._send_body(send, exc.status, body, b"application/json", ex, origin, key, extra)

    async def _send_body(
        self,
        send: Send,
        status: int,
        body: bytes,
        content_type: bytes,
        ex: _Exchange,
        origin: str | None,
        key: KeyConfig | None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-request-id", ex.request_id.encode()),
            *(extra or []),
            *self._cors(origin, key),
        ]
        ex.bytes_out = len(body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if ex.method != "HEAD" else b""})

    def _record(self, ex: _Exchange) -> None:
        self.metrics.requests[(ex.code, ex.status)] += 1
        self.metrics.bytes_in += ex.bytes_in
        self.metrics.bytes_out += ex.bytes_out
        sink = self._access_log
        if sink is None:
            if not access_logger.isEnabledFor(logging.INFO):
                return
            sink = access_logger.info
        sink(_access_line(ex))


def _access_line(ex: _Exchange) -> str:
    """The access log line: exactly what ``json.dumps`` of these fields gives, for ~60% of its cost.

    Every string goes through json's own escaping (ASCII only); the numbers are ints and floats,
    which json writes as ``repr`` does.
    """
    ttfb = "null" if ex.ttfb is None else repr(round(ex.ttfb * 1000, 2))
    return (
        f'{{"ts": {round(time.time(), 3)!r}, "request_id": {_json_str(ex.request_id)}, '
        f'"method": {_json_str(ex.method[:16])}, "key_id": {_json_str(ex.key_id[:64])}, '
        f'"upstream_host": {_json_str(ex.upstream_host)}, "status": {ex.status!r}, "code": {_json_str(ex.code)}, '
        f'"duration_ms": {round((time.perf_counter() - ex.started) * 1000, 2)!r}, "ttfb_ms": {ttfb}, '
        f'"bytes_in": {ex.bytes_in!r}, "bytes_out": {ex.bytes_out!r}}}'
    )


def _not_upstream(name: str) -> bool:
    """Whether a (lower-case) request header may never travel upstream."""
    return name in _NOT_UPSTREAM or name.startswith(_NOT_UPSTREAM_PREFIXES)


def _downstream(name: bytes) -> bool:
    """Whether an upstream's (lower-case) answer header may reach the browser."""
    return name not in _NOT_DOWNSTREAM_BYTES and not name.startswith(_NOT_DOWNSTREAM_PREFIXES)


def _claims_json(body: bytes, content_type: str) -> bool:
    """A body that says it is JSON (its media type) or looks like it (its first byte after JSON's
    whitespace, or an encoding marker a lenient decoder reads). Other bodies (audio, forms) are
    counted by their size."""
    media_type = content_type.partition(";")[0].strip(" \t").lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return True
    # Lenient decoders read JSON behind a UTF-8 byte-order mark (nlohmann's, in llama.cpp's server,
    # whatever the media type), and in UTF-16 or UTF-32 (Python's json.loads of bytes, which
    # Starlette's Request.json uses when no media type is given): such a body may be a chat request
    # to the upstream, so it is read strictly, and refused.
    encoding = json.detect_encoding(body)
    if encoding == "utf-8-sig" or (encoding != "utf-8" and not media_type):
        return True
    return body.lstrip(b" \t\r\n")[:1] in (b"{", b"[")


class _BufferBudget:
    """The request-body bytes one worker holds at once, across all requests (``max_buffered``)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class Body:
    """A request body, and the share of the worker's buffer budget it holds until it is sent."""

    __slots__ = ("_budget", "data", "held")

    def __init__(self, budget: _BufferBudget) -> None:
        self._budget = budget
        self.data = b""
        self.held = 0

    def reserve(self, size: int) -> None:
        budget = self._budget
        if budget.used + size > budget.limit:
            raise Refusal(
                503, "at_capacity", "the gateway holds as many request bodies as it may; retry shortly", retry_after=1
            )
        budget.used += size
        self.held += size

    def release(self) -> None:
        self._budget.used -= self.held
        self.held = 0
        self.data = b""


def _at_stream_limit() -> Refusal:
    return Refusal(503, "at_capacity", "the gateway is at its stream limit; retry shortly", retry_after=1)


def _plain_path(path: str) -> bool:
    """No escape or ';' in ``path`` that an upstream could read as another path (_ENCODED_PATH),
    and its escapes decode to UTF-8 (no overlong forms)."""
    if _ENCODED_PATH.search(path):
        return False
    if "%" in path:
        try:
            unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _relayable(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """False for an answer that HTTP cannot carry on: a status outside 200..599 (a 101 would
    switch the client's connection to a protocol nobody speaks), or a header uvicorn would
    refuse to write after the response had begun."""
    if not 200 <= status <= 599:
        return False
    # One search over all names and one over all values (a tab is allowed in values).
    return not (
        _BAD_NAME.search(b"".join(name for name, _ in headers))
        or _BAD_VALUE.search(b"\t".join(value for _, value in headers))
    )


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    """The first value of header ``name`` (lower case), or ""."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def create_app(
    config: GatewayConfig,
    *,
    clock: Callable[[], float] = time.time,
    access_log: Callable[[str], None] | None = None,
) -> Gateway:
    """The ASGI application factory: run it under any ASGI server, or mount it in your own app.

    Access log lines go to the ``signgate.access`` logger at INFO, or to ``access_log`` when given:
    a callable taking one JSON line without its newline; its ``flush()``, if it has one, is called
    at shutdown (see ``signgate.gateway.accesslog.AccessLogWriter``).
    """
    return Gateway(config, clock=clock, access_log=access_log)
