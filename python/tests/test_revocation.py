"""Revocations: the subjects a revocation may name, what it covers, how long it lasts, in both
stores (memory, and Redis on a real redis-server) and through :class:`signgate.Revoker`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import redis as redis_py
from servers import Server, start_redis
from stores import Run, store_runner, unique

from signgate import Revoker
from signgate.errors import RevocationError, Revoked, StoreError
from signgate.gateway.asgi import HangUp
from signgate.gateway.live import LiveStreams
from signgate.gateway.metrics import Metrics
from signgate.gateway.store import Limits, MemoryStore, Nonce, RedisStore, Scope, Store
from signgate.revocation import DEFAULT_LIFETIME, Attribution, Revocation, RevocationTable, check_subject

T = TypeVar("T")
NOW = 1_800_000_020.0
AT = int(NOW)


@pytest.fixture(scope="module")
def redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest) -> Run[T]:
    """Run ``test(store)`` on a fresh store of each kind (Redis in a namespace of its own)."""
    return store_runner(request)


def attributed(key: str = "app", tenant: str | None = None, user: str | None = None, nonce: str | None = None,
               signed_at: int = AT) -> Attribution:  # fmt: skip
    return Attribution(key, tenant, user, nonce, signed_at)


# -- the subjects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [("user", "u-42"), ("user", "Alice"), ("tenant", "acme:eu/1"), ("key", "web-app"), ("nonce", "Qx3-_abc12345")],
)
def test_a_subject_is_taken_exactly_as_given(kind: str, value: str) -> None:
    assert check_subject(kind, value) == value


@pytest.mark.parametrize(
    ("kind", "value", "why"),
    [
        ("user", "", "can never match"),
        ("user", " alice", "can never match"),  # the gateway strips what the signer never signs
        ("user", "alice\n", "can never match"),
        ("user", "al ice", "can never match"),
        ("user", "é", "can never match"),
        ("user", "x" * 129, "can never match"),
        ("nonce", "short", "8 to 64"),
        ("key", "a/b", "without '/'"),
        ("group", "x", "is not something to revoke"),
    ],
)
def test_a_subject_no_url_could_carry_is_refused_with_the_reason(kind: str, value: str, why: str) -> None:
    with pytest.raises(RevocationError, match=why) as caught:
        check_subject(kind, value)
    assert caught.value.field == kind


def test_a_revocation_covers_the_exact_subject_dated_up_to_its_second() -> None:
    table = RevocationTable()
    assert not table and table.covering(attributed(user="u")) is None
    table.add("user", "u", AT, AT + 100, NOW)
    assert table and len(table) == 1
    assert table.covering(attributed(user="u", signed_at=AT)) == Revocation("user", "u", AT, AT + 100)
    assert table.covering(attributed(user="u", signed_at=AT - 3000)) is not None
    assert table.covering(attributed(user="u", signed_at=AT + 1)) is None  # signed later
    for other in ("U", "u ", "u%20", "%75", "u\x00", "ｕ"):  # case, padding, encodings, look-alikes
        assert table.covering(attributed(user=other)) is None, other
    # A user id is not a tenant id, nor a key id, nor a nonce.
    assert table.covering(attributed(key="u", tenant="u", nonce="u" * 8)) is None


def test_a_later_revocation_of_the_same_subject_widens_it_and_expiry_sweeps_it() -> None:
    table = RevocationTable()
    table.add("tenant", "t", AT, AT + 10, NOW)
    table.add("tenant", "t", AT - 50, AT + 5, NOW)  # an older one never narrows what is revoked
    assert table.covering(attributed(tenant="t", signed_at=AT)) == Revocation("tenant", "t", AT, AT + 10)
    table.add("key", "k", AT + 5, AT + 20, NOW)
    assert len(table) == 2
    table.sweep(AT + 10)
    assert len(table) == 1 and table.covering(attributed(tenant="t")) is None
    assert table.active(AT + 10) == [Revocation("key", "k", AT + 5, AT + 20)]
    table.sweep(AT + 20)
    assert len(table) == 0


# -- the stores -----------------------------------------------------------------------------------


def test_each_kind_is_revoked_and_only_what_was_signed_until_then(run: Callable[..., None]) -> None:
    async def test(store: Store) -> None:
        subjects = {"key": unique("k"), "tenant": unique("t"), "user": unique("u"), "nonce": unique("nonce")}
        for kind, subject in subjects.items():
            before = attributed(**{kind: subject, "signed_at": AT - 10})  # type: ignore[arg-type]
            assert await store.revoked(before) is None
            revocation = await store.revoke(kind, subject, AT, 60, NOW)
            assert (revocation.kind, revocation.id, revocation.at) == (kind, subject, AT)
            assert await store.revoked(before) == kind
            assert await store.revoked(attributed(**{kind: subject, "signed_at": AT})) == kind  # type: ignore[arg-type]
            after = attributed(**{kind: subject, "signed_at": AT + 1})  # type: ignore[arg-type]
            assert await store.revoked(after) is None
        other = attributed(key=unique("k"), tenant="T", user="U", nonce="N" * 10, signed_at=AT - 10)
        assert await store.revoked(other) is None
        listed = await store.revocations(NOW, 60)
        assert {(r.kind, r.id) for r in listed} >= set(subjects.items())

    run(test)


def test_ids_are_compared_byte_for_byte_in_the_store(run: Callable[..., None]) -> None:
    """An encoded or folded form of a revoked id is another id (the signature binds the exact
    value), and ids that would collide once encoded for a Redis name stay apart."""

    async def test(store: Store) -> None:
        base = unique("u")
        await store.revoke("user", base + ":x", AT, 60, NOW)
        await store.revoke("user", base + "%2F", AT, 60, NOW)
        for other in (base, base + ":X", base + "%3Ax", base + "/", base + "%2f", base.upper()):
            assert await store.revoked(attributed(user=other, signed_at=AT - 1)) is None, other
        assert await store.revoked(attributed(user=base + ":x", signed_at=AT - 1)) == "user"
        assert await store.revoked(attributed(user=base + "%2F", signed_at=AT - 1)) == "user"

    run(test)


def test_admission_refuses_a_revoked_request_and_counts_nothing_for_it(run: Callable[..., None]) -> None:
    async def test(store: Store) -> None:
        user = unique("u")
        scope = Scope("user", unique("scope"), Limits(requests_per_minute=1))
        nonce = Nonce(unique("nonce-id"), 1, AT + 60)
        await store.revoke("user", user, AT, 60, NOW)
        refused = await store.admit(nonce, [scope], NOW, attributed(user=user, nonce="n" * 10))
        assert (refused.admitted, refused.revoked) == (False, "user")
        # Neither the nonce's use nor the minute's request was spent by the revoked request.
        admitted = await store.admit(nonce, [scope], NOW, attributed(user=user, signed_at=AT + 1))
        assert admitted.admitted and admitted.revoked is None
        # A revoked nonce is refused before its uses are looked at.
        await store.revoke("nonce", "n" * 10, AT, 60, NOW)
        again = await store.admit(None, [], NOW, attributed(nonce="n" * 10))
        assert again.revoked == "nonce"

    run(test)


def test_revocations_expire_by_themselves(redis: Server) -> None:
    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{redis.port}/0", namespace=unique("ns"))
        memory = MemoryStore()
        try:
            now = time.time()
            for s in (store, memory):
                await s.revoke("user", "short-lived", int(now), 2, now)
            assert await store.revoked(attributed(user="short-lived", signed_at=int(now))) == "user"
            assert memory.size() == 1
            await asyncio.sleep(3.2)  # Redis expires the entry itself
            assert await store.revoked(attributed(user="short-lived", signed_at=int(now))) is None
            assert await store.revocations(time.time(), 2) == []
            # The memory store forgets it at its next sweep (every 1024 admissions, or a revocation).
            await memory.revoke("user", "another", int(time.time()), 60, time.time())
            assert memory.size() == 1
        finally:
            await store.close()

    asyncio.run(main())


def test_a_revocation_lives_as_long_as_the_longest_lifetime_announced(redis: Server) -> None:
    namespace = unique("ns")
    client = redis_py.Redis(port=redis.port)

    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{redis.port}/0", namespace=namespace)
        try:
            assert await store.announce_lifetime(500) == 500
            assert await store.announce_lifetime(200) == 500  # the longest is kept
            revocation = await store.revoke("tenant", "t", int(time.time()), 100, time.time())
            assert 499 <= revocation.expires_at - time.time() <= 501
            # A gateway's own lifetime is the least, should a shorter one be announced.
            longer = await store.revoke("tenant", "t2", int(time.time()), 900, time.time())
            assert 899 <= longer.expires_at - time.time() <= 901
        finally:
            await store.close()

    asyncio.run(main())
    ttl = client.ttl(f"{{{namespace}}}:revoked:tenant:t")
    assert 495 <= ttl <= 500
    client.close()


# -- the Revoker -------------------------------------------------------------------------------------


def test_the_revoker_revokes_in_the_shared_store_and_lists(redis: Server) -> None:
    namespace = unique("ns")
    url = f"redis://127.0.0.1:{redis.port}/0"
    slept: list[float] = []
    with Revoker(url, namespace=namespace, sleep=slept.append) as revoker:
        revocation = revoker.revoke(user="u-42")
        assert (revocation.kind, revocation.id) == ("user", "u-42")
        # It waits for the revocation's second to pass, so a URL signed afterwards is never covered.
        assert len(slept) == 1 and 0 <= slept[0] <= 1
        assert revocation.expires_at - revocation.at in range(DEFAULT_LIFETIME - 1, DEFAULT_LIFETIME + 2)
        assert [(r.kind, r.id) for r in revoker.revocations()] == [("user", "u-42")]
        revoker.revoke(nonce="Qx3-_abc12345", wait=False)
        assert len(slept) == 1

    async def check() -> None:
        store = RedisStore(url, namespace=namespace)
        try:
            assert await store.revoked(attributed(user="u-42", signed_at=revocation.at)) == "user"
            assert await store.revoked(attributed(user="u-42", signed_at=revocation.at + 1)) is None
            assert await store.revoked(attributed(nonce="Qx3-_abc12345", signed_at=revocation.at)) == "nonce"
        finally:
            await store.close()

    asyncio.run(check())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"user": "a", "tenant": "b"}, "exactly one"),
        ({"user": "a b"}, "can never match"),
        ({"tenant": ""}, "can never match"),
    ],
)
def test_the_revoker_refuses_what_cannot_work(redis: Server, kwargs: dict[str, str], match: str) -> None:
    with (
        Revoker(f"redis://127.0.0.1:{redis.port}/0", namespace=unique("ns")) as revoker,
        pytest.raises(RevocationError, match=match),
    ):
        revoker.revoke(**kwargs)


def test_the_revoker_needs_a_shared_store_and_never_shows_its_password() -> None:
    with pytest.raises(RevocationError, match="admin endpoint"):
        Revoker("memory")
    with pytest.raises(ValueError, match="is not a store"):
        Revoker("http://example.com")
    unreachable = Revoker("redis://:hunter2-store-password@127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(StoreError) as caught:
        unreachable.revoke(user="u", wait=False)
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    assert "ConnectionError" in str(caught.value)


# -- live streams -------------------------------------------------------------------------------------


def test_live_streams_end_exactly_the_streams_a_revocation_covers() -> None:
    """Each stream is a task watched by a HangUp, as the relay runs it; a revocation ends the ones
    it covers (with the refusal to tell the client) and leaves the others running, whatever the
    number of revocations read at once."""

    async def main() -> None:
        metrics = Metrics()
        live = LiveStreams(metrics)
        never = asyncio.Event()

        async def receive() -> dict[str, str]:
            await never.wait()
            return {"type": "http.disconnect"}

        async def relay(attribution: Attribution) -> str:
            hang_up = HangUp({}, receive)
            hang_up.start()
            assert live.add(hang_up, attribution) is None
            try:
                await asyncio.sleep(30)
                return "finished"
            except asyncio.CancelledError:
                assert hang_up.absorb() and isinstance(hang_up.ended, Revoked)
                return f"ended: {hang_up.ended.scope}"
            finally:
                hang_up.stop()
                live.discard(hang_up)

        streams = {
            "user": asyncio.create_task(relay(attributed(user="u1", signed_at=AT - 5))),
            "later": asyncio.create_task(relay(attributed(user="u1", signed_at=AT + 1))),
            "other": asyncio.create_task(relay(attributed(user="u2"))),
            "tenant": asyncio.create_task(relay(attributed(tenant="t1", user="u3"))),
        }
        await asyncio.sleep(0.05)
        assert len(live) == 4
        many = [Revocation("user", f"someone-{i}", AT, AT + 60) for i in range(5000)]
        ended = live.end([*many, Revocation("user", "u1", AT, AT + 60), Revocation("tenant", "t1", AT, AT + 60)])
        assert ended == 2 and metrics.streams_revoked == 2
        assert await streams["user"] == "ended: user" and await streams["tenant"] == "ended: tenant"
        assert not streams["later"].done() and not streams["other"].done()
        # The store's recent revocations: a stream they cover is refused as it registers.
        live.recent.add("user", "u2", AT, AT + 60, NOW)
        late = HangUp({}, receive)
        assert live.add(late, attributed(user="u2")) == Revocation("user", "u2", AT, AT + 60)
        for task in (streams["later"], streams["other"]):
            task.cancel()
        await asyncio.gather(streams["later"], streams["other"], return_exceptions=True)
        late.stop()

    asyncio.run(main())


def test_concurrent_checks_share_reads_and_each_gets_its_own_answer(redis: Server) -> None:
    """Requests checked while a read is in flight go together in the next one: 300 at once take
    a handful of MGETs (counted by the real redis-server), and each still gets its own verdict."""
    client = redis_py.Redis(port=redis.port)

    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{redis.port}/0", namespace=unique("ns"))
        try:
            await store.revoke("user", "u-7", AT, 60, NOW)
            await store.revoke("tenant", "t-3", AT, 60, NOW)
            client.config_resetstat()
            checks = [attributed(user=f"u-{i % 10}", tenant=f"t-{i % 5}", signed_at=AT - (i % 2)) for i in range(300)]
            got = await asyncio.gather(*(store.revoked(a) for a in checks))
            expected = ["tenant" if a.tenant == "t-3" else "user" if a.user == "u-7" else None for a in checks]
            assert got == expected
            mgets = int(client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))
            assert 1 <= mgets <= 30, mgets
            # Alone, a check goes at once, in a read of its own.
            assert await store.revoked(attributed(user="u-7", signed_at=AT + 1)) is None
        finally:
            await store.close()

    try:
        asyncio.run(main())
    finally:
        client.close()


def test_a_failed_shared_read_fails_every_check_in_it_each_with_its_own_error(redis: Server) -> None:
    async def main() -> None:
        dead = RedisStore("redis://127.0.0.1:1/0", namespace=unique("ns"), timeout=0.5)
        try:
            results = await asyncio.gather(*(dead.revoked(attributed(user=f"u{i}")) for i in range(20)),
                                           return_exceptions=True)  # fmt: skip
            assert all(isinstance(r, StoreError) for r in results)
            assert len({id(r) for r in results}) == 20  # one exception each, no shared traceback
        finally:
            await dead.close()

    asyncio.run(main())
