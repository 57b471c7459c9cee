"""CORS, configured once: which browser origins may read the gateway's answers.

CORS is not access control (the signature is); it decides whether a page on another origin may
read an answer, such as a refusal's code. The gateway's origins and each key's add up; ``*``
allows any.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import OriginNotAllowed
from .config import KeyConfig

#: What a browser may read from an answer besides the safelisted headers.
EXPOSE = b"x-signgate-error, x-request-id, retry-after, content-type"


class Cors:
    __slots__ = ("_origins", "_wildcard")

    def __init__(self, origins: Iterable[str]) -> None:
        self._origins = frozenset(origin.lower() for origin in origins)  # compared lower-cased
        self._wildcard = "*" in self._origins

    def allowed(self, origin: str | None, key: KeyConfig | None) -> str | None:
        """The value of Access-Control-Allow-Origin for ``origin``, or None."""
        if origin is None:
            return None
        if self._wildcard or (key is not None and "*" in key.cors_origins):
            return "*"
        lowered = origin.lower()
        if lowered in self._origins or (key is not None and lowered in key.cors_origins):
            return origin
        return None

    def headers(self, origin: str | None, key: KeyConfig | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an answer (and ``Vary: origin`` whenever an origin was sent)."""
        allowed = self.allowed(origin, key)
        if allowed is None:
            return [(b"vary", b"origin")] if origin is not None else []
        return [
            (b"access-control-allow-origin", allowed.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE),
            (b"vary", b"origin"),
        ]

    def preflight(
        self, origin: str | None, key: KeyConfig | None, method: str, requested_headers: str
    ) -> list[tuple[bytes, bytes]]:
        """The headers of a preflight's 204; raises OriginNotAllowed."""
        allowed = self.allowed(origin, key)
        if allowed is None:
            raise OriginNotAllowed("this origin may not call the gateway; configure --cors-origin")
        out = [
            (b"access-control-allow-origin", allowed.encode("latin-1")),
            (b"access-control-allow-methods", method.encode("latin-1")),
            (b"access-control-max-age", b"600"),
            (b"vary", b"origin"),
            (b"content-length", b"0"),
        ]
        if requested_headers:
            out.append((b"access-control-allow-headers", requested_headers.encode("latin-1")))
        return out
