"""signgate's extensions to SW1: single-use URLs, signed attribution and body policies.

Each extension is a header bound by the signature (listed in ``X-Sw-SignedHeaders``), so a
client cannot add, drop or change one without failing verification, and a Signway server
verifies them as ordinary signed headers. A URL without them is plain SW1. The gateway reads an
extension only when it is bound, and never forwards these headers upstream.

================  =========================================================================
header            value
================  =========================================================================
x-signgate-nonce  22 random URL-safe characters; the gateway counts its uses until expiry
x-signgate-uses   how many times the nonce may be used (absent: once)
x-signgate-user   an opaque id of the end user the backend vouches for (visible ASCII)
x-signgate-tenant an opaque id of the user's organisation (visible ASCII)
x-signgate-policy base64url(compact JSON of :meth:`Policy.wire`), no padding
================  =========================================================================
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import providers, scheme
from .errors import SigningError

PREFIX = "x-signgate-"
NONCE = "x-signgate-nonce"
USES = "x-signgate-uses"
USER = "x-signgate-user"
TENANT = "x-signgate-tenant"
POLICY = "x-signgate-policy"

MAX_USES = 1_000_000
_ID = re.compile(r"[!-~]{1,128}")


def canonical_json(value: Any) -> str:
    """The JSON form that policy hashes are taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Policy:
    """Rules a request body must follow, bound instead of (or as well as) the exact body.

    It lets a frontend vary the user's text while the backend fixes everything that costs money.
    The gateway reads each rule where the API of the signed upstream URL keeps it (chat
    completions, responses, messages, generateContent: docs/providers.md has the table); a policy
    for a URL of no API it knows is refused, at signing and at the gateway.

    - ``models``: the allowed models (``model``; Gemini's in the URL's path);
    - ``max_tokens``: a ceiling on every output-token cap an upstream reads (``max_tokens``,
      ``max_completion_tokens``, ``max_output_tokens``, ``generationConfig.maxOutputTokens``,
      llama.cpp's ``n_predict``), inserted when the body has none; no several choices (``n``,
      ``candidateCount``, ...); thinking budgets within the ceiling;
    - ``system_prompt``: the exact text of the one system prompt (the first chat message,
      ``instructions``, ``system``, ``systemInstruction``), bound by its SHA-256 so the header
      stays small; no ``chat_template`` of the client's;
    - ``response_format``: the exact format object (``response_format``, ``text.format``,
      ``output_config.format``, Gemini's ``responseMimeType``/``responseSchema``/
      ``responseJsonSchema``), bound by the SHA-256 of its :func:`canonical_json`; no grammar or
      schema of the client's that an upstream would apply instead (``guided_*``,
      ``structured_outputs``, ``grammar``, ``json_schema``);
    - ``tools`` and ``tool_choice``: the exact tool set and tool choice (``tools``,
      ``tool_choice``, Gemini's ``toolConfig``), by the SHA-256 of their canonical JSON;
    - ``require_stream``: the answer must stream (``stream`` true; Gemini's
      ``:streamGenerateContent``);
    - ``max_user_chars``: a cap on the prompt text the client controls: every message of every
      role (the signed parts aside), tool definitions, and any field that is not a known
      setting; content must then be text (no images or files, no text stored upstream);
    - ``fields``: the top-level fields the body may hold (an allowlist; ``name.key`` entries allow
      an object field with only those keys). Without it, fields no rule names pass unchecked,
      among them some that cost money (``service_tier``, ``reasoning``, ``modalities``, ...):
      name the fields your requests need.
    """

    models: Sequence[str] = ()
    max_tokens: int | None = None
    system_prompt: str | None = None
    response_format: Mapping[str, Any] | None = None
    require_stream: bool = False
    max_user_chars: int | None = None
    fields: Sequence[str] | None = None
    tools: Any = None
    tool_choice: Any = None

    def wire(self) -> dict[str, Any]:
        """The JSON object the header carries (version 1)."""
        rules: dict[str, Any] = {"v": 1}
        if self.models:
            if isinstance(self.models, str) or not all(isinstance(m, str) and m for m in self.models):
                raise SigningError("policy", "models must be a list of non-empty strings")
            rules["models"] = list(self.models)
        for name in ("max_tokens", "max_user_chars"):
            value = getattr(self, name)
            if value is not None:
                if type(value) is not int or value < 1:
                    raise SigningError("policy", f"{name} must be a positive whole number, got {value!r}")
                rules[name] = value
        if self.system_prompt is not None:
            rules["system_sha256"] = sha256_hex(self.system_prompt)
        if self.response_format is not None:
            try:
                rules["response_format_sha256"] = sha256_hex(canonical_json(self.response_format))
            except (TypeError, ValueError) as exc:
                raise SigningError("policy", f"response_format is not JSON: {exc}") from None
        for name in ("tools", "tool_choice"):
            value = getattr(self, name)
            if value is not None:
                try:
                    rules[f"{name}_sha256"] = sha256_hex(canonical_json(value))
                except (TypeError, ValueError) as exc:
                    raise SigningError("policy", f"{name} is not JSON: {exc}") from None
        if self.require_stream:
            rules["stream"] = True
        if self.fields is not None:
            rules["fields"] = self._fields()
        return rules

    def _fields(self) -> list[str]:
        fields = self.fields
        if fields is None or isinstance(fields, str) or not all(isinstance(f, str) and f for f in fields):
            raise SigningError("policy", "fields must be a list of non-empty strings (the allowed top-level fields)")
        return sorted(set(fields))

    def check_request(self, method: str, upstream_url: str) -> None:
        """Raise SigningError unless the gateway can enforce this policy on a request of
        ``method`` to ``upstream_url``: the URL names an LLM API it knows, and ``fields`` (if
        given) admits every field the other rules read in that API."""
        normalized = scheme.normalize_upstream(upstream_url) or upstream_url
        parts = urlsplit(normalized)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        found = providers.find_upstream(method, target or "/")
        if found is None:
            raise SigningError(
                "policy",
                f"a body policy applies to the LLM APIs the gateway knows (chat completions, responses, messages, "
                f"generateContent); {method} {parts.path[:80]} is none of them",
            )
        if self.fields is None:
            return
        provider, route = found
        body = provider.governed({}, route)
        allowed = {body.field_name(name.partition(".")[0]) for name in self._fields()}
        wanted = {
            "models": bool(self.models),
            "system_prompt": self.system_prompt is not None,
            "max_user_chars": self.max_user_chars is not None,
            "response_format": self.response_format is not None,
            "stream": self.require_stream,
            "tools": self.tools is not None,
            "tool_choice": self.tool_choice is not None,
        }
        missing = sorted(
            {
                " or ".join(names)
                for rule, on in wanted.items()
                if on
                for names in [body.needs.get(rule, ())]
                if names and not any(body.field_name(name) in allowed for name in names)
            }
        )
        if missing:
            raise SigningError("policy", f"fields must include {missing}: the policy's other rules need them")

    def header(self) -> str:
        raw = json.dumps(self.wire(), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class PolicyRules:
    """A policy as the gateway receives it: hashes instead of the texts."""

    models: tuple[str, ...] = ()
    max_tokens: int | None = None
    system_sha256: str | None = None
    response_format_sha256: str | None = None
    require_stream: bool = False
    max_user_chars: int | None = None
    fields: frozenset[str] | None = None
    tools_sha256: str | None = None
    tool_choice_sha256: str | None = None

    @classmethod
    def from_header(cls, value: str) -> PolicyRules:
        """Decode ``x-signgate-policy``; ValueError says what is wrong."""
        try:
            data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ValueError("is not base64url-encoded JSON") from None
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError("is not a version-1 policy object")
        unknown = set(data) - {"v", "models", "max_tokens", "system_sha256", "response_format_sha256", "stream",
                               "max_user_chars", "fields", "tools_sha256", "tool_choice_sha256"}  # fmt: skip
        if unknown:
            raise ValueError(f"has rules this gateway does not know: {sorted(unknown)}")
        models = data.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ValueError("models must be a list of strings")
        for name in ("max_tokens", "max_user_chars"):
            if name in data and (type(data[name]) is not int or data[name] < 1):
                raise ValueError(f"{name} must be a positive whole number")
        for name in ("system_sha256", "response_format_sha256", "tools_sha256", "tool_choice_sha256"):
            if name in data and not (isinstance(data[name], str) and re.fullmatch(r"[0-9a-f]{64}", data[name])):
                raise ValueError(f"{name} must be 64 lower-case hex characters")
        fields = data.get("fields")
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            raise ValueError("fields must be a list of strings")
        return cls(
            fields=None if fields is None else frozenset(fields),
            models=tuple(models),
            max_tokens=data.get("max_tokens"),
            system_sha256=data.get("system_sha256"),
            response_format_sha256=data.get("response_format_sha256"),
            require_stream=data.get("stream") is True,
            max_user_chars=data.get("max_user_chars"),
            tools_sha256=data.get("tools_sha256"),
            tool_choice_sha256=data.get("tool_choice_sha256"),
        )


def extension_headers(
    *,
    nonce: str | None,
    uses: int | None,
    user: str | None,
    tenant: str | None,
    policy: Policy | None,
    request: tuple[str, str] | None = None,
) -> dict[str, str]:
    """The headers to bind for the requested extensions, validated; raises SigningError.
    ``request`` (method, upstream URL) checks that the gateway can enforce ``policy`` on it."""
    headers: dict[str, str] = {}
    if nonce is not None:
        headers[NONCE] = nonce
        if uses is not None and uses != 1:
            headers[USES] = str(uses)
    for field_name, header, value in (("user", USER, user), ("tenant", TENANT, tenant)):
        if value is not None:
            if not isinstance(value, str) or not _ID.fullmatch(value):
                raise SigningError(field_name, "must be 1 to 128 visible ASCII characters (hash or encode other ids)")
            headers[header] = value
    if policy is not None:
        if not isinstance(policy, Policy):
            raise SigningError("policy", f"must be a signgate.Policy, got {type(policy).__name__}")
        headers[POLICY] = policy.header()
        if request is not None:
            policy.check_request(*request)
    return headers
