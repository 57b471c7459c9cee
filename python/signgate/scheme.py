"""The SW1-HMAC-SHA256 scheme as named, pure steps.

Each function is one stage of ``docs/protocol.md`` so that tests can check the stages one by one:
:func:`normalize_upstream`, :func:`canonical_query`, :func:`canonical_headers`,
:func:`canonical_request`, :func:`string_to_sign`, :func:`day_key` and :func:`signature`.
The signer and the verifier both build on these and on nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from urllib.parse import quote

import ada_url

ALGORITHM = "SW1-HMAC-SHA256"
MAX_EXPIRES = 4_294_967_295

X_ALGORITHM = "X-Sw-Algorithm"
X_CREDENTIAL = "X-Sw-Credential"
X_DATE = "X-Sw-Date"
X_EXPIRES = "X-Sw-Expires"
X_PROXY = "X-Sw-Proxy"
X_SIGNED_HEADERS = "X-Sw-SignedHeaders"
X_BODY = "X-Sw-Body"
X_SIGNATURE = "X-Sw-Signature"

#: The signed parameters in the order they appear in a URL (step 4 of the scheme).
SIGNED_PARAMS = (X_ALGORITHM, X_CREDENTIAL, X_DATE, X_EXPIRES, X_PROXY, X_SIGNED_HEADERS, X_BODY)
#: Every parameter the scheme defines, the signature included.
ALL_PARAMS = (*SIGNED_PARAMS, X_SIGNATURE)


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")
_CACHED_LENGTH = 512


def enc(value: str) -> str:
    """Percent-encode every byte of the UTF-8 form except ``A-Z a-z 0-9 - . _ ~``."""
    if _UNRESERVED.fullmatch(value):
        return value
    # Upstream URLs and credentials repeat from request to request, so their encodings are
    # cached; long values are not, so that a cache entry stays small whatever a client sends.
    return _enc_cached(value) if len(value) <= _CACHED_LENGTH else quote(value, safe="-._~")


@lru_cache(maxsize=4096)
def _enc_cached(value: str) -> str:
    return quote(value, safe="-._~")


@lru_cache(maxsize=8)
def long_date(epoch: int) -> str:
    """``YYYYMMDDTHHMMSSZ`` of a UTC epoch second (cached: a busy signer asks for the same second)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def normalize_upstream(url: str) -> str | None:
    """Serialise ``url`` as a WHATWG URL parser does (Signway's server does the same).

    Returns ``None`` when ``url`` is not an absolute URL at all. The scheme is not checked here.
    """
    # Cached as enc() is: the URLs a gateway sees repeat, and long ones, which a client may send
    # by the thousand without a valid signature, would hold up to 60 KiB an entry.
    return _normalize_cached(url) if len(url) <= _CACHED_LENGTH else _normalize(url)


@lru_cache(maxsize=4096)
def _normalize_cached(url: str) -> str | None:
    return _normalize(url)


def _normalize(url: str) -> str | None:
    try:
        return str(ada_url.normalize_url(url))
    except ValueError:
        return None


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Decoded (name, value) pairs, sorted, re-encoded with :func:`enc`, joined with ``&``."""
    return "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(pairs))


def sw1_query(algorithm: str, body: str, credential: str, date: str, expires: int, proxy: str, names: str) -> str:
    """``canonical_query`` of the seven ``X-Sw-*`` parameters other than the signature, from
    values already encoded with :func:`enc` (``date``, ``expires`` and the ``true``/``false`` body
    flag need none). Built directly: the names are distinct, so sorting the pairs sorts by name,
    Algorithm < Body < Credential < Date < Expires < Proxy < SignedHeaders."""
    return (
        f"X-Sw-Algorithm={algorithm}&X-Sw-Body={body}&X-Sw-Credential={credential}"
        f"&X-Sw-Date={date}&X-Sw-Expires={expires}&X-Sw-Proxy={proxy}&X-Sw-SignedHeaders={names}"
    )


_OWS = " \t"


def canonical_headers(headers: Iterable[tuple[str, str]]) -> str:
    """``name:value`` lines for the bound headers: lower-case names, values without the spaces
    and tabs around them (only those: HTTP's whitespace), sorted."""
    return "\n".join(sorted([f"{k.lower()}:{v.strip(_OWS)}" for k, v in headers]))


def signed_headers_sorted(names: Sequence[str]) -> str:
    """The bound header names, lower-case, sorted, joined with ``;``."""
    return ";".join(sorted([n.lower() for n in names]))


def canonical_request(
    method: str,
    query: str,
    headers: str,
    signed_headers: str,
    body: str,
    path: str = "/",
) -> str:
    """Join the stages into the canonical request. ``path`` is always ``/`` in SW1."""
    return f"{method}\n{path}\n{query}\n{headers}\n\n{signed_headers}\n{body}"


def string_to_sign(long: str, canonical: str) -> str:
    """The algorithm, the dates and the hex SHA-256 of the canonical request."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{long}\n{long[:8]}\n{digest}"


@lru_cache(maxsize=1024)
def day_key(secret: str, short: str) -> bytes:
    """The per-day signing key: derived once per secret and day, then served from a cache."""
    return hmac.digest((ALGORITHM + secret).encode(), short.encode(), "sha256")


def signature(secret: str, short: str, to_sign: str) -> str:
    """The lower-case hex HMAC-SHA256 of the string to sign under the day's key."""
    return day_mac(secret, short).hexdigest(to_sign.encode())


# RFC 2104's pads, as translation tables: key.translate(_IPAD) is key XOR 0x36 byte by byte.
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class DayMac:
    """HMAC-SHA256 under one day's key, with the key's two padded blocks hashed once.

    RFC 2104 written out over two ``hashlib`` objects: signing copies them and hashes only the
    message. Same result as ``hmac.new(key, message, "sha256")``; the ``hmac`` module's Python
    wrapper around its copies costs twice as much as this at the sizes SW1 signs. The two
    objects are never updated themselves, only copied, so one instance serves every thread."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # longer than SHA-256's block: RFC 2104 hashes it first (a day key is 32)
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


@lru_cache(maxsize=1024)
def day_mac(secret: str, short: str) -> DayMac:
    """The day's key ready to sign with (see :class:`DayMac`), from a cache like :func:`day_key`."""
    return DayMac(day_key(secret, short))
