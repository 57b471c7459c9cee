"""Running a test against each store: the memory store, and Redis on a real redis-server.

A test module keeps two fixtures of its own, so that its Redis lives as long as the module::

    @pytest.fixture(scope="module")
    def redis() -> Iterator[Server]: ...   # start_redis(), stopped at the end

    @pytest.fixture(params=["memory", "redis"])
    def run(request): return store_runner(request)

and a test calls ``run(test)`` with a coroutine function taking the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from signgate.gateway.store import MemoryStore, RedisStore, Store

T = TypeVar("T")
Run = Callable[[Callable[[Store], Awaitable[T]]], T]


def unique(prefix: str) -> str:
    """A name no earlier test used: tests share one redis-server."""
    return f"{prefix}-{time.time_ns()}"


def store_runner(request: pytest.FixtureRequest) -> Run[T]:
    """Run ``test(store)`` on a fresh store of the parametrised kind, in its own event loop (Redis
    in a namespace of its own), closing the store after."""

    def runner(test: Callable[[Store], Awaitable[T]]) -> T:
        async def main() -> T:
            if request.param == "memory":
                store: Store = MemoryStore()
            else:
                server = request.getfixturevalue("redis")
                store = RedisStore(f"redis://127.0.0.1:{server.port}/0", namespace=unique("ns"))
            try:
                return await test(store)
            finally:
                await store.close()

        return asyncio.run(main())

    return runner
