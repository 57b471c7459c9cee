"""Signing: turn "this client may make this upstream call" into a short-lived SW1 URL."""

from __future__ import annotations

import calendar
import datetime as _dt
import json as _json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from . import extensions, scheme
from .errors import SigningError
from .extensions import Policy

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A value may hold visible ASCII, space and tab: a control character cannot travel in a header,
# and a non-ASCII one is read as Latin-1 by some servers and as UTF-8 by others (Signway's
# server panics on it), so no verifier could be sure to see the signed bytes.
_BAD_VALUE_CHARS = re.compile(r"[^\t\x20-\x7e]")
_COMMON_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})  # tokens, known

#: Default lifetime of a signed URL, in seconds: a browser round trip takes one or two, and a
#: signed URL is a bearer token until it expires. The CLI's ``--expires`` and the docs use it too.
DEFAULT_EXPIRES_IN = 30


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """Everything a client must send to the gateway, exactly as it must send it.

    ``headers`` holds the bound headers except ``content-length``, which every HTTP client
    (and a browser's ``fetch``, which refuses to let scripts set it) derives from ``body``.
    """

    url: str
    method: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    expires_at: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form a backend hands to the browser: ``url, method, headers, body``."""
        return {"url": self.url, "method": self.method, "headers": dict(self.headers), "body": self.body}


def _proxy_param(upstream_url: str) -> str:
    """The ``X-Sw-Proxy`` value: the upstream URL normalised (as Signway does), then encoded."""
    if not isinstance(upstream_url, str) or not upstream_url:
        raise SigningError("upstream_url", "must be a non-empty absolute http(s) URL")
    if len(upstream_url) > _CACHED_URL_LENGTH:  # a long, likely one-off URL would bloat the cache
        return _checked_proxy_param.__wrapped__(upstream_url)
    return _checked_proxy_param(upstream_url)


_CACHED_URL_LENGTH = 2048


@lru_cache(maxsize=1024)
def _checked_proxy_param(upstream_url: str) -> str:
    # Cached: a backend signs for a handful of upstreams, over and over. A refusal raises, and
    # lru_cache never stores a raise, so a bad URL costs its full check every time.
    normalized = scheme.normalize_upstream(upstream_url)
    if normalized is None or not normalized.startswith(("http://", "https://")):
        raise SigningError(
            "upstream_url",
            f"{upstream_url[:200]!r} is not an absolute http(s) URL; "
            "give the full address, e.g. 'https://api.openai.com/v1/chat/completions'",
        )
    return scheme.enc(normalized)


@lru_cache(maxsize=256)
def _names_params(names: tuple[str, ...]) -> tuple[str, str]:
    """``X-Sw-SignedHeaders`` as sent (in binding order, encoded) and as signed (sorted). Cached:
    the names bound repeat from call to call even when the values do not."""
    return scheme.enc(";".join(names)), scheme.signed_headers_sorted(names)


@lru_cache(maxsize=64)
def _day_params(key_id: str, secret: str, short: str) -> tuple[str, scheme.DayMac]:
    """The day's ``X-Sw-Credential`` value and signing key: they change at midnight UTC only."""
    return scheme.enc(f"{key_id}/{short}"), scheme.day_mac(secret, short)


def _check_expires(expires_in: object) -> int:
    if type(expires_in) is not int or not 1 <= expires_in <= scheme.MAX_EXPIRES:
        raise SigningError(
            "expires_in", f"must be a whole number of seconds in 1..{scheme.MAX_EXPIRES}, got {expires_in!r}"
        )
    return expires_in


def _body_text(body: str | bytes) -> str:
    if isinstance(body, bytes):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SigningError(
                "body", f"bytes must be valid UTF-8 (SW1 binds text): {exc.reason} at byte {exc.start}"
            ) from None
    if isinstance(body, str):
        return body
    raise SigningError("body", f"must be str or bytes, got {type(body).__name__}; use json= for objects")


def _bound_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    bound: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = _header_key(name)
        if not isinstance(value, str):
            raise SigningError("headers", f"the value of {name!r} must be a str, got {type(value).__name__}")
        if (bad := _BAD_VALUE_CHARS.search(value)) is not None:
            raise SigningError(
                "headers",
                f"the value of {name!r} holds {bad.group()!r} at index {bad.start()}: header values must be visible "
                "ASCII, spaces and tabs (percent- or base64-encode other text)",
            )
        if key in bound:
            raise SigningError("headers", f"header {name!r} is given twice (names are case-insensitive)")
        bound[key] = value.strip(" \t")
    return bound


@lru_cache(maxsize=256)
def _header_key(name: object) -> str:
    """A header name as bound: checked, lower-cased. Cached: a backend binds the same few names."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise SigningError("headers", f"header name {name!r} is not an HTTP token")
    key = name.lower()
    if key.startswith(extensions.PREFIX):
        raise SigningError("headers", f"{extensions.PREFIX}* headers are set by the signer's own arguments")
    return key


class Signer:
    """Signs requests for one key of a gateway.

    >>> signer = Signer("app", "s3cret", "https://gateway.example.com")
    >>> req = signer.sign("POST", "https://api.openai.com/v1/chat/completions", json={"model": "m"})
    >>> req.to_dict()["headers"]
    {'content-type': 'application/json'}

    ``clock`` returns the current time in epoch seconds and ``nonce`` a fresh nonce for
    single-use URLs; tests inject their own.
    """

    def __init__(
        self,
        key_id: str,
        secret: str,
        gateway_url: str,
        *,
        expires_in: int = DEFAULT_EXPIRES_IN,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: secrets.token_urlsafe(16),
    ) -> None:
        if not isinstance(key_id, str) or not key_id:
            raise SigningError("key_id", "must be a non-empty string")
        if "/" in key_id:
            raise SigningError("key_id", f"{key_id!r} contains '/', so no SW1 verifier could ever find the key")
        if not isinstance(secret, str) or not secret:
            raise SigningError("secret", "must be a non-empty string")
        if not isinstance(gateway_url, str) or not gateway_url.startswith(("http://", "https://")):
            raise SigningError("gateway_url", f"{gateway_url!r} is not an absolute http(s) URL")
        if "?" in gateway_url or "#" in gateway_url:
            raise SigningError("gateway_url", "must not contain a query or fragment; the signer adds the query")
        self.key_id = key_id
        self._secret = secret
        self._base = gateway_url.rstrip("/") + "/?"
        self.expires_in = _check_expires(expires_in)
        self._clock = clock
        self._nonce = nonce
        self._memo: tuple[int, str, str, scheme.DayMac] = (-1, "", "", scheme.DayMac(b""))

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, gateway_url={self._base[:-2]!r})"

    def sign(
        self,
        method: str,
        upstream_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
        json: Any = None,
        expires_in: int | None = None,
        single_use: bool = False,
        uses: int | None = None,
        user: str | None = None,
        tenant: str | None = None,
        policy: Policy | None = None,
    ) -> SignedRequest:
        """Sign one request.

        ``json=`` serialises compactly, binds those exact bytes and binds
        ``Content-Type: application/json`` unless ``headers`` sets one.

        signgate's extensions (see :mod:`signgate.extensions`), all bound by the signature:
        ``single_use=True`` or ``uses=N`` lets a signgate gateway accept the URL once or N times;
        ``user=`` and ``tenant=`` attribute the request to opaque ids the gateway limits by;
        ``policy=`` binds rules for the body instead of (or as well as) the exact body.
        """
        if not isinstance(method, str) or (method not in _COMMON_METHODS and not _TOKEN.fullmatch(method)):
            raise SigningError("method", f"{method!r} is not an HTTP method token")
        expires = self.expires_in if expires_in is None else _check_expires(expires_in)
        proxy_param = _proxy_param(upstream_url)
        bound = _bound_headers(headers)
        if single_use or uses is not None or user is not None or tenant is not None or policy is not None:
            bound.update(self._extensions(single_use, uses, user, tenant, policy, (method, upstream_url)))

        text: str | None = None
        if json is not None:
            if body is not None:
                raise SigningError("json", "give body= or json=, not both")
            try:
                text = _json.dumps(json, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise SigningError("json", f"cannot be serialised as JSON: {exc}") from None
            bound.setdefault("content-type", "application/json")
        elif body is not None:
            text = _body_text(body)

        sent = dict(bound)
        if text is not None:
            length = str(len(text.encode()))
            given = bound.pop("content-length", None)
            if given is not None and given != length:
                raise SigningError("headers", f"content-length {given!r} does not match the body's {length} bytes")
            bound["content-length"] = length
            sent.pop("content-length", None)
        elif "content-length" in bound:
            raise SigningError("headers", "content-length is bound but there is no body")

        return self._sign(int(self._clock()), method, proxy_param, bound, sent, text, expires)

    def _extensions(
        self,
        single_use: bool,
        uses: int | None,
        user: str | None,
        tenant: str | None,
        policy: Policy | None,
        request: tuple[str, str],
    ) -> dict[str, str]:
        if uses is not None and (type(uses) is not int or not 1 <= uses <= extensions.MAX_USES):
            raise SigningError("uses", f"must be a whole number in 1..{extensions.MAX_USES}, got {uses!r}")
        if single_use and uses not in (None, 1):
            raise SigningError("uses", "single_use=True means uses=1; give one of them")
        nonce = self._nonce() if single_use or uses is not None else None
        return extensions.extension_headers(
            nonce=nonce, uses=uses, user=user, tenant=tenant, policy=policy, request=request
        )

    def _sign(
        self,
        now: int,
        method: str,
        proxy_param: str,
        bound: dict[str, str],
        sent: dict[str, str],
        text: str | None,
        expires: int,
    ) -> SignedRequest:
        """The SW1 steps (:mod:`signgate.scheme`) for checked input, signed at epoch second ``now``."""
        long, credential, mac = self._second(now)
        names_param, names_sorted = _names_params(tuple(bound))
        body_flag = "false" if text is None else "true"
        query = scheme.sw1_query(scheme.ALGORITHM, body_flag, credential, long, expires, proxy_param, names_param)
        canonical = scheme.canonical_request(
            method, query, scheme.canonical_headers(bound.items()), names_sorted, text or ""
        )
        sig = mac.hexdigest(scheme.string_to_sign(long, canonical).encode())  # scheme.signature, its key cached
        url = (
            f"{self._base}X-Sw-Algorithm={scheme.ALGORITHM}&X-Sw-Credential={credential}&X-Sw-Date={long}"
            f"&X-Sw-Expires={expires}&X-Sw-Proxy={proxy_param}&X-Sw-SignedHeaders={names_param}"
            f"&X-Sw-Body={body_flag}&X-Sw-Signature={sig}"
        )
        return SignedRequest(url, method, sent, text, now + expires)  # positional: measurably cheaper

    def _second(self, now: int) -> tuple[str, str, scheme.DayMac]:
        """``X-Sw-Date``, ``X-Sw-Credential`` and the day's key for epoch second ``now``, worked out
        once per second: a busy backend signs many URLs in each. Kept as one tuple, replaced whole,
        so threads sharing this signer never see the parts of two different seconds."""
        memo = self._memo
        if memo[0] != now:
            long = scheme.long_date(now)
            memo = self._memo = (now, long, *_day_params(self.key_id, self._secret, long[:8]))
        return memo[1], memo[2], memo[3]


def _epoch(moment: _dt.datetime | None) -> float:
    if moment is None:
        return time.time()
    if not isinstance(moment, _dt.datetime):
        raise SigningError("datetime_override", f"must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.UTC)
    return calendar.timegm(moment.timetuple())


def sign_url(
    id: str,  # noqa: A002 - signway-sdk's parameter names, so callers can switch by one import
    secret: str,
    host: str,
    proxy_url: str,
    expiry: int,
    method: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    datetime_override: _dt.datetime | None = None,
) -> str:
    """A drop-in for ``signway_sdk.sign_url`` that returns what the Signway server accepts.

    Naive datetimes are taken as UTC, aware ones converted to UTC; ``headers`` is not mutated.
    """
    expires = _check_expires(expiry)
    if datetime_override is None and type(id) is str and type(secret) is str and type(host) is str:
        signer = _drop_in_signer(id, secret, host)
    else:
        epoch = _epoch(datetime_override)
        signer = Signer(id, secret, host, clock=lambda: epoch)
    return signer.sign(method, proxy_url, headers=headers, body=body, expires_in=expires).url


@lru_cache(maxsize=64)
def _drop_in_signer(key_id: str, secret: str, gateway_url: str) -> Signer:
    # sign_url is called with the same key and gateway over and over: check them and build their
    # Signer once. A refusal raises and is not cached.
    return Signer(key_id, secret, gateway_url)
