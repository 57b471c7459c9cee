"""Where a signed URL may send the request: the key's allowed upstreams, plain paths, public hosts.

Checked before the signature (so before any body is read): a refusal tells a client only what it
sent, never which upstreams a key may reach.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from .. import scheme
from ..errors import ForbiddenAddress, MalformedRequest, UpstreamNotAllowed
from .config import GatewayConfig, KeyConfig
from .refusals import PRIVATE_HINT
from .upstream import Target, check_literal

# In the path of an allowlisted upstream: encoded '/', '\\', '.', '%', ';' or NUL, ';' itself, and
# a '%' that starts no escape (IIS reads %u002e as '.', and %%32%65 becomes %2e on a second pass).
_ENCODED_PATH = re.compile(r"%(?:2[fFeE5]|5[cC]|3[bB]|00|(?![0-9A-Fa-f]{2}))|;")
#: Only URLs this long are cached: the few a key's clients call, not every long one a client
#: without a valid signature may send (the check runs before verification).
_CACHED_LENGTH = 512


class Targets:
    """The checked target of each (key, X-Sw-Proxy), cached."""

    __slots__ = ("_allow_private", "_cache")

    def __init__(self, config: GatewayConfig) -> None:
        self._allow_private = config.allow_private_upstreams
        self._cache: dict[tuple[str, str], Target] = {}

    def check(self, key: KeyConfig, url: str) -> Target:
        """The target of ``url`` (X-Sw-Proxy as signed, not yet verified) if ``key`` may reach
        it; raises MalformedRequest or UpstreamNotAllowed."""
        target = self._cache.get((key.id, url))
        if target is None:
            forward = scheme.normalize_upstream(url)
            if forward is None or not forward.startswith(("http://", "https://")):
                raise MalformedRequest(scheme.X_PROXY, "is not an absolute http(s) URL")
            target = self._allowed(key, forward)
            if len(url) <= _CACHED_LENGTH:
                if len(self._cache) >= 1024:
                    self._cache.clear()
                self._cache[(key.id, url)] = target
        return target

    def _allowed(self, key: KeyConfig, url: str) -> Target:
        target = Target.from_url(url)
        if target is None:
            raise UpstreamNotAllowed("upstream URLs with a user name or password are not allowed")
        if key.allow_upstreams:
            if not any(prefix.allows(target) for prefix in key.allow_upstreams):
                raise UpstreamNotAllowed(
                    f"this key may not reach {_shown(target)}; "
                    "the gateway's operator chooses the upstreams each key may reach (--allow-upstream)"
                )
            if not plain_path(target.path.split("?", 1)[0]):
                # An upstream that decodes %2F, %2E or %25 once more, reads ';' as a path
                # parameter (Tomcat's '..;') or an overlong UTF-8 %c0%ae as '.', would route it
                # outside the allowed prefix.
                raise UpstreamNotAllowed(
                    "the upstream path holds an encoded '/', '\\', '.', '%', ';' or NUL, a ';' segment, a '%' "
                    "that is no escape, or escapes that are not UTF-8; a key with allowed upstreams accepts "
                    "plain paths only"
                )
        if not self._allow_private:
            try:
                check_literal(target.host)
            except ForbiddenAddress:
                raise UpstreamNotAllowed(f"the upstream is not a public address; {PRIVATE_HINT}") from None
        return target


def _shown(target: Target) -> str:
    """The target as a refusal names it: with its port (the allowlist may hold the same host on
    another one), without its query, and its path cut short."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    port = "" if target.port == (443 if target.scheme == "https" else 80) else f":{target.port}"
    return f"{target.scheme}://{host}{port}{target.path.split('?', 1)[0][:80]}"


def plain_path(path: str) -> bool:
    """No escape or ';' in ``path`` that an upstream could read as another path, and its escapes
    decode to UTF-8 (no overlong forms)."""
    if _ENCODED_PATH.search(path):
        return False
    if "%" in path:
        try:
            unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True
