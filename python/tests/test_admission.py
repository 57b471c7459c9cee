"""The admission step (signgate.gateway.admission): the bound extensions read from a verified
request, the limit scopes they count against, and the Admitter against real stores: the memory
store and, parametrised, a real redis-server (test_store.py checks the stores' own contract)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TypeVar

import pytest
from conftest import FakeClock
from hypothesis import example, given
from hypothesis import strategies as st
from servers import Server, free_port, start_redis
from stores import Run, store_runner, unique

from signgate import Policy, Signer, Verifier
from signgate.errors import LimitExceeded, MalformedRequest, Replayed, Revoked, StoreUnavailable
from signgate.extensions import MAX_USES, NONCE, POLICY, TENANT, USER, USES, PolicyRules
from signgate.gateway.admission import NO_EXTENSIONS, Admitter, Extensions, limit_scopes, scope_id
from signgate.gateway.config import KeyConfig
from signgate.gateway.metrics import Metrics
from signgate.gateway.store import Limits, MemoryStore, Nonce, RedisStore, Scope, Store
from signgate.revocation import Attribution
from signgate.verifier import VerifiedRequest

T = TypeVar("T")
NOW = 1_800_000_020.0  # 20 s into a minute


def verified(bound: dict[str, str], key_id: str = "app", expires_at: int = 1_800_000_300) -> VerifiedRequest:
    return VerifiedRequest(key_id, "https://api.example/v1/", "https://api.example/v1/", 0, expires_at, bound, None)


# -- Extensions ------------------------------------------------------------------------------------


def test_a_request_without_extensions_shares_the_empty_one() -> None:
    assert Extensions.from_verified(verified({"content-type": "application/json"})) is NO_EXTENSIONS
    assert Extensions(None, None, None, None) == NO_EXTENSIONS


def test_the_extensions_a_signer_binds_are_read_after_verification(clock: FakeClock) -> None:
    policy = Policy(models=["gpt-x"], max_tokens=100)
    request = Signer("app", "s", "https://gw", clock=clock, nonce=lambda: "n" * 22).sign(
        "POST", "https://api.example/v1/chat/completions", uses=3, user="u-1", tenant="acme", policy=policy
    )
    checked = Verifier({"app": ["s"]}, clock=clock).verify_request(
        "POST", request.url.split("?", 1)[1], request.headers, None
    )
    ext = Extensions.from_verified(checked)
    assert ext.nonce == Nonce(scope_id("app", "n" * 22), 3, checked.expires_at)
    assert (ext.user, ext.tenant) == ("u-1", "acme")
    assert ext.policy == PolicyRules.from_header(policy.header())
    assert ext.policy is not None and ext.policy.models == ("gpt-x",)


def test_a_nonce_without_a_uses_header_is_single_use() -> None:
    ext = Extensions.from_verified(verified({NONCE: "abcdefgh"}))
    assert ext.nonce == Nonce(scope_id("app", "abcdefgh"), 1, 1_800_000_300)
    assert (ext.user, ext.tenant, ext.policy) == (None, None, None)


def test_one_nonce_of_two_keys_is_two_nonces() -> None:
    one = Extensions.from_verified(verified({NONCE: "abcdefgh"}, key_id="a"))
    other = Extensions.from_verified(verified({NONCE: "abcdefgh"}, key_id="b"))
    assert one.nonce is not None and other.nonce is not None and one.nonce.id != other.nonce.id


@pytest.mark.parametrize("uses", ["0", "-1", "abc", "", "\u00b3", "\uff11", " 1", "1.0", str(MAX_USES + 1)])
def test_a_bad_uses_count_is_refused(uses: str) -> None:
    with pytest.raises(MalformedRequest) as refused:
        Extensions.from_verified(verified({NONCE: "abcdefgh", USES: uses}))
    assert refused.value.param == USES
    assert str(MAX_USES) in refused.value.message


def test_the_largest_uses_count_is_accepted() -> None:
    ext = Extensions.from_verified(verified({NONCE: "abcdefgh", USES: str(MAX_USES)}))
    assert ext.nonce is not None and ext.nonce.uses == MAX_USES


@pytest.mark.parametrize(("nonce", "ok"), [("a" * 7, False), ("a" * 8, True), ("a" * 64, True), ("a" * 65, False)])
def test_a_nonce_is_8_to_64_characters(nonce: str, ok: bool) -> None:
    if ok:
        assert Extensions.from_verified(verified({NONCE: nonce})).nonce is not None
    else:
        with pytest.raises(MalformedRequest) as refused:
            Extensions.from_verified(verified({NONCE: nonce}))
        assert refused.value.param == NONCE


def test_uses_without_a_nonce_counts_nothing() -> None:
    assert Extensions.from_verified(verified({USES: "5"})).nonce is None


def test_a_bad_policy_is_refused_naming_the_header() -> None:
    with pytest.raises(MalformedRequest) as refused:
        Extensions.from_verified(verified({POLICY: "not base64 json!"}))
    assert refused.value.param == POLICY
    assert "base64url" in refused.value.message


def test_user_and_tenant_are_read_as_bound() -> None:
    ext = Extensions.from_verified(verified({USER: "u:1", TENANT: ""}))
    assert (ext.user, ext.tenant, ext.nonce) == ("u:1", "", None)


# -- limit scopes ----------------------------------------------------------------------------------

LIMITED = KeyConfig(
    "app",
    ("s",),
    limits=Limits(requests_per_minute=100),
    tenant_limits=Limits(concurrent_streams=5),
    user_limits=Limits(tokens_per_day=1000),
)


def test_a_request_counts_against_each_scope_the_key_limits() -> None:
    scopes = limit_scopes(LIMITED, Extensions(user="u", tenant="t"))
    assert [(s.kind, s.limits) for s in scopes] == [
        ("key", LIMITED.limits),
        ("tenant", LIMITED.tenant_limits),
        ("user", LIMITED.user_limits),
    ]
    assert [s.id for s in scopes] == ["k:app", "t:app:t", "u:app:t:u"]


def test_scopes_without_limits_or_without_ids_are_left_out() -> None:
    assert limit_scopes(KeyConfig("app", ("s",)), Extensions(user="u", tenant="t")) == []
    assert [s.kind for s in limit_scopes(LIMITED, NO_EXTENSIONS)] == ["key"]
    assert [s.kind for s in limit_scopes(LIMITED, Extensions(user="u"))] == ["key", "user"]
    tenant_only = KeyConfig("app", ("s",), tenant_limits=Limits(requests_per_minute=1))
    assert [s.kind for s in limit_scopes(tenant_only, Extensions(user="u", tenant="t"))] == ["tenant"]


# Mostly the characters a joining scheme could confuse (the separator, and the escape of it).
ids = st.text(alphabet=":%3Aa", max_size=6) | st.text(max_size=12)


@example(["a:b"], ["a", "b"])
@example(["a%3Ab"], ["a:b"])
@given(st.lists(ids, min_size=1, max_size=4), st.lists(ids, min_size=1, max_size=4))
def test_scope_ids_of_different_parts_never_collide(one: list[str], other: list[str]) -> None:
    assert (scope_id(*one) == scope_id(*other)) == (one == other)


@example("a", "b:c", "d", "a", "b", "c:d")  # tenant and user ids that hold the separator
@example("a", None, "b:c", "a", "b", "c")  # a user of no tenant, a user of a tenant
@given(ids, st.none() | ids, ids, ids, st.none() | ids, ids)
def test_limit_scopes_of_different_requests_never_share_a_counter(
    key_a: str, tenant_a: str | None, user_a: str, key_b: str, tenant_b: str | None, user_b: str
) -> None:
    """The same kind of counter is shared only by the same key, tenant and user: no id of one
    (key, tenant, user) can be spelled by another, whatever ':' or '%' the ids hold."""
    limits = Limits(requests_per_minute=1)

    def scopes(key_id: str, tenant: str | None, user: str) -> dict[str, str]:
        key = KeyConfig(key_id or "k", ("s",), limits=limits, tenant_limits=limits, user_limits=limits)
        return {s.kind: s.id for s in limit_scopes(key, Extensions(user=user, tenant=tenant))}

    a, b = scopes(key_a, tenant_a, user_a), scopes(key_b, tenant_b, user_b)
    assert (a["key"] == b["key"]) == ((key_a or "k") == (key_b or "k"))
    assert (a["user"] == b["user"]) == ((key_a or "k", tenant_a, user_a) == (key_b or "k", tenant_b, user_b))
    if "tenant" in a and "tenant" in b:
        assert (a["tenant"] == b["tenant"]) == ((key_a or "k", tenant_a) == (key_b or "k", tenant_b))
    for kind_a, id_a in a.items():  # a store keeps every counter by its id alone
        for kind_b, id_b in b.items():
            assert kind_a == kind_b or id_a != id_b


# -- the Admitter, on real stores ------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest) -> Run[None]:
    """Run ``test(store)`` on a fresh store of the parametrised kind, in its own event loop."""
    return store_runner(request)


def admitter(store: Store, metrics: Metrics | None = None, *, fail_open: bool = False, now: float = NOW) -> Admitter:
    return Admitter(lambda: store, metrics or Metrics(), fail_open=fail_open, clock=FakeClock(now))


def test_a_nonce_is_admitted_once_then_replayed(run: Run[None]) -> None:
    async def test(store: Store) -> None:
        gate = admitter(store)
        nonce = Nonce(unique("n"), 1, int(NOW) + 60)
        assert await gate.admit(nonce, []) is not None
        with pytest.raises(Replayed) as refused:
            await gate.admit(nonce, [])
        assert (refused.value.status, refused.value.code) == (409, "replayed")

    run(test)


def test_a_limit_reached_is_refused_with_its_scope_limit_and_retry_after(run: Run[None]) -> None:
    async def test(store: Store) -> None:
        gate = admitter(store)
        scope = Scope("tenant", unique("t"), Limits(requests_per_minute=2))
        for _ in range(2):
            await gate.admit(None, [scope])
        with pytest.raises(LimitExceeded) as refused:
            await gate.admit(None, [scope])
        refusal = refused.value
        assert (refusal.status, refusal.code, refusal.retry_after) == (429, "requests_per_minute_exceeded", 40)
        assert refusal.details == {"scope": "tenant", "limit": 2}
        # The injected clock decides the window: a minute later, the tenant may call again.
        assert await admitter(store, now=NOW + 60).admit(None, [scope]) is not None

    run(test)


def test_a_released_stream_lease_frees_its_place(run: Run[None]) -> None:
    async def test(store: Store) -> None:
        gate = admitter(store)
        scope = Scope("user", unique("u"), Limits(concurrent_streams=1))
        first = await gate.admit(None, [scope])
        assert first is not None and first.lease is not None
        with pytest.raises(LimitExceeded) as refused:
            await gate.admit(None, [scope])
        assert refused.value.code == "concurrent_streams_exceeded"
        await gate.release(first)
        second = await gate.admit(None, [scope])
        await gate.release(second)
        await gate.release(None)  # nothing was counted: nothing to release

    run(test)


def test_tokens_charged_count_against_the_daily_budget(run: Run[None]) -> None:
    async def test(store: Store) -> None:
        gate = admitter(store)
        scope = Scope("user", unique("u"), Limits(tokens_per_day=100))
        await gate.admit(None, [scope])
        await gate.charge([scope], 100)
        with pytest.raises(LimitExceeded) as refused:
            await gate.admit(None, [scope])
        assert refused.value.code == "tokens_per_day_exceeded"

    run(test)


def test_a_refused_request_spends_nothing(run: Run[None]) -> None:
    async def test(store: Store) -> None:
        gate = admitter(store)
        full = Scope("key", unique("k"), Limits(requests_per_minute=1))
        await gate.admit(None, [full])
        nonce = Nonce(unique("n"), 1, int(NOW) + 60)
        with pytest.raises(LimitExceeded):
            await gate.admit(nonce, [full])
        assert await gate.admit(nonce, []) is not None  # the nonce was not used up by the refusal

    run(test)


def test_nothing_to_count_asks_no_store() -> None:
    """A request without nonce or limits never waits for the store: it passes even with none."""

    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
        metrics = Metrics()
        try:
            assert await admitter(store, metrics).admit(None, []) is None
        finally:
            await store.close()
        assert metrics.store_errors == 0

    asyncio.run(main())


def test_an_attributed_request_asks_redis_for_revocations_and_memory_nothing() -> None:
    """With its attribution (as the gateway admits every request), a request that counts nothing
    still asks Redis whether it is revoked, so a store that is down refuses it; the memory store
    answers from its table, without a store call."""
    attribution = Attribution("app", None, "u", None, int(NOW))

    async def main() -> None:
        down = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
        metrics = Metrics()
        try:
            with pytest.raises(StoreUnavailable):
                await admitter(down, metrics).admit(None, [], attribution)
        finally:
            await down.close()
        assert metrics.store_errors == 1
        memory = MemoryStore()
        assert await admitter(memory).admit(None, [], attribution) is None
        await memory.revoke("user", "u", int(NOW), 60, NOW)
        with pytest.raises(Revoked):
            await admitter(memory).admit(None, [], attribution)

    asyncio.run(main())


@pytest.fixture
def unreachable() -> Iterator[Store]:
    """A Redis store whose server is not there: every call fails, as a store that went down."""
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=2.0)
    yield store
    asyncio.run(store.close())


def test_a_store_failure_closes_the_gateway_and_is_counted(unreachable: Store) -> None:
    metrics = Metrics()

    async def main() -> None:
        scope = Scope("key", unique("k"), Limits(requests_per_minute=1))
        with pytest.raises(StoreUnavailable) as refused:
            await admitter(unreachable, metrics).admit(None, [scope])
        assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "store_unavailable", 1)
        assert "redis" not in refused.value.message.lower()  # the store's own error stays in the log

    asyncio.run(main())
    assert metrics.store_errors == 1


def test_fail_open_serves_without_limits_and_counts_the_failure(
    unreachable: Store, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()

    async def main() -> None:
        nonce = Nonce(unique("n"), 1, int(NOW) + 60)
        gate = admitter(unreachable, metrics, fail_open=True)
        assert await gate.admit(nonce, []) is None
        assert await gate.admit(nonce, []) is None  # no store: a single-use URL is not counted

    with caplog.at_level(logging.WARNING, logger="signgate.gateway"):
        asyncio.run(main())
    assert metrics.store_errors == 2
    assert "--store-fail-open" in caplog.text


def test_a_failed_charge_is_counted_not_raised(unreachable: Store) -> None:
    """The answer has been given by then: the request does not fail over its accounting."""
    metrics = Metrics()
    scope = Scope("user", unique("u"), Limits(tokens_per_day=10))
    asyncio.run(admitter(unreachable, metrics).charge([scope], 5))
    assert metrics.store_errors == 1
