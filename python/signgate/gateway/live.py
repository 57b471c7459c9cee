"""The streams in flight and what they are attributed to, so that a revocation can end them.

Only with ``--revoke-live``: otherwise a revocation refuses new requests and lets the streams
already admitted finish. Each relayed stream registers its :class:`~.asgi.HangUp` (which can cancel
it) with its :class:`~signgate.revocation.Attribution`; :meth:`LiveStreams.end` stops every one a
revocation covers. The relay then tells the client with an SSE event (see :func:`ended_event`),
or, for an answer that is not an event stream, by breaking the response off.

Revocations reach a gateway process in two ways: made by this process (the admin endpoint), they
end its streams at once; made elsewhere in a shared Redis, they are found by :meth:`watch`,
which polls the store's revocation counter (one ``GET`` a second) and, when it moves, reads the
recent revocations. ``recent`` keeps that copy, so a stream admitted just before a revocation
but registered just after the poll is still ended when it registers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable

from ..errors import Refusal, Revoked, StoreError
from ..revocation import Attribution, Revocation, RevocationTable
from .asgi import HangUp
from .metrics import Metrics
from .store import Store

logger = logging.getLogger("signgate.gateway")

#: The SSE event name that carries a gateway's error in the middle of a stream.
EVENT = "signgate-error"


def ended_event(refusal: Refusal, request_id: str) -> bytes:
    """The event that tells an event-stream client why the gateway ended its stream: its data is
    the refusal's JSON answer and its HTTP status. Two line ends come first: they end whatever
    line or event the upstream left unfinished (an event without data is dropped by SSE parsers),
    so the event always starts on a boundary."""
    error = {"code": refusal.code, "message": refusal.message, "request_id": request_id, **refusal.details}
    data = json.dumps({"error": error, "status": refusal.status})
    return f"\n\nevent: {EVENT}\ndata: {data}\n\n".encode()


class LiveStreams:
    """The streams of one gateway process, by their attribution."""

    __slots__ = ("_metrics", "_streams", "recent")

    def __init__(self, metrics: Metrics) -> None:
        self._streams: dict[HangUp, Attribution] = {}
        self._metrics = metrics
        self.recent = RevocationTable()  # the store's recent revocations, as last read

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: HangUp, attribution: Attribution) -> Revocation | None:
        """Register a stream; returns the revocation that covers it already, if any (then it is
        not registered: the caller refuses it)."""
        if self.recent:
            hit = self.recent.covering(attribution)
            if hit is not None:
                return hit
        self._streams[stream] = attribution
        return None

    def discard(self, stream: HangUp) -> None:
        self._streams.pop(stream, None)

    def end(self, revocations: Iterable[Revocation]) -> int:
        """End every registered stream one of ``revocations`` covers; returns how many. One pass
        over the streams, a dictionary read or four each, however many revocations there are."""
        table = RevocationTable()
        table.replace(revocations)
        if not table or not self._streams:
            return 0
        ended = 0
        for stream, attribution in list(self._streams.items()):
            hit = table.covering(attribution)
            if hit is not None and stream.end(Revoked(hit.kind)):
                del self._streams[stream]
                ended += 1
        self._metrics.streams_revoked += ended
        return ended

    async def watch(self, store: Callable[[], Store], lifetime: Callable[[], int], clock: Callable[[], float],
                    interval: float = 1.0) -> None:  # fmt: skip
        """Poll the store for revocations made elsewhere and end the streams they cover (until
        cancelled). A store failure is logged once per outage and retried at the next tick."""
        version: int | None = None
        seen: dict[tuple[str, str], int] = {}  # (kind, id) -> the second last read
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                current = await store().revocations_version()
                if current != version:
                    revocations = await store().revocations(clock(), lifetime())
                    self.recent.replace(revocations)
                    version = current
                    # Only what is new can cover a stream not ended yet: the streams admitted
                    # since an older revocation was read were checked against it.
                    fresh = [r for r in revocations if seen.get((r.kind, r.id), -1) < r.at]
                    seen = {(r.kind, r.id): r.at for r in revocations}
                    ended = self.end(fresh)
                    if ended:
                        logger.info("ended %d live stream(s) covered by a revocation", ended)
                elif self.recent:
                    self.recent.sweep(clock())
                failing = False
            except StoreError as exc:
                if not failing:
                    logger.warning("cannot read revocations from the store (%s): live streams are not checked", exc)
                failing = True
