"""uvicorn's httptools protocol with a deadline for the request head.

uvicorn does not bound the time a request head may take: a client that sends a header a byte at
a time holds its connection forever (slowloris), and enough of them exhaust the gateway's file
descriptors. With :class:`GatewayHttpProtocol` the request head must be complete within
``header_timeout`` seconds of the connection opening or of the previous response ending;
otherwise the connection is closed (with a 408 if part of a head had arrived).

``header_timeout`` is a class attribute, set once per process by :func:`configure` before
serving, because uvicorn builds the protocol itself (and, with several workers, in each worker
process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import GatewayConfig

logger = logging.getLogger("signgate.gateway")


def _error_response(status: bytes, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "request_id": os.urandom(8).hex()}}).encode()
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body) + 1).encode() + b"\r\n",
            b"cache-control: no-store\r\n",
            b"x-signgate-error: " + code.encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
            b"\n",
        ]
    )


class GatewayHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a request-head deadline (see the module docstring)."""

    header_timeout: ClassVar[float] = 10.0

    _head_timer: asyncio.TimerHandle | None = None
    _in_head = True  # from the end of one request (or the connection's start) to the end of the next head
    _head_started = False  # a byte of that next head has arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._head_started = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._in_head = self._head_started = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # A request already parsed and queued behind this one (pipelining) needs no deadline.
        waiting = bool(self.pipeline)
        super().on_response_complete()
        if not waiting and not self.transport.is_closing():
            self._arm_head_timer()

    # -- the deadline ----------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._in_head and self._head_started:
            logger.info("closed a connection whose request head took longer than %g s", self.header_timeout)
            message = f"the request headers did not arrive within {self.header_timeout:g} s"
            self._refuse(b"408 Request Timeout", "client_timeout", message)
        else:
            self.transport.close()

    def _refuse(self, status: bytes, code: str, message: str) -> None:
        self._cancel_head_timer()
        # Never write into the middle of an earlier request's response (pipelining): just close.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_error_response(status, code, message))
        self.transport.close()


def configure(config: GatewayConfig) -> type[GatewayHttpProtocol]:
    """Set this process's head deadline from ``config``; returns the class to give uvicorn as ``http``."""
    GatewayHttpProtocol.header_timeout = config.header_timeout
    return GatewayHttpProtocol
