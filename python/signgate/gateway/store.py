"""Shared state for abuse controls: revocations, nonce uses, request rates, concurrent streams,
token budgets.

One call, :meth:`Store.admit`, checks everything a request needs and, only if all of it passes,
counts it: the revocations that could cover it, a nonce use, a request in this minute and a
concurrent-stream lease for every scope (key, tenant, user). Nothing is counted for a refused
request, so a rate-limited single-use URL can be retried. In memory the check is atomic because
nothing awaits between check and count; in Redis it is one Lua script, so many gateway processes
and hosts enforce the same numbers. A request that needs no counting asks :meth:`Store.revoked`
alone: in memory a dictionary read, in Redis one ``MGET``.

Every entry expires on its own: nonces when their URL does, rate windows after two minutes,
token totals after two days, stream leases unless the owning process keeps refreshing them,
revocations once no URL they cover can still be valid (see :mod:`signgate.revocation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import revocation, storeurl
from ..errors import StoreError
from ..revocation import Attribution, Revocation, RevocationTable

logger = logging.getLogger("signgate.store")

__all__ = ["Admission", "Limits", "MemoryStore", "Nonce", "RedisStore", "Scope", "Store", "StoreError"]

LIMIT_NAMES = ("requests_per_minute", "concurrent_streams", "tokens_per_day")


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits for one scope; ``None`` means unlimited."""

    requests_per_minute: int | None = None
    concurrent_streams: int | None = None
    tokens_per_day: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.requests_per_minute, self.concurrent_streams, self.tokens_per_day))

    def as_tuple(self) -> tuple[int, int, int]:
        """(rpm, concurrent, tokens) with 0 for unlimited, as the Lua script takes them."""
        return (self.requests_per_minute or 0, self.concurrent_streams or 0, self.tokens_per_day or 0)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a limit applies to: ``kind`` is key, tenant or user; ``id`` is unique across keys."""

    kind: str
    id: str
    limits: Limits


@dataclass(frozen=True, slots=True)
class Nonce:
    id: str
    uses: int
    expires_at: int


@dataclass(slots=True)
class Admission:
    """The outcome of :meth:`Store.admit`."""

    admitted: bool
    replayed: bool = False
    limit: str | None = None
    scope: Scope | None = None
    retry_after: int = 0
    lease: str | None = None
    lease_scopes: tuple[Scope, ...] = field(default_factory=tuple)
    revoked: str | None = None  # the kind of subject whose revocation covers the request


def _minute(now: float) -> int:
    return int(now // 60)


def _day(now: float) -> int:
    return int(now // 86400)


def retry_after(limit: str, now: float) -> int:
    if limit == "requests_per_minute":
        return max(1, 60 - int(now % 60))
    if limit == "tokens_per_day":
        return max(1, 86400 - int(now % 86400))
    return 1


class Store(ABC):
    """Where revocations, nonces, counters and usage live."""

    #: The revocations, when this process holds them (the memory store): the request path reads
    #: them without a coroutine. None when they live elsewhere (ask :meth:`revoked`).
    local_revocations: RevocationTable | None = None

    @abstractmethod
    async def admit(
        self, nonce: Nonce | None, scopes: Sequence[Scope], now: float, attribution: Attribution | None = None
    ) -> Admission:
        """Check, and only if everything passes count, one request: with ``attribution``, first
        whether a revocation covers it (then ``revoked`` names the kind and nothing is counted)."""

    @abstractmethod
    async def revoked(self, attribution: Attribution) -> str | None:
        """The kind of subject (key, tenant, user, nonce) whose revocation covers a request so
        attributed, or None."""

    @abstractmethod
    async def revoke(self, kind: str, subject: str, at: int, lifetime: int, now: float) -> Revocation:
        """Revoke URLs of ``subject`` dated at or before ``at``, for at least ``lifetime`` seconds
        (the longest lifetime announced to the store, if longer)."""

    @abstractmethod
    async def revocations(self, now: float, lifetime: int) -> list[Revocation]:
        """The revocations made in the last ``lifetime`` seconds (or the announced lifetime)."""

    async def revocations_version(self) -> int:
        """A number that changes with every revocation (what live-stream watchers poll)."""
        return 0

    async def announce_lifetime(self, seconds: int) -> int:
        """Tell revokers sharing the store how long this gateway's URLs can live (the longest
        announced is kept); returns it."""
        return seconds

    @abstractmethod
    async def release(self, admission: Admission) -> None:
        """End the admission's concurrent-stream leases."""

    @abstractmethod
    async def add_tokens(self, scopes: Sequence[Scope], tokens: int, now: float) -> None:
        """Count ``tokens`` against every scope's daily budget."""

    async def close(self) -> None:  # noqa: B027 - optional for subclasses
        """Release connections."""


class MemoryStore(Store):
    """State in this process only: exact for one worker; each worker counts on its own."""

    def __init__(self) -> None:
        self._nonces: dict[str, tuple[int, int]] = {}
        self._rates: dict[tuple[str, int], int] = {}
        self._streams: dict[str, int] = {}
        self._tokens: dict[tuple[str, int], int] = {}
        self._admits = 0
        self._version = 0
        self.local_revocations: RevocationTable = RevocationTable()

    async def admit(
        self, nonce: Nonce | None, scopes: Sequence[Scope], now: float, attribution: Attribution | None = None
    ) -> Admission:
        self._admits += 1
        if self._admits % 1024 == 0:
            self._sweep(now)
        if attribution is not None and self.local_revocations:
            hit = self.local_revocations.covering(attribution)
            if hit is not None:
                return Admission(admitted=False, revoked=hit.kind)
        if nonce is not None:
            used, _ = self._nonces.get(nonce.id, (0, 0))
            if used >= nonce.uses:
                return Admission(admitted=False, replayed=True)
        minute, day = _minute(now), _day(now)
        for scope in scopes:
            rpm, streams, tokens = scope.limits.as_tuple()
            if rpm and self._rates.get((scope.id, minute), 0) >= rpm:
                return self._denied("requests_per_minute", scope, now)
            if streams and self._streams.get(scope.id, 0) >= streams:
                return self._denied("concurrent_streams", scope, now)
            if tokens and self._tokens.get((scope.id, day), 0) >= tokens:
                return self._denied("tokens_per_day", scope, now)
        if nonce is not None:
            used, _ = self._nonces.get(nonce.id, (0, 0))
            self._nonces[nonce.id] = (used + 1, nonce.expires_at)
        leased = []
        for scope in scopes:
            if scope.limits.requests_per_minute:
                self._rates[(scope.id, minute)] = self._rates.get((scope.id, minute), 0) + 1
            if scope.limits.concurrent_streams:
                self._streams[scope.id] = self._streams.get(scope.id, 0) + 1
                leased.append(scope)
        return Admission(admitted=True, lease="memory" if leased else None, lease_scopes=tuple(leased))

    @staticmethod
    def _denied(limit: str, scope: Scope, now: float) -> Admission:
        return Admission(admitted=False, limit=limit, scope=scope, retry_after=retry_after(limit, now))

    async def release(self, admission: Admission) -> None:
        for scope in admission.lease_scopes:
            left = self._streams.get(scope.id, 0) - 1
            if left > 0:
                self._streams[scope.id] = left
            else:
                self._streams.pop(scope.id, None)

    async def add_tokens(self, scopes: Sequence[Scope], tokens: int, now: float) -> None:
        day = _day(now)
        for scope in scopes:
            if scope.limits.tokens_per_day:
                self._tokens[(scope.id, day)] = self._tokens.get((scope.id, day), 0) + tokens

    async def revoked(self, attribution: Attribution) -> str | None:
        hit = self.local_revocations.covering(attribution) if self.local_revocations else None
        return None if hit is None else hit.kind

    async def revoke(self, kind: str, subject: str, at: int, lifetime: int, now: float) -> Revocation:
        self._version += 1
        return self.local_revocations.add(kind, subject, at, at + lifetime, now)

    async def revocations(self, now: float, lifetime: int) -> list[Revocation]:
        return self.local_revocations.active(now)

    async def revocations_version(self) -> int:
        return self._version

    def _sweep(self, now: float) -> None:
        self.local_revocations.sweep(now)
        self._nonces = {k: v for k, v in self._nonces.items() if v[1] >= now}
        minute, day = _minute(now), _day(now)
        self._rates = {k: v for k, v in self._rates.items() if k[1] >= minute - 1}
        self._tokens = {k: v for k, v in self._tokens.items() if k[1] >= day - 1}

    def size(self) -> int:
        """Entries held; tests check that it does not grow without bound."""
        counters = len(self._nonces) + len(self._rates) + len(self._streams) + len(self._tokens)
        return counters + len(self.local_revocations)


# KEYS[1] = nonce key; then per scope i (0-based): KEYS[2+3i] rate, KEYS[3+3i] streams, KEYS[4+3i] tokens;
#   then the r revocation entries that could cover the request.
# ARGV: now, lease id, lease ttl, nonce uses (0: no nonce), nonce ttl, scope count,
#       then per scope: rpm limit, streams limit, tokens limit (0: unlimited);
#       then X-Sw-Date and r.
# Returns {-2, j} when the j-th revocation entry covers the request, {-1, 0} for a used-up nonce,
# {i, which} when scope i's limit `which` is reached, {0, 0} when admitted (and counted).
_ADMIT = """
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[6])
local r = tonumber(ARGV[8 + 3 * n] or '0')
if r > 0 then
  local signed_at = tonumber(ARGV[7 + 3 * n])
  for j = 1, r do
    local at = redis.call('GET', KEYS[1 + 3 * n + j])
    if at and tonumber(at) >= signed_at then return {-2, j} end
  end
end
local uses = tonumber(ARGV[4])
if uses > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= uses then return {-1, 0} end
for i = 0, n - 1 do
  local rpm, streams, tokens = tonumber(ARGV[7 + 3 * i]), tonumber(ARGV[8 + 3 * i]), tonumber(ARGV[9 + 3 * i])
  if rpm > 0 and tonumber(redis.call('GET', KEYS[2 + 3 * i]) or '0') >= rpm then return {i + 1, 1} end
  if streams > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 + 3 * i], '-inf', now)
    if redis.call('ZCARD', KEYS[3 + 3 * i]) >= streams then return {i + 1, 2} end
  end
  if tokens > 0 and tonumber(redis.call('GET', KEYS[4 + 3 * i]) or '0') >= tokens then return {i + 1, 3} end
end
if uses > 0 then
  redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
end
for i = 0, n - 1 do
  if tonumber(ARGV[7 + 3 * i]) > 0 then
    redis.call('INCR', KEYS[2 + 3 * i])
    redis.call('EXPIRE', KEYS[2 + 3 * i], 120)
  end
  if tonumber(ARGV[8 + 3 * i]) > 0 then
    redis.call('ZADD', KEYS[3 + 3 * i], now + tonumber(ARGV[3]), ARGV[2])
    redis.call('EXPIRE', KEYS[3 + 3 * i], tonumber(ARGV[3]) + 60)
  end
end
return {0, 0}
"""


class RedisStore(Store):
    """State in Redis, shared by every gateway process that points at the same server.

    ``url`` is one server's, a Sentinel service's or a Cluster's (forms in
    :mod:`signgate.gateway.storeurl`). ``namespace`` is the hash tag every key starts with:
    gateways that share a Redis but must not share state use different namespaces.

    Stream leases live ``lease_ttl`` seconds unless refreshed; each process refreshes its own
    every ``lease_ttl / 3`` seconds, so a crashed process's streams stop counting within
    ``lease_ttl``.

    With one server, a process keeps at most ``max_connections`` connections; a request finding
    them all busy waits up to ``timeout`` for one (redis-py's default pool refuses the 101st
    request at once, which turned a burst of requests into 503s). Cluster and Sentinel clients
    keep redis-py's pools, which still refuse past 100 connections per server.
    """

    def __init__(
        self,
        url: str,
        *,
        lease_ttl: int = 90,
        timeout: float = 1.0,
        namespace: str = "signgate",
        max_connections: int = 64,
    ) -> None:
        self._tag = revocation.tag(namespace)
        self._redis, self._sentinel = _connect(storeurl.parse(url), timeout, max_connections)
        self._script = self._redis.register_script(_ADMIT)
        self._revoke_script = self._redis.register_script(revocation.REVOKE_LUA)
        self._announce_script = self._redis.register_script(revocation.ANNOUNCE_LUA)
        self._lease_ttl = lease_ttl
        self._leases: dict[str, tuple[str, ...]] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._pid = os.getpid()
        self._counter = 0
        self._reads = Coalescer(self._mget)

    async def _mget(self, names: list[str]) -> list[Any]:
        try:
            return list(await self._redis.mget(names))
        except Exception as exc:
            raise StoreError(type(exc).__name__) from None

    def _key(self, kind: str, *parts: str | int) -> str:
        """The name of one entry: ``{namespace}:kind:parts...``.

        Every name starts with the same hash tag, so on a Redis Cluster all of them live in one
        slot: the admission script reads and writes a request's nonce, and the key's, tenant's and
        user's counters in one call, and Redis refuses a script whose keys span slots (CROSSSLOT).
        A new kind of entry that the script reads joins the scheme by going through here.
        """
        return ":".join((self._tag, kind, *map(str, parts)))

    def _keys(self, nonce: Nonce | None, scopes: Sequence[Scope], now: float) -> list[str]:
        keys = [self._key("nonce", nonce.id if nonce else "-")]
        minute, day = _minute(now), _day(now)
        for scope in scopes:
            keys += [
                self._key("rate", scope.id, minute),
                self._key("streams", scope.id),
                self._key("tokens", scope.id, day),
            ]
        return keys

    def _covering(self, attribution: Attribution | None) -> list[tuple[str, str]]:
        """The (kind, entry name) of every revocation that could cover a request so attributed."""
        if attribution is None:
            return []
        tag = self._tag
        found = [("key", _entry(tag, "key", attribution.key))]
        if attribution.tenant is not None:
            found.append(("tenant", _entry(tag, "tenant", attribution.tenant)))
        if attribution.user is not None:
            found.append(("user", _entry(tag, "user", attribution.user)))
        if attribution.nonce is not None:
            found.append(("nonce", _entry(tag, "nonce", attribution.nonce)))
        return found

    async def admit(
        self, nonce: Nonce | None, scopes: Sequence[Scope], now: float, attribution: Attribution | None = None
    ) -> Admission:
        self._counter += 1
        lease = f"{self._pid}:{id(self)}:{self._counter}"
        args: list[str | int | float] = [
            now,
            lease,
            self._lease_ttl,
            nonce.uses if nonce else 0,
            max(1, int(nonce.expires_at - now) + 1) if nonce else 1,
            len(scopes),
        ]
        for scope in scopes:
            args.extend(scope.limits.as_tuple())
        keys = self._keys(nonce, scopes, now)
        covering = self._covering(attribution)
        if covering:
            assert attribution is not None
            keys += [name for _, name in covering]
            args += [attribution.signed_at, len(covering)]
        try:
            index, which = await self._script(keys=keys, args=args)
        except Exception as exc:  # redis raises many kinds; all mean the store failed us
            raise StoreError(f"{type(exc).__name__}") from None
        index, which = int(index), int(which)
        if index == -2:
            return Admission(admitted=False, revoked=covering[which - 1][0])
        if index == -1:
            return Admission(admitted=False, replayed=True)
        if index > 0:
            limit = LIMIT_NAMES[which - 1]
            return Admission(admitted=False, limit=limit, scope=scopes[index - 1], retry_after=retry_after(limit, now))
        streams = tuple(s for s in scopes if s.limits.concurrent_streams)
        if not streams:
            return Admission(admitted=True)
        self._leases[lease] = tuple(self._key("streams", s.id) for s in streams)
        self._ensure_refresher()
        return Admission(admitted=True, lease=lease, lease_scopes=streams)

    async def revoked(self, attribution: Attribution) -> str | None:
        covering = self._covering(attribution)
        values = await self._reads.get([name for _, name in covering])
        for (kind, _), value in zip(covering, values, strict=True):
            if value is not None and int(value) >= attribution.signed_at:
                return kind
        return None

    async def revoke(self, kind: str, subject: str, at: int, lifetime: int, now: float) -> Revocation:
        tag = self._tag
        keys = [
            revocation.entry_name(tag, kind, subject),
            revocation.log_name(tag),
            revocation.version_name(tag),
            revocation.lifetime_name(tag),
        ]
        try:
            args = [at, lifetime, 0, revocation.member(kind, subject), lifetime]
            got_at, ttl = await self._revoke_script(keys=keys, args=args)
        except Exception as exc:
            raise StoreError(type(exc).__name__) from None
        return Revocation(kind, subject, int(got_at), int(now) + int(ttl))

    async def revocations(self, now: float, lifetime: int) -> list[Revocation]:
        try:
            announced = await self._redis.get(revocation.lifetime_name(self._tag))
            lifetime = max(lifetime, int(announced or 0))
            log = await self._redis.zrangebyscore(
                revocation.log_name(self._tag), now - lifetime, "+inf", withscores=True
            )
        except Exception as exc:
            raise StoreError(type(exc).__name__) from None
        return [r for r in revocation.from_log(log, lifetime) if r.expires_at > now]

    async def revocations_version(self) -> int:
        try:
            return int(await self._redis.get(revocation.version_name(self._tag)) or 0)
        except Exception as exc:
            raise StoreError(type(exc).__name__) from None

    async def announce_lifetime(self, seconds: int) -> int:
        try:
            return int(await self._announce_script(keys=[revocation.lifetime_name(self._tag)], args=[seconds]))
        except Exception as exc:
            raise StoreError(type(exc).__name__) from None

    async def release(self, admission: Admission) -> None:
        if admission.lease is None:
            return
        keys = self._leases.pop(admission.lease, ())
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zrem(key, admission.lease)
                await pipe.execute()
        except Exception as exc:  # the lease expires on its own
            logger.warning("could not release a stream lease (%s); it expires within %s s", type(exc).__name__,
                           self._lease_ttl)  # fmt: skip

    async def add_tokens(self, scopes: Sequence[Scope], tokens: int, now: float) -> None:
        day = _day(now)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for scope in scopes:
                    if scope.limits.tokens_per_day:
                        key = self._key("tokens", scope.id, day)
                        pipe.incrby(key, tokens)
                        pipe.expire(key, 2 * 86400)
                await pipe.execute()
        except Exception as exc:
            raise StoreError(type(exc).__name__) from None

    def _ensure_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_leases())

    async def _refresh_leases(self) -> None:
        while self._leases:
            await asyncio.sleep(self._lease_ttl / 3)
            until = time.time() + self._lease_ttl
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for lease, keys in list(self._leases.items()):
                        for key in keys:
                            pipe.zadd(key, {lease: until}, xx=True)
                    await pipe.execute()
            except Exception as exc:
                logger.warning("could not refresh stream leases (%s)", type(exc).__name__)

    async def close(self) -> None:
        await self._reads.close()
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self._redis.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()


class Coalescer:
    """Reads for many requests in one command: a request that asks while a read is in flight
    waits for it to end, then goes in the next read with every other request that asked
    meanwhile. Each read is sent after every request in it arrived, so none reads older state
    than it would alone; a request alone goes at once.

    redis-py spends about 100 µs of CPU on a command, as much as the rest of a small request:
    under load one ``MGET`` then serves the revocation check of every request that arrived
    during the previous one's round trip."""

    __slots__ = ("_read", "_running", "_waiting")

    def __init__(self, read: Callable[[list[str]], Awaitable[list[Any]]]) -> None:
        self._read = read
        self._waiting: list[tuple[list[str], asyncio.Future[list[Any]]]] = []
        self._running: asyncio.Task[None] | None = None

    async def get(self, names: list[str]) -> list[Any]:
        """The values of ``names``, in order; raises what the read raises (StoreError)."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((names, future))
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                names = list(dict.fromkeys(name for wanted, _ in batch for name in wanted))
                try:
                    values = dict(zip(names, await self._read(names), strict=True))
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            # A fresh exception each: one raised in many tasks would gather all their tracebacks.
                            future.set_exception(type(exc)(*exc.args))
                    continue
                for wanted, future in batch:
                    if not future.done():  # its request may have been cancelled meanwhile
                        future.set_result([values[name] for name in wanted])
        finally:
            self._running = None

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running


#: Entry names repeat from request to request (a key's, a tenant's, an active user's): percent-encoding
#: them once is enough.
_entry = functools.lru_cache(maxsize=8192)(revocation.entry_name)


def _connect(url: storeurl.StoreURL, timeout: float, max_connections: int) -> tuple[Any, Any]:
    """A redis.asyncio client for the URL, and the Sentinel client behind it (or None).

    Every connection, to a server, a cluster node or a sentinel, gives up after ``timeout``
    seconds, so an unreachable store fails a request (503 store_unavailable) instead of holding it.
    Only the one-server pool waits for a free connection; the cluster's and Sentinel's pools are
    redis-py's, which refuse a command past their 100 connections per server at once.
    """
    if url.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in url.nodes]
        cluster = RedisCluster(
            startup_nodes=nodes,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            username=url.username,
            password=url.password,
        )
        return cluster, None
    if url.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        assert url.service is not None
        # The sentinels get the timeouts but not the password: it is the master's.
        sentinel = Sentinel(list(url.nodes), socket_timeout=timeout, socket_connect_timeout=timeout)
        master = sentinel.master_for(
            url.service,
            db=url.db,
            username=url.username,
            password=url.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        return master, sentinel
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        url.text,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return aioredis.Redis.from_pool(pool), None
