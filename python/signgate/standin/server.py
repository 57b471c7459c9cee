"""The stand-in as an OpenAI-compatible HTTP server: a plain ASGI application, served by uvicorn.

Endpoints (see ``docs/standin.md``):

``POST /v1/chat/completions``   needs ``Authorization: Bearer <api_key>``; streams when asked
``GET  /v1/models``             needs the key; lists the one stand-in model
``GET  /healthz``               ``{"status": "ok"}``
``GET/POST /_standin/config``   loopback only; ``{"delay": s, "chunk_delay": s}`` changes timing
``GET  /_standin/stats``        loopback only; request and stream counters

Errors are OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}``. The API key is
never logged, echoed or put in a message.
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

from .model import reply
from .protocol import RequestError, check_chat_request

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
MODEL_ID = "signgate-standin"
_JSON = [(b"content-type", b"application/json")]


@dataclass(slots=True)
class Stats:
    """Counters a test can read through ``GET /_standin/stats``.

    ``requests`` counts every chat completion request, ``rejected`` those answered with an
    error, ``completions`` the non-streaming answers sent. A stream is ``started`` once its
    headers are sent and ends ``completed`` (``[DONE]`` sent) or ``disconnected`` (the client
    went away first, seen through ``http.disconnect`` or a failed send).
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


def estimate_tokens(text: str) -> int:
    """A deterministic token count: about four characters a token, at least one for any text."""
    return math.ceil(len(text) / 4) if text else 0


def _prompt_tokens(messages: list[Mapping[str, Any]]) -> int:
    total = 3
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        total += 4 + estimate_tokens(content if isinstance(content, str) else "")
    return total


def _error(message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-shaped error body; every error the stand-in sends is an ``invalid_request_error``."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


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
        method, path = scope["method"], scope["path"]
        routes: dict[str, dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]]] = {
            "/v1/chat/completions": {"POST": self._chat},
            "/v1/models": {"GET": self._models},
            "/healthz": {"GET": self._health},
            "/_standin/config": {"GET": self._config, "POST": self._config},
            "/_standin/stats": {"GET": self._stats},
        }
        handlers = routes.get(path.rstrip("/") or "/")
        if handlers is None:
            await _send_json(send, 404, _error(f"Unknown request URL: {method} {path}.", code="unknown_url"))
        elif method not in handlers:
            allowed = ", ".join(sorted(handlers))
            await _send_json(
                send, 405, _error(f"{method} is not allowed on {path}; use {allowed}.", code="method_not_allowed")
            )
        else:
            await handlers[method](scope, receive, send)

    def _authorized(self, scope: Scope) -> tuple[int, dict[str, Any]] | None:
        """None if the request carries the key, else the 401 to send."""
        header = b""
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        if not header:
            message = "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
        elif scheme.lower() != b"bearer" or not token.strip():
            message = "The Authorization header must be 'Bearer <key>'."
        elif hmac.compare_digest(token.strip(), self._key):
            return None
        else:
            message = "Incorrect API key provided. Check the key the stand-in was started with."
        return 401, _error(message, code="invalid_api_key")

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats.requests += 1
        denied = self._authorized(scope)
        if denied is not None:
            self.stats.rejected += 1
            await _send_json(send, *denied)
            return
        try:
            body = await _read_body(receive)
            request = check_chat_request(body)
        except RequestError as exc:
            self.stats.rejected += 1
            await _send_json(send, exc.status, _error(exc.message, param=exc.param, code=exc.code))
            return
        except _ClientGone:
            return
        content = reply(request["messages"], request.get("response_format"))
        usage = {"prompt_tokens": _prompt_tokens(request["messages"]), "completion_tokens": estimate_tokens(content)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "created": int(self._clock()),
            "model": request["model"],
            "system_fingerprint": "fp_signgate_standin",
        }
        if request.get("stream"):
            options = request.get("stream_options") or {}
            await self._stream(receive, send, base, content, usage if options.get("include_usage") else None)
            return
        watcher = _Disconnect(receive)
        try:
            if await watcher.sleep(self.delay):
                return
            message = {"role": "assistant", "content": content, "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            await _send_json(send, 200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            self.stats.completions += 1
        finally:
            watcher.close()

    async def _stream(
        self, receive: Receive, send: Send, base: dict[str, Any], content: str, usage: dict[str, int] | None
    ) -> None:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            event: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            if usage is not None:
                event["usage"] = None  # as OpenAI does: present but null until the last chunk
            return b"data: " + json.dumps(event).encode() + b"\n\n"

        watcher = _Disconnect(receive)
        finished = False
        self.stats.streams_started += 1
        try:
            headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send(
                {"type": "http.response.body", "body": chunk({"role": "assistant", "content": ""}), "more_body": True}
            )
            if await watcher.sleep(self.delay):
                return
            for start in range(0, len(content), self.chunk_size):
                piece = content[start : start + self.chunk_size]
                await send({"type": "http.response.body", "body": chunk({"content": piece}), "more_body": True})
                if await watcher.sleep(self.chunk_delay):
                    return
            tail = chunk({}, "stop")
            if usage is not None:
                last = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                tail += b"data: " + json.dumps(last).encode() + b"\n\n"
            tail += b"data: [DONE]\n\n"
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            finished = not watcher.event.is_set()
        except OSError:  # servers other than uvicorn may raise on a send to a closed connection
            pass
        finally:
            watcher.close()
            if finished:
                self.stats.streams_completed += 1
            else:
                self.stats.streams_disconnected += 1

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        denied = self._authorized(scope)
        if denied is not None:
            await _send_json(send, *denied)
            return
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "signgate"}
        await _send_json(send, 200, {"object": "list", "data": [model]})

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_json(send, 200, {"status": "ok"})

    async def _config(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _from_loopback(scope):
            await _send_json(send, 403, _error("The admin endpoints answer loopback clients only.", code="forbidden"))
            return
        if scope["method"] == "POST":
            try:
                self._apply_config(await _read_body(receive))
            except RequestError as exc:
                await _send_json(send, exc.status, _error(exc.message, param=exc.param, code=exc.code))
                return
            except _ClientGone:
                return
        await _send_json(send, 200, {"delay": self.delay, "chunk_delay": self.chunk_delay})

    def _apply_config(self, body: bytes) -> None:
        try:
            update = json.loads(body or b"{}")
        except ValueError:
            raise RequestError('The body must be JSON, e.g. {"delay": 1.5}.') from None
        if not isinstance(update, dict):
            raise RequestError('The body must be a JSON object, e.g. {"delay": 1.5}.')
        unknown = sorted(set(update) - {"delay", "chunk_delay"})
        if unknown:
            raise RequestError(
                f"Unknown setting {unknown[0]!r}; only 'delay' and 'chunk_delay' can be changed.", param=unknown[0]
            )
        checked = {}
        for name, value in update.items():
            try:
                checked[name] = check_delay(name, value)
            except ValueError as exc:
                raise RequestError(str(exc), param=name) from None
        for name, value in checked.items():
            setattr(self, name, value)

    async def _stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _from_loopback(scope):
            await _send_json(send, 403, _error("The admin endpoints answer loopback clients only.", code="forbidden"))
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
            raise RequestError(f"The request body is larger than {limit} bytes.", status=413, code="request_too_large")
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


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
