"""The body step (signgate.gateway.body): ``read_body`` bounded in size, time and bytes held per
worker, and its deadline, which behaves as the asyncio.timeout it replaces."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from signgate.errors import AtCapacity, BodyTooLarge, ClientTimeout, LengthRequired, MalformedRequest
from signgate.gateway.asgi import Receive
from signgate.gateway.body import Body, BufferBudget, ClientGone, Deadline, read_body
from signgate.gateway.request import Head, read_head


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


# -- read_body: the body step ----------------------------------------------------------------------


def head_with(**headers: str) -> Head:
    raw = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return read_head({"method": "POST", "path": "/", "query_string": b"", "headers": raw})


def feed(*chunks: bytes, end: bool = True) -> Receive:
    """A server's receive(): ``chunks`` as http.request messages; then, unless ``end``, nothing."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": not (end and i == len(chunks) - 1)}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that stopped sending
        raise AssertionError("unreachable")

    return receive


def read(
    receive: Receive, head: Head, *, bound: bool = False, budget: BufferBudget | None = None, max_body: int = 100
) -> Body:
    return asyncio.run(read_body(receive, head, bound, budget or BufferBudget(1000), max_body=max_body, timeout=0.5))


def test_the_body_arrives_in_chunks_and_is_held_against_the_budget() -> None:
    budget = BufferBudget(1000)
    body = read(feed(b"ab", b"", b"cde"), head_with(content_length="5"), budget=budget)
    assert (body.data, body.held, budget.used) == (b"abcde", 5, 5)
    body.release()
    body.release()  # any number of times
    assert (body.data, body.held, budget.used) == (b"", 0, 0)


def test_a_declared_length_beyond_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(BodyTooLarge) as refused:
        read(feed(end=False), head_with(content_length="101"))
    assert (refused.value.status, refused.value.code) == (413, "body_too_large")
    assert "101" in refused.value.message and "100" in refused.value.message


def test_a_body_that_grows_past_the_limit_is_refused_and_holds_nothing() -> None:
    budget = BufferBudget(1000)
    with pytest.raises(BodyTooLarge):
        read(feed(b"x" * 60, b"x" * 41), head_with(), budget=budget)
    assert budget.used == 0


@pytest.mark.parametrize("length", ["-1", "1e3", " 5", "\u0665", "0x10", ""])
def test_a_content_length_that_is_not_a_number_is_malformed(length: str) -> None:
    with pytest.raises(MalformedRequest) as refused:
        read(feed(b""), head_with(content_length=length))
    assert refused.value.param == "Content-Length"


def test_a_bound_body_must_come_with_its_length() -> None:
    with pytest.raises(LengthRequired) as refused:
        read(feed(b"{}"), head_with(transfer_encoding="chunked"), bound=True)
    assert (refused.value.status, refused.value.code) == (411, "length_required")
    assert read(feed(b"{}"), head_with(transfer_encoding="chunked")).data == b"{}"  # not bound: fine


def test_bodies_beyond_the_workers_budget_are_refused_until_one_is_released() -> None:
    budget = BufferBudget(10)
    held = read(feed(b"x" * 8), head_with(), budget=budget)
    with pytest.raises(AtCapacity) as refused:
        read(feed(b"y" * 3), head_with(), budget=budget)
    assert (refused.value.status, refused.value.retry_after) == (503, 1)
    assert budget.used == 8  # the refused body gave back what it had reserved
    held.release()
    assert read(feed(b"y" * 3), head_with(), budget=budget).data == b"yyy"


def test_a_body_that_stops_arriving_times_out_and_holds_nothing() -> None:
    budget = BufferBudget(1000)
    with pytest.raises(ClientTimeout) as refused:
        read(feed(b"part", end=False), head_with(content_length="10"), budget=budget)
    assert (refused.value.status, refused.value.code) == (408, "client_timeout")
    assert budget.used == 0


def test_a_client_that_hangs_up_mid_body_is_gone() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    budget = BufferBudget(1000)
    with pytest.raises(ClientGone):
        read(receive, head_with(), budget=budget)
    assert budget.used == 0


def test_a_body_written_back_holds_its_growth() -> None:
    budget = BufferBudget(12)
    body = read(feed(b"x" * 8), head_with(), budget=budget)
    body.replace(b"y" * 10)
    assert (body.held, budget.used) == (10, 10)
    body.replace(b"z" * 4)  # shrinking keeps what is held until release
    assert (body.data, budget.used) == (b"zzzz", 10)
    with pytest.raises(AtCapacity):
        body.replace(b"w" * 13)
    body.release()
    assert budget.used == 0
