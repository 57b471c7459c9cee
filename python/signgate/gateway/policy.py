"""Enforcing a bound body policy (``x-signgate-policy``) on a chat-completions request body."""

from __future__ import annotations

import json
from typing import Any

from ..extensions import PolicyRules, canonical_json, sha256_hex


class PolicyViolation(Exception):
    """The body breaks a rule; ``rule`` names it (models, max_tokens, system_prompt, ...)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _text(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list; None otherwise."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                return None
            parts.append(part["text"])
        return "".join(parts)
    return None


def enforce(rules: PolicyRules, body: bytes) -> bytes:
    """Check ``body`` against ``rules``; return it, with ``max_tokens`` inserted if the policy
    sets a ceiling and the body has none. Raises PolicyViolation naming the broken rule."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PolicyViolation("json", "a policy-bound request needs a JSON object body") from None
    if not isinstance(data, dict):
        raise PolicyViolation("json", "a policy-bound request needs a JSON object body")
    changed = False

    if rules.models and data.get("model") not in rules.models:
        raise PolicyViolation(
            "models", f"model {str(data.get('model'))[:80]!r} is not allowed; allowed: {list(rules.models)}"
        )

    if rules.max_tokens is not None:
        present = [name for name in ("max_tokens", "max_completion_tokens") if name in data]
        for name in present:
            value = data[name]
            if type(value) is not int or not 1 <= value <= rules.max_tokens:
                raise PolicyViolation("max_tokens", f"{name} must be a whole number in 1..{rules.max_tokens}")
        if not present:
            data["max_tokens"] = rules.max_tokens
            changed = True
        if data.get("n", 1) != 1:
            raise PolicyViolation("n", "n must be 1 (several choices multiply the cost)")

    messages = data.get("messages")
    if (rules.system_sha256 or rules.max_user_chars) and (
        not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages)
    ):
        raise PolicyViolation("messages", "messages must be a list of objects")
    assert messages is None or isinstance(messages, list)

    if rules.system_sha256 is not None:
        assert messages is not None
        system = [i for i, m in enumerate(messages) if m.get("role") in ("system", "developer")]
        first = _text(messages[0].get("content")) if messages else None
        if system != [0] or first is None or sha256_hex(first) != rules.system_sha256:
            raise PolicyViolation(
                "system_prompt", "the first message must be the signed system prompt, and the only one"
            )

    if rules.response_format_sha256 is not None:
        given = data.get("response_format")
        if given is None or sha256_hex(canonical_json(given)) != rules.response_format_sha256:
            raise PolicyViolation("response_format", "response_format must be exactly the signed one")

    if rules.require_stream and data.get("stream") is not True:
        raise PolicyViolation("stream", 'this request must stream: set "stream": true')

    if rules.max_user_chars is not None:
        assert messages is not None
        total = 0
        for message in messages:
            if message.get("role") == "user":
                text = _text(message.get("content"))
                if text is None:
                    raise PolicyViolation("max_user_chars", "user messages must be text")
                total += len(text)
        if total > rules.max_user_chars:
            raise PolicyViolation(
                "max_user_chars", f"the user's text is {total} characters; the limit is {rules.max_user_chars}"
            )

    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() if changed else body
