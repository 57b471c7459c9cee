"""The body step's deadline behaves as the asyncio.timeout it replaces."""

from __future__ import annotations

import asyncio

import pytest

from signgate.gateway.body import Deadline


def test_the_deadline_raises_timeout_error_and_leaves_the_task_uncancelled() -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError), Deadline(0.01):
            await asyncio.sleep(5)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0.02)  # still a healthy task: no cancellation left pending

    asyncio.run(main())


def test_the_deadline_does_nothing_when_the_block_is_quick() -> None:
    async def main() -> None:
        with Deadline(0.05):
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)  # the timer was cancelled: this sleep is not cut short

    asyncio.run(main())


def test_a_cancellation_from_elsewhere_still_propagates() -> None:
    """As with asyncio.timeout: shutdown cancelling the request is not a client timeout."""

    async def read() -> None:
        with Deadline(5):
            await asyncio.sleep(5)

    async def main() -> None:
        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_cancellation_from_elsewhere_in_the_same_step_as_the_expiry_still_propagates() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def read() -> None:
            with Deadline(0):
                await loop.create_future()

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0)  # read arms its deadline, then waits
        loop.call_later(0, task.cancel)  # due in the same loop iteration as the deadline
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
