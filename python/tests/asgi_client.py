"""The server's side of one ASGI request, for tests that call the gateway's steps in process: a
``receive`` fed from a queue and a ``send`` that records every message.

It speaks ASGI as a server does and nothing more, so what it drives is the gateway's real code.
What it cannot show is how bytes reach a socket: the tests through a real server
(test_gateway.py, test_hostile.py) do that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from signgate import SignedRequest
from signgate.gateway.asgi import Message


class Peer:
    """One request's ``receive`` and ``send``. The body is offered once; after it, ``receive``
    waits (as a server's does) until :meth:`hang_up` puts ``http.disconnect``."""

    def __init__(self, body: bytes = b"") -> None:
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.incoming.put_nowait({"type": "http.request", "body": body, "more_body": False})
        self.sent: list[Message] = []
        self._changed = asyncio.Event()

    async def receive(self) -> Message:
        return await self.incoming.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self._changed.set()

    def hang_up(self) -> None:
        self.incoming.put_nowait({"type": "http.disconnect"})

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        """Until ``count`` messages have been sent (fails the test after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                self._changed.clear()
                await self._changed.wait()

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])

    @property
    def ended(self) -> bool:
        """The response was finished cleanly (its last message says no more body)."""
        return len(self.sent) > 1 and not self.sent[-1].get("more_body", False)


def scope(
    request: SignedRequest, *, method: str | None = None, extensions: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``http`` scope a server gives for ``request`` sent as signed (header names in lower
    case, as servers deliver them, with the body's Content-Length)."""
    headers = [(name.lower().encode(), value.encode()) for name, value in request.headers.items()]
    if request.body is not None:
        headers.append((b"content-length", str(len(request.body.encode())).encode()))
    return {
        "type": "http",
        "method": method or request.method,
        "path": "/",
        "query_string": request.url.split("?", 1)[1].encode(),
        "headers": headers,
        "extensions": extensions or {},
    }


Callback = Callable[[], None] | None


class ClientLost:
    """The extension as the protocol offers it: registers one callback, or says the client is
    gone already; called with None, it forgets the callback."""

    def __init__(self, gone: bool = False) -> None:
        self.gone = gone
        self.callback: Callback = None
        self.calls: list[Callback] = []

    def __call__(self, callback: Callback) -> bool:
        self.calls.append(callback)
        if self.gone:
            return True
        self.callback = callback
        return False

    def lose(self) -> None:
        self.gone = True
        if self.callback is not None:
            self.callback()
