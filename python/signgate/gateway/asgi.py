"""ASGI as the gateway speaks it: the types, and how it learns the moment a client hangs up.

``signgate serve``'s protocol puts a function into each request's scope under
:data:`CLIENT_LOST` (``scope["extensions"]["signgate.client_lost"]``): called with a callback,
it registers it to run when the client's connection is lost, and returns True, keeping nothing,
if it is lost already; called with None, it drops the callback. Under any other ASGI server a
task waits in ``receive()`` for ``http.disconnect`` instead (:class:`HangUp` does either). The protocol also offers
:data:`ABORT`, a function that breaks the response off (see :func:`break_off`), and
:data:`COALESCE` (see :func:`coalesce`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The scope extension through which the application learns of a lost client connection.
CLIENT_LOST = "signgate.client_lost"
#: The scope extension that breaks the response off: the connection is closed without the final
#: chunk (so the client sees a broken stream, not a clean end), and the server logs no error.
ABORT = "signgate.abort"
#: The scope extension that asks the server to hold the response head back and write it together
#: with the first body bytes, in one write: called just before ``http.response.start`` when the
#: first ``http.response.body`` follows at once (a small answer that arrived whole).
COALESCE = "signgate.coalesce"


class HangUp:
    """Cancels the task relaying a request the moment its client hangs up, so the upstream call
    is dropped and the model stops generating; unless the answer is already being finished.
    :meth:`end` cancels it the same way on the gateway's behalf (a revoked stream), with the
    refusal to tell the client.

    ::

        hang_up = HangUp(scope, receive)
        if hang_up.start():       # gone already: send nothing upstream
            ...
        try:
            ... relay ...
        except asyncio.CancelledError:
            if not hang_up.absorb():  # a cancellation of our own: the client left
                raise
        finally:
            hang_up.stop()
    """

    __slots__ = ("_task", "_watch", "_watcher", "ended", "finishing", "gone")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self.gone = False
        self.finishing = False  # set while the answer's last bytes are sent: no cancelling then
        self.ended: Exception | None = None  # why the gateway ended the relay (see end())
        self._watch: Callable[[Callable[[], None] | None], bool] | None = (scope.get("extensions") or {}).get(
            CLIENT_LOST
        )
        self._watcher: asyncio.Future[Message] | None = None
        if self._watch is None:
            self._watcher = asyncio.ensure_future(receive())

    def start(self) -> bool:
        """Begin watching; True if the client is gone already (then nothing is watched)."""
        if self._watch is not None:
            return self._watch(self._lost)
        assert self._watcher is not None
        self._watcher.add_done_callback(self._on_message)
        return False

    def stop(self) -> None:
        if self._watch is not None:
            self._watch(None)
        elif self._watcher is not None:
            self._watcher.remove_done_callback(self._on_message)
            self._watcher.cancel()

    def absorb(self) -> bool:
        """After a CancelledError: True (and the cancellation undone) if it was the hang-up's or
        :meth:`end`'s (then ``ended`` says why)."""
        if not self.gone and self.ended is None:
            return False
        self._task.uncancel()
        return True

    def end(self, reason: Exception) -> bool:
        """Stop the relay on the gateway's behalf, as a hang-up would; ``reason`` is kept in
        ``ended`` for the relay to tell the client. False (nothing done) if the answer is being
        finished, or the relay is already stopping."""
        if self.finishing or self.gone or self.ended is not None:
            return False
        self.ended = reason
        self._task.cancel()
        return True

    def _lost(self) -> None:
        if not self.finishing and self.ended is None:
            self.gone = True
            self._task.cancel()

    def _on_message(self, done: asyncio.Future[Message]) -> None:
        if not done.cancelled() and done.exception() is None and done.result()["type"] == "http.disconnect":
            self._lost()


def break_off(scope: Scope) -> None:
    """End the response without finishing it: the client sees a broken stream. Under a server
    without :data:`ABORT`, returning with the response unfinished does the same (the server
    closes the connection, and may log an error)."""
    abort = (scope.get("extensions") or {}).get(ABORT)
    if abort is not None:
        abort()


def coalesce(scope: Scope) -> None:
    """Ask the server to write the response head with the first body bytes, one system call
    instead of two; only when the body follows at once. Without :data:`COALESCE`, nothing."""
    hold = (scope.get("extensions") or {}).get(COALESCE)
    if hold is not None:
        hold()
