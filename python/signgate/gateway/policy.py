"""Enforcing a bound body policy (``x-signgate-policy``) on a request body, whichever LLM API it is for.

The API is the one the signed upstream URL names (:func:`signgate.providers.find_upstream`: its
method and path); a policy-bound request to a path no provider knows is refused, since no rule
could be checked on a shape the gateway cannot read. The provider's view of the body
(:class:`signgate.providers.Governed`) says where each governed part is; the rules are here, the
same for every API:

- ``fields``: the top-level fields the body may hold (``name.sub`` entries allow an object field
  with only those keys);
- ``models``: every model the request names (in the body, or in the URL's path for Gemini);
- ``max_tokens``: a ceiling on every output-token cap an upstream reads, inserted when absent;
  no several choices (``n``, ``candidateCount``); thinking budgets within the ceiling;
- ``system_prompt``, ``response_format``, ``tools``, ``tool_choice``: exactly the signed ones
  (by hash), with no field that would replace them at some upstream;
- ``stream``: the answer streams;
- ``max_user_chars``: every piece of prompt text the client controls, in every field, the signed
  parts aside; content that no character count can see (images, files, text stored upstream)
  is refused.

The body arrives already read by :func:`signgate.strict_json.loads` (no duplicate keys, no NaN,
no lone surrogates, bounded depth); every key a rule reads must also be spelled exactly, and every
value a rule reads must have the exact JSON type the rule expects (``true`` is not ``1``).
"""

from __future__ import annotations

from typing import Any

from ..errors import PolicyViolation
from ..extensions import PolicyRules, canonical_json, sha256_hex
from ..providers import MISSING, Governed, Provider, Route

Found = tuple[Provider, Route] | None


def view(data: Any, found: Found) -> Governed | None:
    """The provider's view of a body, if it is a JSON object for a known API."""
    if found is None or not isinstance(data, dict):
        return None
    provider, route = found
    return provider.governed(data, route)


def enforce(rules: PolicyRules, data: Any, found: Found) -> bool:
    """Check the parsed body ``data`` of a request for the API ``found`` against ``rules``; insert
    the output-token cap if the policy sets a ceiling and the body has none. Returns whether
    ``data`` was changed. Raises PolicyViolation naming the broken rule (or InvalidJSON for
    another spelling of a field a rule reads)."""
    if found is None:
        raise PolicyViolation(
            "api",
            "a body policy applies to the LLM APIs the gateway knows (chat completions, responses, messages, "
            "generateContent); the signed upstream path is none of them",
        )
    body = view(data, found)
    if body is None:
        raise PolicyViolation("json", "a policy-bound request needs a JSON object body")
    body.check_spelling()
    changed = False

    if rules.fields is not None:
        _check_fields(rules.fields, body)

    if rules.models:
        for where, model in body.models():
            if not isinstance(model, str) or model not in rules.models:
                raise PolicyViolation(
                    "models", f"{where} {str(model)[:80]!r} is not allowed; allowed: {list(rules.models)}"
                )

    if rules.max_tokens is not None:
        ceiling = rules.max_tokens
        for where, value in body.caps():
            if type(value) is not int or not 1 <= value <= ceiling:
                raise PolicyViolation("max_tokens", f"{where} must be a whole number in 1..{ceiling}")
        changed = body.insert_cap(ceiling)
        for where, value in body.budgets():
            if type(value) is not int or not 0 <= value <= ceiling:
                raise PolicyViolation("max_tokens", f"{where} must be a whole number in 0..{ceiling}")
        # Several choices multiply the cost; `true` is not 1 (decoders that coerce read it as 1,
        # others as an error), so only the integer 1 passes.
        for where, value in body.multipliers():
            if type(value) is not int or value != 1:
                raise PolicyViolation("n", f"{where} must be 1 (several choices multiply the cost)")

    signed = _signed(rules)
    for rule in ("system_prompt", "response_format"):
        replacing = [name for name in body.replaces.get(rule, ()) if rule in signed and name in body.data]
        if replacing:
            shown = rule.replace("_", " ")
            raise PolicyViolation(
                rule, f"{replacing[0]!r} would replace the signed {shown} at some upstreams; leave it out"
            )

    if rules.system_sha256 is not None:
        expected = rules.system_sha256
        body.check_system(lambda text: sha256_hex(text) == expected)

    for rule, fixed, part in (
        ("response_format", rules.response_format_sha256, body.response_format),
        ("tools", rules.tools_sha256, body.tools),
        ("tool_choice", rules.tool_choice_sha256, body.tool_choice),
    ):
        if fixed is None:
            continue
        given = part()
        if given is MISSING or sha256_hex(canonical_json(given)) != fixed:
            raise PolicyViolation(rule, f"{body.where[rule]} must be exactly the signed one")
        others = body.other_tools(rule) if rule != "response_format" else []
        if others:
            raise PolicyViolation(rule, f"{others[0]!r} would add to the signed {rule.replace('_', ' ')}; leave it out")

    if rules.require_stream and not body.streams():
        raise PolicyViolation("stream", f"this request must stream: {body.where['stream']}")

    if rules.max_user_chars is not None:
        body.check_text(signed)
        total = body.prompt_chars(signed)
        if total > rules.max_user_chars:
            raise PolicyViolation(
                "max_user_chars",
                f"the prompt text (every message and tool, the signed parts aside) is {total} characters; "
                f"the limit is {rules.max_user_chars}",
            )

    return changed


def _signed(rules: PolicyRules) -> frozenset[str]:
    """The parts of the body the policy fixes by their hash."""
    hashes = {
        "system_prompt": rules.system_sha256,
        "response_format": rules.response_format_sha256,
        "tools": rules.tools_sha256,
        "tool_choice": rules.tool_choice_sha256,
    }
    return frozenset(rule for rule, value in hashes.items() if value is not None)


def _check_fields(allowed: frozenset[str], body: Governed) -> None:
    """Every top-level field named by the allowlist; an object field named only by ``field.key``
    entries holds only those keys. Names compare in the API's one spelling (Gemini's snake_case
    twins are their lowerCamelCase names)."""
    plain = {body.field_name(name) for name in allowed if "." not in name}
    nested: dict[str, set[str]] = {}
    for name in allowed:
        if "." in name:
            top, _, sub = name.partition(".")
            nested.setdefault(body.field_name(top), set()).add(body.field_name(sub))
    extra = []
    for name, value in body.data.items():
        canonical = body.field_name(name)
        if canonical in plain:
            continue
        keys = nested.get(canonical)
        if keys is None or not isinstance(value, dict):
            extra.append(name)
        else:
            extra += [f"{name}.{key}" for key in value if body.field_name(key) not in keys]
    if extra:
        shown = ", ".join(repr(name[:60]) for name in sorted(extra)[:5])
        raise PolicyViolation(
            "fields", f"field(s) {shown} are not allowed by the signed policy; allowed: {sorted(allowed)}"
        )
