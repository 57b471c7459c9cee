"""How the gateway learns that a client hung up (signgate.gateway.asgi): ``HangUp`` through the
``signgate.client_lost`` extension of ``signgate serve``'s protocol, and through ``receive()``
under any other server; ``break_off`` and ``coalesce``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgi_client import ClientLost

from signgate.gateway.asgi import ABORT, CLIENT_LOST, COALESCE, HangUp, break_off, coalesce


async def relay_until_cancelled(hang_up: HangUp, started: asyncio.Event) -> str:
    """What the relay does around its upstream call, as HangUp's docstring shows it."""
    if hang_up.start():
        return "gone before"
    try:
        started.set()
        await asyncio.sleep(30)
        return "finished"
    except asyncio.CancelledError:
        if not hang_up.absorb():
            raise
        return "hung up"
    finally:
        hang_up.stop()


async def run_relay(scope: dict[str, Any], receive: Any) -> asyncio.Task[str]:
    started = asyncio.Event()

    async def body() -> str:
        return await relay_until_cancelled(HangUp(scope, receive), started)

    task = asyncio.ensure_future(body())
    await asyncio.wait_for(started.wait(), 10)
    return task


# -- through the client_lost extension ------------------------------------------------------------


def test_the_extension_cancels_the_relay_when_the_client_is_lost() -> None:
    async def main() -> None:
        lost = ClientLost()
        task = await run_relay({"extensions": {CLIENT_LOST: lost}}, never_called)
        lost.lose()
        assert await asyncio.wait_for(task, 10) == "hung up"
        assert lost.calls[-1] is None  # stop() unregistered the callback
        assert task.cancelling() == 0  # absorb() undid the cancellation

    asyncio.run(main())


def test_the_extension_says_the_client_is_gone_already() -> None:
    async def main() -> None:
        lost = ClientLost(gone=True)
        hang_up = HangUp({"extensions": {CLIENT_LOST: lost}}, never_called)
        assert hang_up.start() is True
        assert lost.callback is None  # nothing kept

    asyncio.run(main())


def test_a_hang_up_while_the_answer_is_finishing_does_not_cancel() -> None:
    async def main() -> None:
        lost = ClientLost()
        hang_up = HangUp({"extensions": {CLIENT_LOST: lost}}, never_called)
        assert hang_up.start() is False
        hang_up.finishing = True
        lost.lose()
        await asyncio.sleep(0)  # a cancellation would be delivered here
        assert not hang_up.gone
        hang_up.stop()

    asyncio.run(main())


async def never_called() -> dict[str, Any]:
    raise AssertionError("receive() is not called when the server offers client_lost")


# -- through receive() -----------------------------------------------------------------------------


def test_receive_mode_cancels_the_relay_on_http_disconnect() -> None:
    async def main() -> None:
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        task = await run_relay({"type": "http"}, incoming.get)
        incoming.put_nowait({"type": "http.disconnect"})
        assert await asyncio.wait_for(task, 10) == "hung up"

    asyncio.run(main())


def test_receive_mode_ignores_other_messages_and_stops_waiting_when_done() -> None:
    async def main() -> None:
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        waiting = []

        async def receive() -> dict[str, Any]:
            waiting.append(True)
            try:
                return await incoming.get()
            finally:
                waiting.pop()

        started = asyncio.Event()
        hang_up = HangUp({"type": "http", "extensions": None}, receive)
        task = asyncio.ensure_future(relay_until_cancelled(hang_up, started))
        await asyncio.wait_for(started.wait(), 10)
        assert waiting  # a task waits in receive() for the disconnect
        incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        await asyncio.sleep(0.05)
        assert not task.done() and not hang_up.gone
        task.cancel()  # a cancellation from elsewhere (shutdown) is not the client's
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert not waiting  # stop() cancelled the waiting receive()

    asyncio.run(main())


def test_a_cancellation_that_is_not_a_hang_up_propagates() -> None:
    async def main() -> None:
        lost = ClientLost()
        task = await run_relay({"extensions": {CLIENT_LOST: lost}}, never_called)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert lost.calls[-1] is None

    asyncio.run(main())


# -- break_off -------------------------------------------------------------------------------------


def test_break_off_uses_the_servers_abort() -> None:
    aborted: list[bool] = []
    break_off({"extensions": {ABORT: lambda: aborted.append(True)}})
    assert aborted == [True]


@pytest.mark.parametrize("scope", [{}, {"extensions": None}, {"extensions": {}}])
def test_break_off_without_abort_leaves_the_response_unfinished(scope: dict[str, Any]) -> None:
    break_off(scope)  # nothing to call: returning unfinished breaks the stream under other servers


# -- coalesce ----------------------------------------------------------------------------------------


def test_coalesce_asks_the_server_to_hold_the_head() -> None:
    held: list[bool] = []
    coalesce({"extensions": {COALESCE: lambda: held.append(True)}})
    assert held == [True]


@pytest.mark.parametrize("scope", [{}, {"extensions": None}, {"extensions": {}}])
def test_coalesce_without_the_extension_does_nothing(scope: dict[str, Any]) -> None:
    coalesce(scope)  # under other servers the head goes out as it always did
