"""The stand-in as an HTTP server for four LLM APIs: a plain ASGI application, served by uvicorn.

Generation routes come from :mod:`signgate.providers` (see ``docs/standin.md``): OpenAI Chat
Completions and Responses, Anthropic Messages, Google Gemini; each answers, and refuses, in
its API's own shapes. The server reads no API itself: it finds the provider for the path, asks
it for the key, the request and the answer's events, and paces the stream. Its own routes:

``GET  /healthz``               ``{"status": "ok"}``
``GET/POST /_standin/config``   loopback only; ``{"delay": s, "chunk_delay": s}`` changes timing
``GET  /_standin/stats``        loopback only; request and stream counters

The API key is never logged, echoed or put in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from .. import providers
from ..providers import Provider, ProviderError, Route, RouteError, Stamp, encode_events
from ..providers.base import Query
from ..providers.registry import FALLBACK
from .answers import respond, usage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Seconds between streamed content chunks: slow enough that a person sees fields fill in.
DEFAULT_CHUNK_DELAY = 0.02
#: Characters of content in each streamed chunk.
DEFAULT_CHUNK_SIZE = 4
#: The longest delay the config endpoint or the constructor accepts, in seconds.
MAX_DELAY = 600.0
MAX_BODY = 1 << 20
#: How deep a request body's arrays and objects may nest; JSON schemas need a few dozen levels.
MAX_NESTING = 100
MODEL_ID = "signgate-standin"
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


@dataclass(slots=True)
class Stats:
    """Counters a test can read through ``GET /_standin/stats``.

    ``requests`` counts every generation request, in any API; ``rejected`` those answered
    with an error; ``completions`` the non-streaming answers sent. A stream is ``started``
    once its headers are sent and ends ``completed`` (its last event sent) or ``disconnected``
    (the client went away first, seen through ``http.disconnect`` or a failed send).
    """

    requests: int = 0
    rejected: int = 0
    completions: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_disconnected: int = 0


def check_delay(name: str, value: object) -> float:
    """``value`` as a delay in seconds, or ValueError naming ``name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 <= value <= MAX_DELAY:
        raise ValueError(f"{name} must be between 0 and {MAX_DELAY:g} seconds, got {value!r}")
    return float(value)


def _admin_error(
    message: str, *, status: int = 400, param: str | None = None, code: str | None = None
) -> tuple[int, dict[str, Any]]:
    """An error on the stand-in's own routes, in the shape of a path no provider claims."""
    return status, FALLBACK.error(ProviderError(message, status=status, param=param, code=code))


class _Disconnect:
    """Watches ``receive`` for ``http.disconnect`` while the app is sending a response."""

    def __init__(self, receive: Receive) -> None:
        self.event = asyncio.Event()
        self._task = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.event.set()
                return

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the client has gone."""
        if seconds <= 0:
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), seconds)
        return self.event.is_set()

    def close(self) -> None:
        self._task.cancel()


class StandinApp:
    """The ASGI application. Timing can change at run time; ``stats`` is live."""

    def __init__(
        self,
        api_key: str,
        *,
        delay: float = 0.0,
        chunk_delay: float = DEFAULT_CHUNK_DELAY,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string; generate one with secrets.token_urlsafe()")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of characters, got {chunk_size!r}")
        self._key = api_key.encode()
        self.delay = check_delay("delay", delay)
        self.chunk_delay = check_delay("chunk_delay", chunk_delay)
        self.chunk_size = chunk_size
        self.stats = Stats()
        self._clock = clock

    def __repr__(self) -> str:
        return f"StandinApp(delay={self.delay!r}, chunk_delay={self.chunk_delay!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        own: dict[str, dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]]] = {
            "/healthz": {"GET": self._health},
            "/_standin/config": {"GET": self._config, "POST": self._config},
            "/_standin/stats": {"GET": self._stats},
        }
        handlers = own.get(path)
        if handlers is not None:
            if method in handlers:
                await handlers[method](scope, receive, send)
            else:
                allowed = ", ".join(sorted(handlers))
                message = f"{method} is not allowed on {path}; use {allowed}."
                await _send_json(send, *_admin_error(message, status=405, code="method_not_allowed"))
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            provider, route = providers.find(method, path, query)
        except RouteError as exc:
            await _send_json(send, exc.status, exc.provider.error(exc))
            return
        if route.operation == "models":
            await self._models(provider, scope, query, send)
        else:
            await self._generate(provider, route, scope, query, receive, send)

    def _authenticate(self, provider: Provider, scope: Scope, query: Query) -> None:
        """Nothing if the request carries the key where ``provider``'s API wants it, else the 401."""
        key = provider.api_key(_headers(scope), query)
        if not hmac.compare_digest(key.encode(), self._key):
            raise ProviderError(
                "Incorrect API key provided. Check the key the stand-in was started with.",
                status=401,
                code="invalid_api_key",
            )

    async def _generate(
        self, provider: Provider, route: Route, scope: Scope, query: Query, receive: Receive, send: Send
    ) -> None:
        self.stats.requests += 1
        try:
            self._authenticate(provider, scope, query)
            provider.check_headers(_headers(scope))
            request = provider.read_request(_parse_json(await _read_body(receive)), route)
        except ProviderError as exc:
            self.stats.rejected += 1
            await _send_json(send, exc.status, provider.error(exc))
            return
        except _ClientGone:
            return
        reply = respond(request)
        counts = usage(request, reply)
        stamp = Stamp(secrets.token_hex(12), int(self._clock()))
        if request.stream:
            await self._stream(receive, send, provider.stream(request, reply, counts, stamp), reply.content)
            return
        watcher = _Disconnect(receive)
        try:
            if await watcher.sleep(self.delay):
                return
            await _send_json(send, 200, provider.answer(request, reply, counts, stamp))
            self.stats.completions += 1
        finally:
            watcher.close()

    async def _stream(self, receive: Receive, send: Send, writer: providers.StreamWriter, content: str) -> None:
        """Send ``writer``'s start at once, its deltas after ``delay`` and ``chunk_delay`` apart,
        then its end; count how the stream ended."""

        async def events(batch: list[providers.Event], *, last: bool = False) -> None:
            if batch or last:
                await send({"type": "http.response.body", "body": encode_events(batch), "more_body": not last})

        watcher = _Disconnect(receive)
        finished = False
        self.stats.streams_started += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            await events(writer.start())
            if await watcher.sleep(self.delay):
                return
            for start in range(0, len(content), self.chunk_size):
                await events(writer.delta(content[start : start + self.chunk_size]))
                if await watcher.sleep(self.chunk_delay):
                    return
            await events(writer.end(), last=True)
            finished = not watcher.event.is_set()
        except OSError:  # servers other than uvicorn may raise on a send to a closed connection
            pass
        finally:
            watcher.close()
            if finished:
                self.stats.streams_completed += 1
            else:
                self.stats.streams_disconnected += 1

    async def _models(self, provider: Provider, scope: Scope, query: Query, send: Send) -> None:
        try:
            self._authenticate(provider, scope, query)
        except ProviderError as exc:
            await _send_json(send, exc.status, provider.error(exc))
            return
        await _send_json(send, 200, provider.models([MODEL_ID]))

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_json(send, 200, {"status": "ok"})

    async def _config(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _from_loopback(scope):
            await _send_json(
                send, *_admin_error("The admin endpoints answer loopback clients only.", status=403, code="forbidden")
            )
            return
        if scope["method"] == "POST":
            try:
                self._apply_config(await _read_body(receive))
            except ProviderError as exc:
                await _send_json(send, *_admin_error(exc.message, status=exc.status, param=exc.param, code=exc.code))
                return
            except _ClientGone:
                return
        await _send_json(send, 200, {"delay": self.delay, "chunk_delay": self.chunk_delay})

    def _apply_config(self, body: bytes) -> None:
        try:
            update = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            raise ProviderError('The body must be JSON, e.g. {"delay": 1.5}.') from None
        if not isinstance(update, dict):
            raise ProviderError('The body must be a JSON object, e.g. {"delay": 1.5}.')
        unknown = sorted(set(update) - {"delay", "chunk_delay"})
        if unknown:
            raise ProviderError(
                f"Unknown setting {unknown[0]!r}; only 'delay' and 'chunk_delay' can be changed.", param=unknown[0]
            )
        checked = {}
        for name, value in update.items():
            try:
                checked[name] = check_delay(name, value)
            except ValueError as exc:
                raise ProviderError(str(exc), param=name) from None
        for name, value in checked.items():
            setattr(self, name, value)

    async def _stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _from_loopback(scope):
            await _send_json(
                send, *_admin_error("The admin endpoints answer loopback clients only.", status=403, code="forbidden")
            )
            return
        await _send_json(send, 200, asdict(self.stats))


def create_app(
    api_key: str, delay: float = 0.0, chunk_delay: float = DEFAULT_CHUNK_DELAY, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> StandinApp:
    """The stand-in ASGI app. ``delay`` is waited before the first content, ``chunk_delay``
    between streamed chunks; both are seconds and can change later via ``/_standin/config``."""
    return StandinApp(api_key, delay=delay, chunk_delay=chunk_delay, chunk_size=chunk_size)


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def _read_body(receive: Receive, limit: int = MAX_BODY) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise ProviderError(f"The request body is larger than {limit} bytes.", status=413, code="request_too_large")
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse_json(body: bytes) -> object:
    """The body's JSON value, nested at most :data:`MAX_NESTING` levels, else a 400.

    The parser, the schema reader and ``json.dumps`` all recurse: a body nested near the
    interpreter's recursion limit parses and then makes one of them raise ``RecursionError``
    (a 500). Refusing deep bodies once, here, keeps every later step safe.
    """
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser can go
        raise ProviderError("The body of your request is not valid JSON. Send one JSON object.") from None
    if _nesting(value) > MAX_NESTING:
        raise ProviderError(f"The body of your request is nested more than {MAX_NESTING} levels deep.")
    return value


def _nesting(value: object) -> int:
    """How many arrays and objects deep ``value`` goes, found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; a repeated header's values joined with ``", "``, as
    HTTP allows, so two keys never pass for one."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def _send_json(send: Send, status: int, payload: Mapping[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _from_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def serve(
    host: str = "127.0.0.1",
    port: int = 8787,
    api_key: str | None = None,
    delay: float = 0.0,
    chunk_delay: float = DEFAULT_CHUNK_DELAY,
    *,
    log_level: str = "info",
) -> None:
    """Run the stand-in with uvicorn until interrupted. Needs ``signgate[gateway]``.

    Without ``api_key`` a random one is generated, and no client can authenticate: pass the
    key your clients will use.
    """
    import uvicorn  # only the server needs it; the parser works without the gateway extra

    app = create_app(api_key or secrets.token_urlsafe(32), delay=delay, chunk_delay=chunk_delay)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")).run()
