"""Which headers travel: from the browser to the upstream, and from the upstream's answer back.

Both directions are lists of what may not pass, kept here side by side: a header that would let a
browser claim another client, path, method or identity to the upstream is never forwarded, and a
header that would let an upstream speak for the gateway, or change the security of the gateway's
origin (or order the proxy in front of it), never reaches the browser. docs/protocol.md states
the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .config import KeyConfig

# Hop-by-hop headers (RFC 9110 7.6.1) and what must never travel upstream from a browser.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_UPSTREAM = _HOP_BY_HOP | {
    "host",
    "cookie",
    "authorization",
    "content-length",
    "origin",
    "referer",
    "expect",
    "accept-encoding",
    "forwarded",
    "forwarded-for",
    "x-forwarded",
    "x-original-forwarded-for",
    "x-original-host",
    "front-end-https",
    "x-url-scheme",
    "via",
    # Where a request came from: only a proxy the operator runs may say, never the browser.
    "x-real-ip",
    "x-proxyuser-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-host",
    # Who the user is, as an authenticating proxy in front of an upstream tells it.
    "remote-user",
    "x-remote-user",
    "x-remote-email",
    "x-remote-groups",
    "x-webauth-user",
    # Another method or path than the signed one, for servers and frameworks that honour them.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-middleware-subrequest",  # Next.js skips its middleware (often the auth check) for it
}
# Whole families: signgate's own extensions, the browser's fetch metadata, every forwarding header,
# and Envoy's controls (original path, retries, timeouts), which it obeys from inside the mesh.
_NOT_UPSTREAM_PREFIXES = ("x-signgate-", "sec-", "x-forwarded-", "proxy-", "x-envoy-", "x-auth-request-")
# What an upstream's answer may not say to the browser: hop-by-hop and framing headers, whatever
# speaks for the gateway (its error codes, its request id, the date, CORS, caching), cookies,
# whatever changes the security of the gateway's origin for every later page (HSTS, Alt-Svc,
# Clear-Site-Data, reporting, isolation and permission policies, authentication prompts), and
# what the proxy or CDN in front of the gateway obeys (nginx's X-Accel-Redirect serves any of its
# internal locations; X-Accel-Expires, Surrogate-Control and CDN-Cache-Control make it cache).
_NOT_DOWNSTREAM = _HOP_BY_HOP | {
    "date",  # the server adds its own; two would break the field's single-value rule
    "server",
    "x-request-id",
    "x-content-type-options",  # the gateway sets its own
    "x-sendfile",
    "x-lighttpd-send-file",
    "surrogate-control",
    "surrogate-key",
    "cdn-cache-control",
    "cloudflare-cdn-cache-control",
    "edge-control",
    "set-cookie",
    "set-cookie2",
    "cache-control",
    "expires",
    "vary",
    "strict-transport-security",
    "alt-svc",
    "clear-site-data",
    "public-key-pins",
    "public-key-pins-report-only",
    "expect-ct",
    "nel",
    "report-to",
    "reporting-endpoints",
    "origin-agent-cluster",
    "permissions-policy",
    "feature-policy",
    "document-policy",
    "service-worker-allowed",
    "www-authenticate",
    "refresh",
    "link",
    "accept-ch",
    "critical-ch",
    "timing-allow-origin",
    "x-frame-options",
    "x-xss-protection",
    "x-dns-prefetch-control",
    "x-permitted-cross-domain-policies",
}
_NOT_DOWNSTREAM_PREFIXES = (
    b"x-signgate-",
    b"access-control-",
    b"content-security-policy",
    b"cross-origin-",
    b"sec-",
    b"x-accel-",
    b"x-litespeed-",
)
_NOT_DOWNSTREAM_BYTES = frozenset(name.encode() for name in _NOT_DOWNSTREAM)
# On every relayed answer: whatever type an upstream names (text/html, a script), the browser
# neither sniffs nor runs it as a page of the gateway's origin, where it could read other
# answers or register a service worker over every later request.
RELAYED = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; sandbox"),
]
# What an ASGI server refuses to write (signgate serve's protocol and uvicorn's raise mid-response):
# header names that are not tokens, values with control characters. llhttp's lenient corners may
# let some through from an upstream.
_BAD_NAME = re.compile(rb'[\x00-\x1f\x7f()<>@,;:\\\[\]={} \t"]')
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def upstream_headers(
    request_headers: Sequence[tuple[bytes, bytes]], key: KeyConfig, bound: Mapping[str, str]
) -> list[tuple[str, str]]:
    """The client's headers without those that must not travel upstream; every bound header
    exactly as it was verified; then the key's headers, which replace the client's."""
    added = key.header_names
    dropped: set[str] = set()  # client headers dropped by name: those Connection lists, and below
    for raw_name, raw_value in request_headers:
        if raw_name.lower() == b"connection":
            dropped.update(v.strip(" \t").lower() for v in raw_value.decode("latin-1").split(","))
    # CGI-style servers (WSGI, Rack, PHP) read '_' in a header name as '-': X_Forwarded_For
    # arrives there as X-Forwarded-For, and X_User_Id beside a bound X-User-Id. So no client
    # header with '_' goes upstream (nginx's default too), nor one that a bound or key header
    # with '_' would be read as.
    if any("_" in name for name in bound) or any("_" in name for name in added):
        dropped.update(name.replace("_", "-") for name in (*bound, *added))
    out: list[tuple[str, str]] = []
    for raw_name, raw_value in request_headers:
        name = raw_name.lower().decode("latin-1")  # as read_head reads it, whatever the server sent
        if (
            "_" in name
            or name in bound
            or name in added
            or name in dropped
            or name in _NOT_UPSTREAM
            or name.startswith(_NOT_UPSTREAM_PREFIXES)
        ):
            continue
        out.append((name, raw_value.decode("latin-1")))
    # A bound header is never dropped by the client (naming it in Connection does nothing).
    out.extend((name, value) for name, value in bound.items() if name not in added and not not_upstream(name))
    out.extend(key.headers)
    # Ask for the bytes as they are, so the gateway can relay (and later read) them unchanged.
    out.append(("accept-encoding", "identity"))
    return out


def not_upstream(name: str) -> bool:
    """Whether a (lower-case) request header may never travel upstream."""
    return name in _NOT_UPSTREAM or name.startswith(_NOT_UPSTREAM_PREFIXES)


def downstream(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream answer's headers that may reach the browser (it adds RELAYED to every one)."""
    return [(name, value) for name, value in headers if _downstream(name.lower())]


def _downstream(name: bytes) -> bool:
    """Whether an upstream's (lower-case) answer header may reach the browser."""
    return name not in _NOT_DOWNSTREAM_BYTES and not name.startswith(_NOT_DOWNSTREAM_PREFIXES)


def relayable(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """False for an answer that HTTP cannot carry on: a status outside 200..599 (a 101 would
    switch the client's connection to a protocol nobody speaks), or a header the server would
    refuse to write after the response had begun."""
    return 200 <= status <= 599 and writable(headers)


def writable(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether every name is a token and no value holds a control character (a tab aside): what
    an HTTP/1.1 head can carry without one header being read as two."""
    # One search over all names and one over all values.
    return not (
        _BAD_NAME.search(b"".join(name for name, _ in headers))
        or _BAD_VALUE.search(b"\t".join(value for _, value in headers))
    )


def first(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    """The first value of header ``name`` (lower case), or ""."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""
