"""A small HTTP client for gateway tests, on the standard library's http.client (real sockets)."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from signgate import SignedRequest


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        return str(self.json()["error"]["code"])


def call(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | str | None = None, timeout: float = 30
) -> Reply:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        data = body.encode() if isinstance(body, str) else body  # http.client would send str as Latin-1
        chunked = (headers or {}).get("Transfer-Encoding") == "chunked"
        conn.request(method, target, body=data, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def send(req: SignedRequest, headers: dict[str, str] | None = None, body: bytes | str | None = None) -> Reply:
    """Send a signed request exactly as signed, with optional extra headers or a replaced body."""
    return call(req.method, req.url, {**req.headers, **(headers or {})}, req.body if body is None else body)


def usage_of(upstream_url: str, user: str) -> dict[str, Any]:
    """The one usage record the test upstream's webhook (``/usage``) received for ``user``,
    waiting up to 10 s for its delivery."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [r for r in call("GET", upstream_url + "/usage").json() if r["user"] == user]
        if records:
            assert len(records) == 1, records
            return dict(records[0])
        time.sleep(0.05)
    raise AssertionError(f"no usage record for {user}")
