"""``signgate serve``'s access log writer: lines batched per event-loop iteration.

Through ``logging``, each line cost a LogRecord, a handler lock, a write and a flush: about a
tenth of the gateway's CPU for a small request. Here a line is appended to a list, and the list
is written out once per event-loop iteration (``loop.call_soon``), so a line still reaches
standard output before the loop next waits for the network, and a busy loop makes one write for
many requests. :meth:`AccessLogWriter.flush` at shutdown (and at exit) writes what is left, so
SIGTERM loses no line.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
from typing import TextIO

logger = logging.getLogger("signgate.gateway")

#: Writes to a pipe are atomic up to PIPE_BUF (4096 bytes on Linux, at least 512 by POSIX):
#: with several workers on one pipe, a chunk of whole lines no larger than that never interleaves
#: with another worker's, as one line per write never did.
_CHUNK = 4096
#: Lines held before writing without waiting for the loop: bounds the memory of one iteration.
_MAX_LINES = 1024


class AccessLogWriter:
    """Writes lines (without their newline) to ``stream``, default standard output, in batches.

    For one event loop in one thread, as the gateway runs; called outside a running loop it
    writes at once. A write that fails (standard output closed) drops those lines and says so
    once on the ``signgate.gateway`` logger, as a failing log handler would not stop the gateway.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        self._failed = False
        atexit.register(self.flush)

    def __call__(self, line: str) -> None:
        lines = self._lines
        lines.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if len(lines) >= _MAX_LINES:
            self.flush()
        elif self._scheduled_on is not loop:  # once per iteration; again if a new loop took over
            self._scheduled_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every buffered line now."""
        self._scheduled_on = None
        lines = self._lines
        if not lines:
            return
        self._lines = []
        stream = self._stream if self._stream is not None else sys.stdout
        try:
            chunk: list[str] = []
            size = 0
            for line in lines:
                if size + len(line) >= _CHUNK and chunk:
                    stream.write("".join(chunk))
                    stream.flush()
                    chunk.clear()
                    size = 0
                chunk.append(line + "\n")
                size += len(line) + 1
            stream.write("".join(chunk))
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream is closed
            if not self._failed:
                self._failed = True
                logger.error("cannot write the access log (%s): its lines are dropped", exc)

    def close(self) -> None:
        """Flush, and stop flushing at exit (the stream may be gone by then)."""
        self.flush()
        atexit.unregister(self.flush)
