"""Reading a request body: bounded in size (``max_body``), in time (``client_timeout``) and, across
all of a worker's requests at once, in bytes held (``max_buffered``)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import AtCapacity, BodyTooLarge, ClientTimeout, LengthRequired, MalformedRequest
from .asgi import Receive
from .request import Head


class ClientGone(Exception):
    """The client hung up while the gateway was still reading its request."""


class BufferBudget:
    """The request-body bytes one worker holds at once, across all requests (``max_buffered``)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class Body:
    """A request body, and the share of the worker's buffer budget it holds until it is sent
    (:meth:`release`, which may be called any number of times)."""

    __slots__ = ("_budget", "data", "held")

    def __init__(self, budget: BufferBudget) -> None:
        self._budget = budget
        self.data = b""
        self.held = 0

    def reserve(self, size: int) -> None:
        """Count ``size`` more bytes against the budget; raises AtCapacity when they do not fit."""
        budget = self._budget
        if budget.used + size > budget.limit:
            raise AtCapacity("the gateway holds as many request bodies as it may; retry shortly")
        budget.used += size
        self.held += size

    def replace(self, data: bytes) -> None:
        """Hold ``data`` instead (a body written back); its growth counts against the budget."""
        self.reserve(max(0, len(data) - self.held))
        self.data = data

    def release(self) -> None:
        self._budget.used -= self.held
        self.held = 0
        self.data = b""


class Deadline:
    """``asyncio.timeout`` for the body read, with its semantics and a third of its cost on uvloop.

    One ``call_later`` that cancels the task; on the way out a cancellation it caused becomes
    TimeoutError, while one from elsewhere (shutdown) still propagates, as in asyncio.timeout.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_task")

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self._handle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._handle.cancel()
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


async def read_body(
    receive: Receive, head: Head, bound: bool, budget: BufferBudget, *, max_body: int, timeout: float
) -> Body:
    """The whole body of the request. ``bound``: the signature covers it, so it must come with a
    Content-Length. Raises a Refusal (413, 411, 408, 503 at_capacity), MalformedRequest for a
    Content-Length that is not a number, or ClientGone."""
    declared = head.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise MalformedRequest("Content-Length", "must be a whole number of bytes")
        if int(declared) > max_body:
            raise BodyTooLarge(f"the body is {declared} bytes; the limit is {max_body}")
    elif bound and "transfer-encoding" in head.headers:
        raise LengthRequired("a signed body must be sent with Content-Length, not chunked")
    body = Body(budget)
    try:
        chunks: list[bytes] = []
        size = 0
        with Deadline(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_body:
                    raise BodyTooLarge(f"the body exceeds the limit of {max_body} bytes")
                # Bytes as they arrive, not the length announced: a length costs a client nothing
                # to announce, and 64 connections announcing 1 MiB, with forged signatures over
                # bound bodies, once held the whole budget for client_timeout.
                if chunk:
                    body.reserve(len(chunk))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        body.release()
        raise ClientTimeout(f"the body did not arrive within {timeout:g} s") from None
    except BaseException:
        body.release()
        raise
    body.data = b"".join(chunks)
    return body
