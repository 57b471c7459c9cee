"""What the gateway reads of a body, and what it counts when the answer is done.

:func:`read_json` is the policy step: it reads a body once, strictly, enforces the bound policy and
sets up the usage tap (asking a streaming upstream for usage when budgets or billing need it).
:class:`Accounts` is the accounting step: the tap's tokens go to the metrics, the token budgets,
the usage hook and the usage webhook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import strict_json
from ..errors import UnsupportedEncoding
from ..providers import find_upstream
from .admission import Admitter, Extensions
from .body import Body
from .config import GatewayConfig, KeyConfig
from .metrics import Metrics
from .policy import enforce, view
from .store import Scope as LimitScope
from .usage import UsageRecord, UsageTap

logger = logging.getLogger("signgate.gateway")


def read_json(
    body: Body, headers: Mapping[str, str], ext: Extensions, wants_usage: bool, method: str, target: str
) -> UsageTap | None:
    """Read the body, enforce the policy, and set up the accounting for a ``method`` request to
    the upstream path (and query) ``target``; returns the tap (None when nothing is counted).

    The API is the one ``target`` names (:func:`signgate.providers.find_upstream`): its
    provider says where the policy's rules and the usage are in the body and in the answer.

    Policies, budgets and usage sinks need one reading of the body that the upstream cannot read
    another way: a body that is, or claims to be, JSON is read by strict_json, and any failure
    refuses the request (InvalidJSON, PolicyViolation, UnsupportedEncoding). With none of them
    (metrics only), an unreadable body is counted by its size instead."""
    controlled = ext.policy is not None or wants_usage
    if not body.data and not controlled:
        return None
    coding = headers.get("content-encoding", "").strip(" \t").lower()
    if controlled and body.data and coding not in ("", "identity"):
        # An upstream that inflates the body (aiohttp, cpp-httplib with zlib, some proxies)
        # would read a prompt the gateway counted by its compressed size.
        raise UnsupportedEncoding(
            f"the body is sent with Content-Encoding {coding[:40]!r}; the gateway's policies and token budgets "
            "read the body, so send it uncompressed"
        )
    data: Any = None
    if body.data:
        if controlled and (ext.policy is not None or claims_json(body.data, headers.get("content-type", ""))):
            data = strict_json.loads(body.data)
        elif not controlled:
            # Counted for the metrics only, never enforced or rewritten: any reading will do.
            try:
                data = json.loads(body.data)
            except (ValueError, RecursionError):
                data = None  # counted by its size
    found = find_upstream(method, target)
    changed = False
    if ext.policy is not None:
        changed = enforce(ext.policy, data, found)
    elif controlled and (governed := view(data, found)) is not None:
        governed.check_spelling()  # the keys the accounting reads (stream, model) are read one way
    tap, asked = UsageTap.for_request(data, len(body.data), wants_usage, found)
    if changed or asked:
        # Written back, a number takes its full form (1e15 becomes 1000000000000000.0, 4.5 times
        # as long): the worker's share of held bytes grows with it.
        body.replace(strict_json.dumps(data))
    return tap


def claims_json(body: bytes, content_type: str) -> bool:
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


def usage_keys(config: GatewayConfig) -> frozenset[str]:
    """The keys whose requests budgets or billing account for (and whose streams are asked for
    usage): every key when a usage hook or webhook is set, else the keys with token budgets."""
    sinks = config.usage_hook is not None or config.usage_webhook is not None
    return frozenset(k.id for k in config.keys.values() if sinks or k.has_budgets)


class Accounts:
    """Where usage goes: metrics, budgets in the store, the usage hook and the usage webhook.

    The webhook is the operator's own endpoint (it may be private, so it is not reached through
    the upstream pool and its address guard); records wait in a bounded queue, and one task
    posts them with httpx, one at a time."""

    def __init__(self, config: GatewayConfig, metrics: Metrics, admitter: Admitter, clock: Callable[[], float]):
        self._hook = config.usage_hook
        self._webhook = config.usage_webhook
        self._metrics = metrics
        self._admitter = admitter
        self._clock = clock
        self._queue: asyncio.Queue[UsageRecord] | None = None
        self.background: set[asyncio.Task[Any]] = set()
        #: Keys whose requests budgets or billing account for (and whose streams are asked for usage).
        self.usage_keys = usage_keys(config)

    async def account(
        self, request_id: str, status: int, code: str, key: KeyConfig, ext: Extensions, scopes: list[LimitScope],
        tap: UsageTap,
    ) -> None:  # fmt: skip
        tap.finish()
        prompt, completion, total, estimated = tap.tokens()
        self._metrics.count_tokens(key.id, prompt, completion, estimated)
        budgets = [s for s in scopes if s.limits.tokens_per_day]
        if budgets and total:
            await self._admitter.charge(budgets, total)
        if self._hook is None and self._webhook is None:
            return
        record = UsageRecord(
            request_id=request_id, key_id=key.id, tenant=ext.tenant, user=ext.user, model=tap.model,
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=total, estimated=estimated,
            status=status, code=code, ts=round(time.time(), 3),
        )  # fmt: skip
        if self._hook is not None:
            try:
                result = self._hook(record)
                if asyncio.iscoroutine(result):
                    self._spawn(result)
            except Exception:
                logger.exception("the usage hook failed")
        if self._webhook is not None:
            self._queue_webhook(record)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _queue_webhook(self, record: UsageRecord) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=10_000)
            self._spawn(self._deliver(self._queue))
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._metrics.webhook_dropped += 1

    async def _deliver(self, queue: asyncio.Queue[UsageRecord]) -> None:
        import httpx  # only a gateway with a webhook needs it

        assert self._webhook is not None
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
            while True:
                record = await queue.get()
                try:
                    response = await client.post(self._webhook, json=record.to_dict())
                    if response.status_code >= 300:
                        self._metrics.webhook_failed += 1
                except (httpx.HTTPError, OSError):
                    self._metrics.webhook_failed += 1

    async def aclose(self) -> None:
        for task in list(self.background):
            task.cancel()
