"""The request head, read once: its headers as the gateway looks them up, and the checks that need
nothing else (size, number of fields, protocol upgrades)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HeadersTooLarge, MalformedRequest, UpgradeNotSupported
from ..verifier import SignedParams
from .asgi import Scope

#: Header fields a request may have. A browser sends about twenty; thousands of tiny ones fit in
#: the byte limit and would each cost the gateway work.
MAX_HEADER_FIELDS = 100


@dataclass(slots=True)
class Head:
    """One request's head. ``headers`` maps each lower-case name to its value; a repeated header's
    values are joined with ", " as HTTP allows for lists, and its name is in ``repeated``."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    repeated: list[str] | None
    size: int  # bytes of names and values

    @property
    def origin(self) -> str | None:
        return self.headers.get("origin")

    @property
    def is_preflight(self) -> bool:
        return self.method == "OPTIONS" and "access-control-request-method" in self.headers

    def check(self, max_header_bytes: int) -> None:
        """Raise HeadersTooLarge or UpgradeNotSupported."""
        if self.size > max_header_bytes:
            raise HeadersTooLarge(f"request headers exceed {max_header_bytes} bytes")
        if "upgrade" in self.headers:
            raise UpgradeNotSupported(
                "this gateway speaks HTTP/1.1 only: WebSocket and other protocol upgrades are not supported",
                close=True,
            )

    def check_signed_headers_once(self, params: SignedParams) -> None:
        """A bound header sent twice reads differently in two places: refused (MalformedRequest)."""
        for name in self.repeated or ():
            if name in params.signed_headers:
                raise MalformedRequest(name, "is a signed header sent more than once; send it once, as signed")


def read_head(scope: Scope) -> Head:
    """The head of an ASGI ``http`` request (then :meth:`Head.check` it); raises HeadersTooLarge
    for more than MAX_HEADER_FIELDS fields, before any work that grows with their number."""
    raw = scope["headers"]
    if len(raw) > MAX_HEADER_FIELDS:
        raise HeadersTooLarge(f"the request has more than {MAX_HEADER_FIELDS} header fields")
    headers: dict[str, str] = {}
    repeated: list[str] | None = None
    size = 0
    for raw_name, raw_value in raw:
        size += len(raw_name) + len(raw_value)
        # ASGI servers lower-case names (uvicorn, hypercorn, daphne); one that kept a client's
        # case must not let "Upgrade" or a second "X-User-Id" past the checks below.
        name = raw_name.lower().decode("latin-1")
        value = raw_value.decode("latin-1")
        if name in headers:
            headers[name] = f"{headers[name]}, {value}"
            if repeated is None:
                repeated = []
            repeated.append(name)
        else:
            headers[name] = value
    path = scope.get("path") or "/"
    return Head(scope["method"], path, scope["query_string"].decode("latin-1"), headers, repeated, size)
