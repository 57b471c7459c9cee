"""The store contract: what every store (memory, and Redis on a real redis-server) must do.

Each test runs against both stores through the same abstract interface, so a store that counts a
refused request, admits one request too many under concurrency, or forgets a lease behaves
differently here from the other and fails. At the end, what only the memory store must do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from servers import Server, start_redis
from stores import Run, store_runner, unique

from signgate.gateway.store import Limits, MemoryStore, Nonce, Scope, Store

T = TypeVar("T")
NOW = 1_800_000_020.0  # 20 s into a minute, 8 h 0 min 20 s into a UTC day


@pytest.fixture(scope="module")
def redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest) -> Run[T]:
    """Run ``test(store)`` on a fresh store of the parametrised kind, in its own event loop."""
    return store_runner(request)


def test_a_nonce_is_admitted_as_often_as_it_may_be_used(run: Callable[..., None]) -> None:
    async def test(store: Store) -> None:
        once, thrice = Nonce(unique("n1"), 1, int(NOW) + 60), Nonce(unique("n3"), 3, int(NOW) + 60)
        assert (await store.admit(once, [], NOW)).admitted
        again = await store.admit(once, [], NOW)
        assert (again.admitted, again.replayed) == (False, True)
        results = [(await store.admit(thrice, [], NOW)).admitted for _ in range(4)]
        assert results == [True, True, True, False]

    run(test)


def test_requests_per_minute_are_exact_under_concurrency_and_count_per_scope(run: Callable[..., None]) -> None:
    async def test(store: Store) -> None:
        scope = Scope("user", unique("u"), Limits(requests_per_minute=50))
        other = Scope("user", unique("u"), Limits(requests_per_minute=50))
        results = await asyncio.gather(*(store.admit(None, [scope], NOW) for _ in range(200)))
        assert sum(r.admitted for r in results) == 50
        refused = next(r for r in results if not r.admitted)
        assert (refused.limit, refused.scope, refused.retry_after) == ("requests_per_minute", scope, 40)
        assert (await store.admit(None, [other], NOW)).admitted  # another scope has its own count
        assert (await store.admit(None, [scope], NOW + 60)).admitted  # the next minute starts again

    run(test)


def test_a_refused_request_counts_nothing(run: Callable[..., None]) -> None:
    async def test(store: Store) -> None:
        rate = Scope("key", unique("k"), Limits(requests_per_minute=1))
        user = Scope("user", unique("u"), Limits(requests_per_minute=5))
        nonce = Nonce(unique("n"), 1, int(NOW) + 60)
        assert (await store.admit(None, [rate], NOW)).admitted
        refused = await store.admit(nonce, [user, rate], NOW)
        assert (refused.admitted, refused.limit) == (False, "requests_per_minute")
        # neither the nonce nor the user's count was spent by the refused request
        assert (await store.admit(nonce, [user], NOW)).admitted
        results = [(await store.admit(None, [user], NOW)).admitted for _ in range(5)]
        assert results == [True, True, True, True, False]  # 1 + 4 = the user's 5: nothing for the refusal

    run(test)


def test_concurrent_streams_are_leased_and_released(run: Callable[..., None]) -> None:
    async def test(store: Store) -> None:
        scope = Scope("tenant", unique("t"), Limits(concurrent_streams=2))
        first, second = await store.admit(None, [scope], NOW), await store.admit(None, [scope], NOW)
        third = await store.admit(None, [scope], NOW)
        assert (first.admitted, second.admitted, third.admitted, third.limit) == (
            True, True, False, "concurrent_streams"
        )  # fmt: skip
        assert third.retry_after == 1
        await store.release(first)
        fourth = await store.admit(None, [scope], NOW)
        assert fourth.admitted
        for admission in (second, fourth):
            await store.release(admission)
        assert all([(await store.admit(None, [scope], NOW)).admitted for _ in range(2)])

    run(test)


def test_a_token_budget_admits_while_below_it_and_counts_what_was_used(run: Callable[..., None]) -> None:
    async def test(store: Store) -> None:
        scope = Scope("user", unique("u"), Limits(tokens_per_day=100))
        unlimited = Scope("key", unique("k"), Limits(requests_per_minute=10**6))
        assert (await store.admit(None, [scope], NOW)).admitted
        await store.add_tokens([scope, unlimited], 99, NOW)
        assert (await store.admit(None, [scope], NOW)).admitted
        await store.add_tokens([scope], 1, NOW)
        refused = await store.admit(None, [scope], NOW)
        seconds_to_midnight = 86400 - (8 * 3600 + 20)
        assert (refused.admitted, refused.limit, refused.retry_after) == (False, "tokens_per_day", seconds_to_midnight)
        assert (await store.admit(None, [scope], NOW + 86400)).admitted  # a new UTC day

    run(test)


def test_scope_ids_are_compared_whole(run: Callable[..., None]) -> None:
    async def test(store: Store) -> None:
        base = unique("u")
        one = Scope("user", base, Limits(requests_per_minute=1))
        longer = Scope("user", base + ":x", Limits(requests_per_minute=1))
        assert (await store.admit(None, [one], NOW)).admitted
        assert (await store.admit(None, [longer], NOW)).admitted

    run(test)


# -- the in-memory store does not grow without bound ----------------------------------------------------


def test_memory_store_forgets_expired_entries() -> None:
    async def run() -> MemoryStore:
        store = MemoryStore()
        scope = Scope("user", "u:1", Limits(requests_per_minute=10**9))
        for i in range(5000):
            now = 1_000_000 + i  # one request a second, each with a nonce valid for 30 s
            admission = await store.admit(Nonce(f"n{i}", 1, now + 30), [scope], now)
            assert admission.admitted
        return store

    store = asyncio.run(run())
    assert store.size() < 1100  # ~1024 requests since the last sweep, not 5000 nonces and 84 windows
