"""Verification: decide whether a request carries a valid, unexpired SW1 signature.

Use it in two steps when the body is not read yet (the gateway does)::

    params = parse_query(raw_query)          # cheap, no crypto; raises MalformedRequest
    if params.body_bound: body = await read_body()
    verified = verifier.verify(params, method, headers, body)

or in one step with :meth:`Verifier.verify_request`.
"""

from __future__ import annotations

import calendar
import datetime
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote_to_bytes

from . import scheme
from .errors import (
    BadSignature,
    BodyMismatch,
    Expired,
    ExpiryTooLong,
    MalformedRequest,
    MissingHeader,
    NotYetValid,
    UnknownKey,
    UnsupportedAlgorithm,
)

_DATE = re.compile(r"\d{8}T\d{6}Z")
_DIGITS = re.compile(r"[0-9]{1,10}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_NAMES = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+(;[!#$%&'*+\-.^_`|~0-9a-z]+)*")
_PARAMS = frozenset(scheme.ALL_PARAMS)

#: A key lookup: key id -> its secrets (several while a secret is being rotated), or None.
KeyLookup = Callable[[str], Sequence[str] | None]


@dataclass(frozen=True, slots=True)
class SignedParams:
    """The parsed ``X-Sw-*`` parameters of one request, not yet verified."""

    algorithm: str
    credential: str
    date: str
    expires: int
    proxy: str
    signed_headers: tuple[str, ...]
    body_bound: bool
    signature: str
    key_id: str
    signed_at: int

    def pairs(self) -> list[tuple[str, str]]:
        """The seven signed (name, decoded value) pairs."""
        return [
            (scheme.X_ALGORITHM, self.algorithm),
            (scheme.X_CREDENTIAL, self.credential),
            (scheme.X_DATE, self.date),
            (scheme.X_EXPIRES, str(self.expires)),
            (scheme.X_PROXY, self.proxy),
            (scheme.X_SIGNED_HEADERS, ";".join(self.signed_headers)),
            (scheme.X_BODY, "true" if self.body_bound else "false"),
        ]


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """What a valid signature vouches for.

    ``upstream_url`` is X-Sw-Proxy exactly as signed; ``forward_url`` is its WHATWG
    serialisation, the address a gateway forwards to (as the Signway server does).
    """

    key_id: str
    upstream_url: str
    forward_url: str
    signed_at: int
    expires_at: int
    bound_headers: dict[str, str]
    body: str | None


def _decode(raw: str, name: str) -> str:
    # form-urlencoded decoding, as the Signway server does: '+' is a space.
    if "%" not in raw and "+" not in raw:
        return raw
    try:
        return _unquote(raw) if len(raw) <= 512 else _unquote.__wrapped__(raw)
    except UnicodeDecodeError:
        raise MalformedRequest(name, "is not valid UTF-8 after percent-decoding") from None


@lru_cache(maxsize=4096)
def _unquote(raw: str) -> str:
    # The upstream and credential of a key repeat from request to request; see scheme.enc.
    return unquote_to_bytes(raw.replace("+", " ")).decode("utf-8")


@lru_cache(maxsize=64)
def _day_epoch(short: str) -> int:
    return calendar.timegm(datetime.date(int(short[:4]), int(short[4:6]), int(short[6:8])).timetuple())


def _epoch_of(long: str) -> int:
    """Epoch seconds of ``YYYYMMDDTHHMMSSZ``; ValueError when it names no real moment."""
    hours, minutes, seconds = int(long[9:11]), int(long[11:13]), int(long[13:15])
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(long)
    return _day_epoch(long[:8]) + hours * 3600 + minutes * 60 + seconds


def parse_query(raw_query: str) -> SignedParams:
    """Parse the ``X-Sw-*`` parameters from a raw query string (without ``?``).

    Other parameters are ignored, as the Signway server ignores them. Raises
    :class:`MalformedRequest` naming the first missing, repeated or malformed parameter.
    """
    if not raw_query.isascii():
        try:
            raw_query.encode()
        except UnicodeEncodeError:  # lone surrogates, e.g. from bytes decoded with surrogateescape
            raise MalformedRequest("query", "is not valid UTF-8 text; send the signed URL unchanged") from None
    found: dict[str, str] = {}
    for part in raw_query.split("&"):
        raw_name, _, raw_value = part.partition("=")
        if raw_name in _PARAMS:  # as sent by every signer: no '%' or '+' to decode
            name = raw_name
        elif "%" in raw_name or "+" in raw_name:
            name = _decode(raw_name, "query")
            if name not in _PARAMS:
                continue
        else:
            continue
        if name in found:
            raise MalformedRequest(name, "is given more than once; send each X-Sw-* parameter once")
        found[name] = raw_value if "%" not in raw_value and "+" not in raw_value else _decode(raw_value, name)
    if len(found) != len(_PARAMS):  # a repeat raised above, so a short count means one is missing
        for name in scheme.ALL_PARAMS:
            if name not in found:
                raise MalformedRequest(name, "is missing; use the signed URL exactly as the backend returned it")

    date = found[scheme.X_DATE]
    if not _DATE.fullmatch(date):
        raise MalformedRequest(scheme.X_DATE, "must look like 20240131T235959Z")
    try:
        signed_at = _epoch_of(date)
    except ValueError:
        raise MalformedRequest(scheme.X_DATE, "is not a valid UTC date and time") from None

    credential = found[scheme.X_CREDENTIAL]
    key_id, slash, short = credential.partition("/")
    if not key_id or not slash or short != date[:8]:
        raise MalformedRequest(scheme.X_CREDENTIAL, "must be '<key id>/<YYYYMMDD of X-Sw-Date>'")

    expires_raw = found[scheme.X_EXPIRES]
    if not _DIGITS.fullmatch(expires_raw) or not 0 < (expires := int(expires_raw)) <= scheme.MAX_EXPIRES:
        raise MalformedRequest(scheme.X_EXPIRES, f"must be a whole number of seconds in 1..{scheme.MAX_EXPIRES}")

    names = found[scheme.X_SIGNED_HEADERS]
    if names and not _NAMES.fullmatch(names):
        raise MalformedRequest(scheme.X_SIGNED_HEADERS, "must be lower-case header names joined with ';'")
    signed_headers = tuple(names.split(";")) if names else ()
    if len(set(signed_headers)) != len(signed_headers):
        raise MalformedRequest(scheme.X_SIGNED_HEADERS, "names a header more than once")

    body = found[scheme.X_BODY]
    if body not in ("true", "false"):
        raise MalformedRequest(scheme.X_BODY, "must be 'true' or 'false'")
    if body == "true" and "content-length" not in signed_headers:
        raise MalformedRequest(scheme.X_SIGNED_HEADERS, "must include content-length when X-Sw-Body is true")

    sig = found[scheme.X_SIGNATURE]
    if not _HEX64.fullmatch(sig):  # hmac.compare_digest raises TypeError on non-ASCII text
        raise MalformedRequest(scheme.X_SIGNATURE, "must be 64 hexadecimal characters")

    # Positional: a frozen dataclass's keyword call costs measurably more on every request.
    return SignedParams(
        found[scheme.X_ALGORITHM],  # algorithm
        credential,
        date,
        expires,
        found[scheme.X_PROXY],  # proxy
        signed_headers,
        body == "true",  # body_bound
        sig,  # signature
        key_id,
        signed_at,
    )


class Verifier:
    """Checks SW1 signatures against a key lookup.

    ``keys`` maps a key id to its secrets (a mapping, or a callable returning ``None`` for an
    unknown id). Every secret of the key is tried, so a secret can be rotated without downtime.
    ``skew`` bounds how far in the future X-Sw-Date may lie; ``max_expires`` caps the lifetime
    a URL may claim. ``clock`` returns epoch seconds; tests inject their own.
    """

    def __init__(
        self,
        keys: Mapping[str, Sequence[str]] | KeyLookup,
        *,
        skew: int = 60,
        max_expires: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lookup: KeyLookup = keys.get if isinstance(keys, Mapping) else keys
        self.skew = skew
        self.max_expires = max_expires
        self._clock = clock

    def verify_request(
        self,
        method: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        path: str = "/",
    ) -> VerifiedRequest:
        """Parse and verify in one call; see :meth:`verify`."""
        return self.verify(parse_query(raw_query), method, headers, body, path=path)

    def verify(
        self,
        params: SignedParams,
        method: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        path: str = "/",
    ) -> VerifiedRequest:
        """Verify parsed parameters against the request's method, headers and body.

        ``headers`` is looked up by lower-case name. ``path`` is the request path: SW1 signs
        ``/``, but signway-sdk signs the gateway URL's path, so that form is accepted too.
        Raises a :class:`~signgate.errors.VerificationError` subclass naming the cause.
        """
        if params.algorithm != scheme.ALGORITHM:
            raise UnsupportedAlgorithm(
                f"X-Sw-Algorithm {params.algorithm[:40]!r} is not supported; use {scheme.ALGORITHM}"
            )
        if self.max_expires is not None and params.expires > self.max_expires:
            raise ExpiryTooLong(
                f"X-Sw-Expires is {params.expires} s but this gateway accepts at most {self.max_expires} s"
            )
        secrets = self._lookup(params.key_id)
        if not secrets:
            raise UnknownKey("the key id in X-Sw-Credential is not known to this gateway")

        bound: dict[str, str] = {}
        for name in params.signed_headers:
            value = headers.get(name)
            if value is None:
                raise MissingHeader(name)
            # Only space and tab are whitespace around a header value (RFC 9110 5.5); anything
            # else is part of the value, so it is signed and forwarded as sent.
            bound[name] = value.strip(" \t")

        text: str | None = None
        if params.body_bound:
            data = body or b""
            if bound["content-length"] != str(len(data)):
                raise BodyMismatch(
                    f"the body is {len(data)} bytes but content-length says {bound['content-length'][:20]}; "
                    "send the body exactly as signed"
                )
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise BodyMismatch("the bound body is not valid UTF-8") from None

        if not self._signature_matches(params, method, bound, text, secrets, path):
            raise BadSignature(
                "the signature does not match this request; send the method, headers and body "
                "exactly as signed, or ask the backend for a new URL"
            )

        # Expired from the instant X-Sw-Date + X-Sw-Expires is reached, as Signway decides, not
        # at the end of that second.
        clock = self._clock()
        now = int(clock)
        expires_at = params.signed_at + params.expires
        if clock >= expires_at:
            raise Expired(now - expires_at, now)
        if params.signed_at > clock + self.skew:
            raise NotYetValid(params.signed_at - now, self.skew, now)

        forward = scheme.normalize_upstream(params.proxy)
        if forward is None or not forward.startswith(("http://", "https://")):
            raise MalformedRequest(scheme.X_PROXY, "is not an absolute http(s) URL")
        # key_id, upstream_url, forward_url, signed_at, expires_at, bound_headers, body
        return VerifiedRequest(params.key_id, params.proxy, forward, params.signed_at, expires_at, bound, text)

    @staticmethod
    def _signature_matches(
        params: SignedParams,
        method: str,
        bound: dict[str, str],
        text: str | None,
        secrets: Sequence[str],
        path: str,
    ) -> bool:
        header_block = scheme.canonical_headers(bound.items())
        names = scheme.signed_headers_sorted(params.signed_headers)
        query = _canonical_query(params)
        body = text or ""
        try:
            if _matches(params, scheme.canonical_request(method, query, header_block, names, body), secrets):
                return True
            # signway-sdk's defects that still give verifiable URLs: it encodes spaces as '+'
            # and signs the gateway URL's path. Tried only after the SW1 form has failed.
            legacy = "&".join(sorted(f"{quote_plus(k)}={quote_plus(v)}" for k, v in params.pairs()))
            if legacy != query and _matches(
                params, scheme.canonical_request(method, legacy, header_block, names, body), secrets
            ):
                return True
            return bool(path and path != "/") and _matches(
                params, scheme.canonical_request(method, legacy, header_block, names, body, quote(path)), secrets
            )
        except UnicodeEncodeError:
            # A method, header value or path that is not UTF-8 text (lone surrogates): never signed.
            return False


def _canonical_query(params: SignedParams) -> str:
    """``scheme.canonical_query(params.pairs())``, built directly as the signer builds it."""
    return scheme.sw1_query(
        scheme.enc(params.algorithm),
        "true" if params.body_bound else "false",
        scheme.enc(params.credential),
        params.date,  # checked against _DATE: nothing to encode
        params.expires,
        scheme.enc(params.proxy),
        scheme.enc(";".join(params.signed_headers)),
    )


def _matches(params: SignedParams, canonical: str, secrets: Sequence[str]) -> bool:
    to_sign = scheme.string_to_sign(params.date, canonical)
    short = params.date[:8]
    matched = False
    for secret in secrets:
        # Compare against every secret: no early exit that a timer could observe.
        matched |= hmac.compare_digest(scheme.signature(secret, short, to_sign), params.signature)
    return matched
