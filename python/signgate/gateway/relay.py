"""The relay: send a verified request upstream and stream the answer back, chunk by chunk.

The upstream call is dropped the moment the client hangs up (so the model stops generating), and
an upstream that breaks off mid-answer breaks the client's stream too, never ending it cleanly.
With live streams watched (``--revoke-live``), a revocation ends a stream the same way, after an
SSE event that names the refusal (see :mod:`.live`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import Refusal, Revoked, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from ..revocation import Attribution
from .admission import Extensions
from .asgi import HangUp, Receive, Scope, Send, break_off, coalesce
from .body import Body
from .config import KeyConfig
from .cors import Cors
from .exchange import Exchange
from .headers import RELAYED, downstream, first, relayable, upstream_headers
from .live import LiveStreams, ended_event
from .metrics import Metrics
from .refusals import refusal_for
from .store import Scope as LimitScope
from .upstream import Pool, Response, Target
from .usage import UsageTap


@dataclass(slots=True)
class Forward:
    """What the steps before the relay leave of a request: all a relay and its accounting need,
    and nothing more (a stream may last minutes)."""

    key: KeyConfig
    target: Target
    body: Body
    bound: Mapping[str, str]  # the bound headers, as verified
    ext: Extensions
    scopes: list[LimitScope]
    tap: UsageTap | None
    attribution: Attribution
    cors: Cors  # of the configuration the request started with


class Relay:
    __slots__ = ("_live", "_metrics", "_pool")

    def __init__(self, pool: Callable[[], Pool], metrics: Metrics, live: LiveStreams | None = None) -> None:
        self._pool = pool
        self._metrics = metrics
        self._live = live  # with --revoke-live: where streams register, so a revocation can end them

    async def __call__(self, scope: Scope, receive: Receive, send: Send, ex: Exchange, fw: Forward) -> None:
        """Relay ``fw`` to its target and the answer to ``send``; raises a Refusal only before the
        answer has begun."""
        hang_up = HangUp(scope, receive)
        if hang_up.start():  # gone while the request was verified or admitted: nothing is sent
            ex.status, ex.code = 499, "client_disconnected"
            return
        live = self._live
        if live is not None and (covered := live.add(hang_up, fw.attribution)) is not None:
            hang_up.stop()
            raise Revoked(covered.kind)
        response: Response | None = None
        try:
            sent_at = time.perf_counter()
            response = await self._send(ex, fw, upstream_headers(scope["headers"], fw.key, fw.bound))
            await self._answer(scope, send, ex, fw, response, hang_up, sent_at)
        except asyncio.CancelledError:
            if not hang_up.absorb():
                raise
            if hang_up.ended is None:
                ex.status, ex.code = 499, "client_disconnected"
            else:
                await self._ended(scope, send, ex, fw, response, hang_up.ended)
        finally:
            hang_up.stop()
            if live is not None:
                live.discard(hang_up)
            if response is not None:
                response.close()  # to the pool after a complete body; mid-stream it drops the connection

    async def _ended(
        self, scope: Scope, send: Send, ex: Exchange, fw: Forward, response: Response | None, reason: Exception
    ) -> None:
        """The gateway ended the relay (a revocation): before the answer began, the refusal is the
        answer; during an event stream, an event names it; then the response is broken off."""
        assert isinstance(reason, Refusal)
        if ex.status == 0:
            raise reason
        ex.code = reason.code
        if response is not None and "text/event-stream" in first(response.headers, b"content-type").lower():
            await send({"type": "http.response.body", "body": ended_event(reason, ex.request_id), "more_body": True})
        break_off(scope)

    async def _send(self, ex: Exchange, fw: Forward, headers: list[tuple[str, str]]) -> Response:
        ex.forwarded = True
        sent_at = time.perf_counter()
        try:
            response = await self._pool().request(ex.method, fw.target, headers, fw.body.data)
        except UpstreamError as exc:
            ex.forwarded = exc.sent
            raise refusal_for(exc, fw.target.host) from None
        finally:
            # Sent (or never to be): a stream that lasts minutes does not hold its request body.
            fw.body.release()
        ex.ttfb = time.perf_counter() - sent_at
        self._metrics.upstream_ttfb.observe(ex.ttfb)
        return response

    async def _answer(
        self, scope: Scope, send: Send, ex: Exchange, fw: Forward, response: Response, hang_up: HangUp, sent_at: float
    ) -> None:
        if not relayable(response.status, response.headers):
            raise UpstreamUnreachable(f"the upstream's answer is not valid HTTP ({fw.target.host})")
        ex.status = response.status
        ex.code = "ok" if response.status < 400 else "upstream_status"
        tap = fw.tap
        headers = downstream(response.headers)
        if tap is not None:
            tap.start(first(response.headers, b"content-type"))
        # The server frames the body itself when it may shrink (the usage chunk removed); a 204 or
        # 304 has no body, whatever length the upstream names (a 304 may name one), and the server
        # would fail the response for the missing bytes.
        if response.status in (204, 304) or (tap is not None and tap.strip_usage_chunk):
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers += RELAYED
        headers.append((b"x-request-id", ex.request_id.encode()))
        headers += fw.cors.headers(ex.origin, fw.key)
        if response.ready:  # the first body bytes are here: the head goes out with them
            coalesce(scope)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        last = False
        try:
            while not last and (chunk := await response.read()):
                data = tap.feed(chunk) if tap is not None else chunk
                # The body's last bytes end the response in the same message (for a small answer,
                # one send and one write fewer).
                last = response.complete
                if last and tap is not None:
                    data += tap.flush()
                if data or last:
                    ex.bytes_out += len(data)
                    hang_up.finishing = last
                    await send({"type": "http.response.body", "body": data, "more_body": not last})
            if not last and tap is not None and (rest := tap.flush()):
                ex.bytes_out += len(rest)
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        except UpstreamError as exc:
            # The client must see a broken stream, not a clean but truncated end.
            ex.code = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_broken"
            break_off(scope)
            return
        if not last:
            hang_up.finishing = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        self._metrics.upstream_duration.observe(time.perf_counter() - sent_at)
