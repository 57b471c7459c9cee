"""Admission: what a URL's signature and bound extensions ask of the store, asked in one step.

:class:`Extensions` reads a verified request's ``x-signgate-*`` headers; :func:`limit_scopes`
names the key, tenant and user counters the request counts against; :class:`Admitter` checks the
revocations, the nonce and every limit, and counts them, in one call to the store (exact under
concurrency), and releases the request's stream leases when it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from .. import extensions
from ..errors import LimitExceeded, MalformedRequest, Replayed, Revoked, StoreError, StoreUnavailable
from ..extensions import PolicyRules
from ..revocation import Attribution
from ..verifier import VerifiedRequest
from .config import KeyConfig
from .metrics import Metrics
from .store import Admission, Nonce, Store
from .store import Scope as LimitScope

logger = logging.getLogger("signgate.gateway")


@dataclass(frozen=True, slots=True)
class Extensions:
    """signgate's bound extensions of one request (see :mod:`signgate.extensions`)."""

    nonce: Nonce | None = None
    user: str | None = None
    tenant: str | None = None
    policy: PolicyRules | None = None
    nonce_value: str | None = None  # the nonce as signed (``nonce.id`` is scoped to the key)

    @classmethod
    def from_verified(cls, verified: VerifiedRequest) -> Extensions:
        """Read the extensions the signature binds; raises MalformedRequest for a bad one."""
        bound = verified.bound_headers
        for name in bound:
            if name.startswith(extensions.PREFIX):
                break
        else:
            return NO_EXTENSIONS
        nonce = None
        if extensions.NONCE in bound:
            uses_text = bound.get(extensions.USES, "1")
            # ASCII digits only: isdigit() also takes '³', which int() does not.
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
        nonce_value = None if nonce is None else bound[extensions.NONCE]
        return cls(nonce, bound.get(extensions.USER), bound.get(extensions.TENANT), policy, nonce_value)


NO_EXTENSIONS = Extensions()  # most requests: shared, as it is frozen


def scope_id(*parts: str) -> str:
    """Ids joined so that no two different tuples give the same string: each part is
    percent-encoded (``:`` and ``%`` included), then joined with ``:``."""
    return ":".join(quote(part, safe="") for part in parts)


def limit_scopes(key: KeyConfig, ext: Extensions) -> list[LimitScope]:
    """The counters a request of ``key`` with ``ext`` counts against: the key's, its tenant's, its
    user's, wherever the key has limits for them."""
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


class Admitter:
    """Admits requests through the store; failures of the store close the gateway (503) unless
    ``fail_open``, and are counted in the metrics either way."""

    __slots__ = ("_clock", "_fail_open", "_metrics", "_store")

    def __init__(self, store: Callable[[], Store], metrics: Metrics, *, fail_open: bool, clock: Callable[[], float]):
        self._store = store
        self._metrics = metrics
        self._fail_open = fail_open
        self._clock = clock

    async def admit(
        self, nonce: Nonce | None, scopes: list[LimitScope], attribution: Attribution | None = None
    ) -> Admission | None:
        """Count the request, or raise Revoked, Replayed, LimitExceeded or StoreUnavailable
        (nothing is counted for a refused request). None when nothing needed counting.

        With ``attribution`` (the gateway always gives it) the revocations are checked too: with
        the memory store a dictionary read (nothing at all while none is in force), with Redis
        folded into the admission script, or one ``MGET`` for a request that counts nothing, so
        such a request then waits for the store as well."""
        store = self._store()
        if nonce is None and not scopes:
            if attribution is None:
                return None
            table = store.local_revocations
            if table is not None:
                if table and (hit := table.covering(attribution)) is not None:
                    raise Revoked(hit.kind)
                return None
            try:
                revoked = await store.revoked(attribution)
            except StoreError as exc:
                self._store_failed(exc)
                return None
            if revoked is not None:
                raise Revoked(revoked)
            return None
        try:
            admission = await store.admit(nonce, scopes, self._clock(), attribution)
        except StoreError as exc:
            self._store_failed(exc)
            return None
        if admission.revoked is not None:
            raise Revoked(admission.revoked)
        if admission.replayed:
            raise Replayed("this signed URL has been used as often as it may be; ask the backend for a new one")
        if not admission.admitted:
            assert admission.scope is not None and admission.limit is not None
            limit = getattr(admission.scope.limits, admission.limit)
            raise LimitExceeded(admission.limit, admission.scope.kind, limit, admission.retry_after)
        return admission

    def _store_failed(self, exc: StoreError) -> None:
        """Count a store failure; serve on (fail open) or raise StoreUnavailable."""
        self._metrics.store_errors += 1
        if self._fail_open:
            logger.warning("store unavailable (%s): serving without limits or revocations (--store-fail-open)", exc)
            return
        raise StoreUnavailable("the gateway's store is unavailable; retry shortly", retry_after=1) from None

    async def release(self, admission: Admission | None) -> None:
        """End the request's stream leases."""
        if admission is not None and admission.lease is not None:
            await self.quietly(self._store().release(admission))

    async def charge(self, scopes: list[LimitScope], tokens: int) -> None:
        """Count ``tokens`` against the token budgets of ``scopes``; a store failure is counted,
        not raised (the answer has been given)."""
        await self.quietly(self._store().add_tokens(scopes, tokens, self._clock()))

    async def quietly(self, update: Awaitable[None]) -> None:
        """Await a store update whose failure must not fail the request (it is counted instead)."""
        try:
            await update
        except StoreError:
            self._metrics.store_errors += 1
