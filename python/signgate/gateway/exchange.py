"""One request as the gateway answers it: what the access log records, and what every answer needs
(the request id, the client's origin and the key, for CORS)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_str
from random import getrandbits

from .config import KeyConfig


def request_id() -> str:
    """A new request id: 16 hex digits. It only tells requests apart (it is no secret, and grants
    nothing), so it comes from the random module's generator, seeded from the system and again in
    a forked child, without the system call per request that os.urandom makes."""
    return f"{getrandbits(64):016x}"


@dataclass(slots=True)
class Exchange:
    """One request and its answer, as far as they are known. The access log line holds no query
    string, header value or body: the query carries the signature."""

    request_id: str
    method: str
    started: float
    key: KeyConfig | None = None
    origin: str | None = None
    upstream_host: str = "-"
    status: int = 0
    code: str = "-"
    bytes_in: int = 0
    bytes_out: int = 0
    ttfb: float | None = None
    forwarded: bool = False  # the request may have reached the upstream: it is accounted for

    @classmethod
    def start(cls, method: str) -> Exchange:
        # Positional: a dataclass's keyword call costs measurably more on every request.
        return cls(request_id(), method, time.perf_counter())

    def log_line(self) -> str:
        """The access log line: exactly what ``json.dumps`` of these fields gives, for ~60% of its
        cost. Every string goes through json's own escaping (ASCII only); the numbers are ints and
        floats, which json writes as ``repr`` does."""
        ttfb = "null" if self.ttfb is None else repr(round(self.ttfb * 1000, 2))
        key_id = "-" if self.key is None else self.key.id
        return (
            f'{{"ts": {round(time.time(), 3)!r}, "request_id": {_json_str(self.request_id)}, '
            f'"method": {_json_str(self.method[:16])}, "key_id": {_json_str(key_id[:64])}, '
            f'"upstream_host": {_json_str(self.upstream_host)}, "status": {self.status!r}, '
            f'"code": {_json_str(self.code)}, '
            f'"duration_ms": {round((time.perf_counter() - self.started) * 1000, 2)!r}, "ttfb_ms": {ttfb}, '
            f'"bytes_in": {self.bytes_in!r}, "bytes_out": {self.bytes_out!r}}}'
        )
