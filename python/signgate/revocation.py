"""Revocation: taking signed URLs back before they expire.

A revocation names a subject, exactly as a URL's signature binds it (a key id, a tenant, a user
or a nonce), and a second: it covers every URL of that subject dated (``X-Sw-Date``) at or before
that second, and nothing signed later. The gateway refuses a covered URL with ``401 revoked``.

A revocation is kept for as long as a URL it covers could still be valid: the longest lifetime a
gateway accepts, plus its clock-skew allowance, plus the second of rounding. Then it goes by
itself, so the store does not grow without bound.

Subjects are matched byte for byte: ids are case-sensitive and are never trimmed, folded or
decoded, because the gateway compares them with the value the signature covers. An id the signer
could never bind (empty, too long, spaces or control characters) is refused here, since revoking
it would silently cover nothing.

:class:`Revoker` revokes in the Redis the gateways share, from a backend or ``signgate revoke``.
It needs only the ``redis`` extra; this module imports nothing outside the standard library until
a Revoker is made.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

from . import _extras, storeurl
from .errors import RevocationError, StoreError

__all__ = [
    "DEFAULT_LIFETIME",
    "KINDS",
    "Attribution",
    "Revocation",
    "RevocationTable",
    "Revoker",
    "check_subject",
]

#: The subjects a revocation can name, in the order a request is checked.
KINDS = ("key", "tenant", "user", "nonce")

#: How long a revocation lives when no gateway has said how long its URLs can live: the default
#: ``max_expires`` (3600 s), plus the default clock skew (60 s), plus one second of rounding.
DEFAULT_LIFETIME = 3600 + 60 + 1

# What the signer binds (signgate.extensions): 1 to 128 visible ASCII characters for a tenant or
# a user, 8 to 64 for a nonce. A key id is what X-Sw-Credential carries before its '/'.
_ID = re.compile(r"[!-~]{1,128}")
_NONCE = re.compile(r"[!-~]{8,64}")
_KEY = re.compile(r"[!-.0-~]{1,256}")  # visible ASCII without '/'


class Attribution(NamedTuple):
    """What one verified request is attributed to, as signed: its key id, tenant, user and nonce
    (None when not bound) and its ``X-Sw-Date`` in epoch seconds. A tuple: one is made for every
    request, and a tuple is made for a fraction of a frozen dataclass's cost."""

    key: str
    tenant: str | None
    user: str | None
    nonce: str | None
    signed_at: int

    def subject(self, kind: str) -> str | None:
        return getattr(self, kind)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation: URLs of ``kind`` ``id`` dated at or before ``at`` are refused, until
    ``expires_at`` (epoch seconds), when none of them can be valid any more."""

    kind: str
    id: str
    at: int
    expires_at: int

    def covers(self, attribution: Attribution) -> bool:
        return attribution.signed_at <= self.at and attribution.subject(self.kind) == self.id

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "at": self.at, "expires_at": self.expires_at}


def check_subject(kind: str, value: object) -> str:
    """``value`` as a subject of ``kind``, unchanged; raises RevocationError naming what is wrong.

    Nothing is trimmed or folded: the gateway compares the id with the signed value byte for byte,
    so ``Alice`` and ``alice`` are two users, and an id with a space could never match."""
    if kind not in KINDS:
        raise RevocationError(kind, f"is not something to revoke; revoke one of {', '.join(KINDS)}")
    if not isinstance(value, str):
        raise RevocationError(kind, f"must be a string, got {type(value).__name__}")
    pattern, form = {
        "key": (_KEY, "1 to 256 visible ASCII characters without '/'"),
        "tenant": (_ID, "1 to 128 visible ASCII characters (no spaces), as the signer binds it"),
        "user": (_ID, "1 to 128 visible ASCII characters (no spaces), as the signer binds it"),
        "nonce": (_NONCE, "8 to 64 visible ASCII characters, as the signer binds it"),
    }[kind]
    if not pattern.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise RevocationError(kind, f"{shown!r} can never match a signed URL: it must be {form}")
    return value


def one_subject(subjects: dict[str, str | None]) -> tuple[str, str]:
    """The one (kind, id) given among ``subjects`` (kind -> id or None), checked."""
    given = [(kind, value) for kind, value in subjects.items() if value is not None]
    if len(given) != 1:
        names = ", ".join(f"{k}" for k, _ in given) or "none"
        raise RevocationError("subject", f"name exactly one of {', '.join(KINDS)} to revoke (got: {names})")
    kind, value = given[0]
    return kind, check_subject(kind, value)


class RevocationTable:
    """Revocations held in this process: the memory store's, or a gateway's copy of the recent
    ones for ending live streams. A lookup is one dictionary read per bound subject; an empty
    table is falsy, so the request path skips it at the cost of one truth test."""

    __slots__ = ("_count", "_kinds", "_next_expiry")

    def __init__(self) -> None:
        # kind -> id -> (at, expires_at)
        self._kinds: dict[str, dict[str, tuple[int, int]]] = {kind: {} for kind in KINDS}
        self._count = 0
        self._next_expiry = float("inf")  # when the next sweep has something to forget

    def __len__(self) -> int:
        return self._count

    def add(self, kind: str, subject: str, at: int, expires_at: int, now: float) -> Revocation:
        """Record a revocation (an earlier one of the same subject is widened, never narrowed)."""
        self.sweep(now)
        table = self._kinds[kind]
        old = table.get(subject)
        if old is not None:
            at, expires_at = max(at, old[0]), max(expires_at, old[1])
        else:
            self._count += 1
        table[subject] = (at, expires_at)
        self._next_expiry = min(self._next_expiry, expires_at)
        return Revocation(kind, subject, at, expires_at)

    def covering(self, attribution: Attribution) -> Revocation | None:
        """The revocation that covers a request so attributed, if any."""
        for kind, subject in (
            ("key", attribution.key),
            ("tenant", attribution.tenant),
            ("user", attribution.user),
            ("nonce", attribution.nonce),
        ):
            if subject is not None:
                found = self._kinds[kind].get(subject)
                if found is not None and attribution.signed_at <= found[0]:
                    return Revocation(kind, subject, *found)
        return None

    def sweep(self, now: float) -> None:
        """Forget the revocations that cover nothing still valid."""
        if now < self._next_expiry:
            return
        kinds = {kind: {k: v for k, v in table.items() if v[1] > now} for kind, table in self._kinds.items()}
        self.replace_tables(kinds)

    def active(self, now: float) -> list[Revocation]:
        return [
            Revocation(kind, subject, at, expires_at)
            for kind, table in self._kinds.items()
            for subject, (at, expires_at) in table.items()
            if expires_at > now
        ]

    def replace(self, revocations: Iterable[Revocation]) -> None:
        """Hold exactly ``revocations`` (a fresh copy of the store's)."""
        kinds: dict[str, dict[str, tuple[int, int]]] = {kind: {} for kind in KINDS}
        for r in revocations:
            kinds[r.kind][r.id] = (r.at, r.expires_at)
        self.replace_tables(kinds)

    def replace_tables(self, kinds: dict[str, dict[str, tuple[int, int]]]) -> None:
        self._kinds = kinds
        self._count = sum(len(t) for t in kinds.values())
        self._next_expiry = min((e for t in kinds.values() for _, e in t.values()), default=float("inf"))


# -- in Redis -------------------------------------------------------------------------------------
#
# Every name starts with the namespace's hash tag (see signgate.gateway.store.RedisStore), so on a
# Cluster they all live in one slot and the admission script can read revocations too:
#   {ns}:revoked:<kind>:<id, percent-encoded>   the revocation's second; expires with it
#   {ns}:revocations                            sorted set of <kind>:<id> by second: the recent ones
#   {ns}:revocations:version                    bumped by every revocation (live-stream watchers poll it)
#   {ns}:revocation-lifetime                    the longest lifetime (s) any gateway has announced


def tag(namespace: str) -> str:
    if not namespace or "{" in namespace or "}" in namespace:
        raise ValueError(f"namespace {namespace!r} must be non-empty and hold no braces: it is the hash tag")
    return "{" + namespace + "}"


def entry_name(hash_tag: str, kind: str, subject: str) -> str:
    # Percent-encoding every byte but the unreserved ones keeps distinct ids distinct names.
    return f"{hash_tag}:revoked:{kind}:{quote(subject, safe='')}"


def log_name(hash_tag: str) -> str:
    return f"{hash_tag}:revocations"


def version_name(hash_tag: str) -> str:
    return f"{hash_tag}:revocations:version"


def lifetime_name(hash_tag: str) -> str:
    return f"{hash_tag}:revocation-lifetime"


def member(kind: str, subject: str) -> str:
    return f"{kind}:{quote(subject, safe='')}"


def parse_member(text: str | bytes) -> tuple[str, str] | None:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    kind, sep, encoded = text.partition(":")
    return (kind, unquote(encoded)) if sep and kind in KINDS else None


# KEYS: entry, log, version, lifetime. ARGV: at, lifetime when none is announced, lifetime to use
# whatever is announced (or 0), log member, least lifetime (or 0: a gateway's own, in case its
# announcement failed).
# Returns {at, ttl}: the revocation's second (a later one already there is kept) and its life.
REVOKE_LUA = """
local at = tonumber(ARGV[1])
local ttl = tonumber(ARGV[3])
if ttl <= 0 then
  ttl = math.max(tonumber(redis.call('GET', KEYS[4]) or ARGV[2]), tonumber(ARGV[5] or '0'))
end
local old = tonumber(redis.call('GET', KEYS[1]) or '-1')
local extra = 0
if old > at then extra = old - at; at = old end
redis.call('SET', KEYS[1], at, 'EX', ttl + extra)
redis.call('ZADD', KEYS[2], at, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]) - ttl)
redis.call('EXPIRE', KEYS[2], ttl + extra)
redis.call('INCR', KEYS[3])
return {at, ttl + extra}
"""

# KEYS: lifetime. ARGV: this gateway's longest lifetime. Keeps the largest ever announced.
ANNOUNCE_LUA = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1])
end
return tonumber(redis.call('GET', KEYS[1]))
"""


def from_log(entries: Iterable[tuple[Any, Any]], lifetime: int) -> list[Revocation]:
    """The revocations of ``{ns}:revocations`` (member, score pairs)."""
    out = []
    for raw, score in entries:
        parsed = parse_member(raw)
        if parsed is not None:
            at = int(float(score))
            out.append(Revocation(parsed[0], parsed[1], at, at + lifetime))
    return out


class Revoker:
    """Revokes signed URLs in the Redis that the gateways share (``--store``)::

        from signgate import Revoker

        revoker = Revoker("redis://127.0.0.1:6379/0")
        revoker.revoke(user="user-42")    # or tenant=..., key=..., nonce=...

    ``store_url`` takes the forms of ``signgate serve --store`` (one server, Sentinel or Cluster);
    ``namespace`` must match the gateways'. A revocation lives as long as the longest URL lifetime
    any gateway sharing the store has announced (or ``lifetime`` seconds, when given). Needs the
    ``redis`` extra (``pip install 'signgate[redis]'``). Store failures raise
    :class:`~signgate.errors.StoreError` (its message never shows the URL's password).
    """

    def __init__(
        self,
        store_url: str,
        *,
        namespace: str = "signgate",
        lifetime: int | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = storeurl.parse(store_url)
        if url.kind == "memory":
            raise RevocationError(
                "store",
                "a memory store lives inside one gateway process and cannot be reached from here: revoke through "
                "that gateway's admin endpoint (signgate revoke --admin URL), or share a Redis (--store redis://...)",
            )
        missing = _extras.missing("redis")
        if missing:
            raise ImportError(f"signgate.Revoker {_extras.missing_message('redis', missing)}")
        if lifetime is not None and (type(lifetime) is not int or lifetime < 1):
            raise RevocationError("lifetime", f"must be a whole number of seconds, at least 1, got {lifetime!r}")
        self._url = url
        self._tag = tag(namespace)
        self._lifetime = lifetime
        self._clock = clock
        self._sleep = sleep
        self._redis = _sync_client(url, timeout)

    def revoke(
        self,
        *,
        key: str | None = None,
        tenant: str | None = None,
        user: str | None = None,
        nonce: str | None = None,
        wait: bool = True,
    ) -> Revocation:
        """Revoke every URL of one subject signed until now; returns the revocation.

        With ``wait`` (the default) it returns only once the revocation's second has passed, so
        that a URL signed after the call returns is never covered (``X-Sw-Date`` counts whole
        seconds): at most one second.
        """
        kind, subject = one_subject({"key": key, "tenant": tenant, "user": user, "nonce": nonce})
        now = self._clock()
        at = int(now)
        names = [entry_name(self._tag, kind, subject), log_name(self._tag), version_name(self._tag)]
        names.append(lifetime_name(self._tag))
        args = [at, DEFAULT_LIFETIME, self._lifetime or 0, member(kind, subject)]
        result = self._call(lambda: self._redis.eval(REVOKE_LUA, len(names), *names, *args))
        at, ttl = int(result[0]), int(result[1])
        if wait:
            self._sleep(max(0.0, at + 1 - self._clock()))
        return Revocation(kind, subject, at, int(now) + ttl)

    def revocations(self) -> list[Revocation]:
        """The revocations in force, oldest first."""
        now = self._clock()
        lifetime = self._lifetime or int(self._call(lambda: self._redis.get(lifetime_name(self._tag))) or 0)
        lifetime = lifetime or DEFAULT_LIFETIME
        log = self._call(
            lambda: self._redis.zrangebyscore(log_name(self._tag), now - lifetime, "+inf", withscores=True)
        )
        return [r for r in from_log(log, lifetime) if r.expires_at > now]

    def close(self) -> None:
        self._call(self._redis.close)

    def __enter__(self) -> Revoker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, command: Callable[[], Any]) -> Any:
        try:
            return command()
        except Exception as exc:  # redis raises many kinds; all mean the store failed us
            raise StoreError(f"the store {storeurl.shown(self._url.text)} failed: {type(exc).__name__}") from None


def _sync_client(url: storeurl.StoreURL, timeout: float) -> Any:
    """A synchronous redis-py client for ``url`` (one server, Sentinel or Cluster)."""
    if url.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in url.nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(
            startup_nodes=nodes,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            username=url.username,
            password=url.password,
        )
    if url.kind == "sentinel":
        from redis.sentinel import Sentinel

        assert url.service is not None
        sentinel = Sentinel(list(url.nodes), socket_timeout=timeout, socket_connect_timeout=timeout)
        return sentinel.master_for(
            url.service,
            db=url.db,
            username=url.username,
            password=url.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    import redis

    return redis.Redis.from_url(url.text, socket_timeout=timeout, socket_connect_timeout=timeout)
