"""A deliberately naive transcription of ../shared/reference/sw1.md, stage by stage.

It shares no code with signgate, so a test can compare each of signgate's stages with it and
say which stage differs. The public vectors anchor it: it must reproduce every vector URL.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from dataclasses import dataclass


def enc(s: str) -> str:
    out = []
    for byte in s.encode("utf-8"):
        ch = chr(byte)
        if ch.isascii() and (ch.isalnum() or ch in "-._~"):
            out.append(ch)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


@dataclass
class Stages:
    canonical_request: str
    string_to_sign: str
    signature: str
    url: str


def sign(
    key_id: str,
    secret: str,
    host: str,
    normalized_upstream: str,
    expiry: int,
    method: str,
    headers: list[tuple[str, str]],
    body: str | None,
    long: str,
) -> Stages:
    short = long[:8]
    bound = [(k.lower(), v.strip()) for k, v in headers]
    if body is not None:
        bound.append(("content-length", str(len(body.encode("utf-8")))))
    params = [
        ("X-Sw-Algorithm", "SW1-HMAC-SHA256"),
        ("X-Sw-Credential", f"{key_id}/{short}"),
        ("X-Sw-Date", long),
        ("X-Sw-Expires", str(expiry)),
        ("X-Sw-Proxy", normalized_upstream),
        ("X-Sw-SignedHeaders", ";".join(k for k, _ in bound)),
        ("X-Sw-Body", "true" if body is not None else "false"),
    ]
    query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params))
    canonical_headers = "\n".join(sorted(f"{k}:{v}" for k, v in bound))
    signed = ";".join(sorted(k for k, _ in bound))
    canonical = f"{method}\n/\n{query}\n{canonical_headers}\n\n{signed}\n{body or ''}"
    to_sign = f"SW1-HMAC-SHA256\n{long}\n{short}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    day = hmac.new(f"SW1-HMAC-SHA256{secret}".encode(), short.encode(), hashlib.sha256).digest()
    sig = hmac.new(day, to_sign.encode(), hashlib.sha256).hexdigest()
    url = host.rstrip("/") + "/?" + "&".join(f"{k}={enc(v)}" for k, v in params) + f"&X-Sw-Signature={sig}"
    return Stages(canonical, to_sign, sig, url)


def query_params(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
