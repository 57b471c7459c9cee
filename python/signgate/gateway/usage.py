"""Token accounting: read ``usage`` from the upstream's answer, or estimate it.

For a streamed chat completion the gateway asks the upstream for usage
(``stream_options.include_usage``) when it needs it for budgets or billing, and removes that
extra chunk from the client's stream if the client did not ask for it. When no usage arrives
(the client hung up, or the upstream does not report it), tokens are estimated from the text,
about four characters a token, and the record says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

_MAX_JSON_BODY = 8 * 1024 * 1024


@dataclass(slots=True)
class UsageRecord:
    """One request's usage, as the billing hook receives it."""

    request_id: str
    key_id: str
    tenant: str | None
    user: str | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool
    status: int
    code: str
    ts: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


@dataclass(slots=True)
class UsageTap:
    """Watches one answer go by; optionally drops the usage-only SSE chunk the gateway added."""

    model: str | None
    prompt_chars: int
    strip_usage_chunk: bool
    usage: dict[str, int] | None = None
    completion_chars: int = 0
    _sse: bool = False
    _pending: bytes = b""
    _json: list[bytes] = field(default_factory=list)
    _json_size: int = 0

    @classmethod
    def for_request(cls, body: bytes, ask_for_usage: bool) -> tuple[UsageTap | None, bytes]:
        """A tap for a chat-completions-shaped JSON body (and the body to send), or (None, body)."""
        if not body or body[:1] not in (b"{", b" ", b"\n"):
            return None, body
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None, body
        if not isinstance(data, dict) or "model" not in data:
            return None, body
        prompt = sum(_chars(m.get("content")) for m in data.get("messages") or [] if isinstance(m, dict))
        prompt += _chars(data.get("prompt"))
        strip = False
        if ask_for_usage and data.get("stream") is True:
            options = data.get("stream_options")
            if not isinstance(options, dict) or options.get("include_usage") is not True:
                data["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
                strip = True
        model = data.get("model") if isinstance(data.get("model"), str) else None
        return cls(model=model, prompt_chars=prompt, strip_usage_chunk=strip), body

    def start(self, content_type: str) -> None:
        self._sse = content_type.startswith("text/event-stream")

    def feed(self, chunk: bytes) -> bytes:
        """Inspect a chunk of the answer; return what to forward to the client."""
        if not self._sse:
            if self._json_size < _MAX_JSON_BODY:
                self._json.append(chunk)
                self._json_size += len(chunk)
            return chunk
        data = self._pending + chunk
        out = []
        start = 0
        while True:
            end, sep = data.find(b"\n\n", start), 2
            crlf = data.find(b"\r\n\r\n", start)
            if crlf != -1 and (end == -1 or crlf < end):
                end, sep = crlf, 4
            if end == -1:
                break
            event = data[start : end + sep]
            if self._keep(event):
                out.append(event)
            start = end + sep
        self._pending = data[start:]
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left of an unterminated last event, forwarded as it is."""
        pending, self._pending = self._pending, b""
        return pending

    def _keep(self, event: bytes) -> bool:
        payload = b"".join(line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:"))
        if not payload or payload == b"[DONE]":
            return True
        try:
            obj = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return True
        if not isinstance(obj, dict):
            return True
        for choice in obj.get("choices") or []:
            if isinstance(choice, dict):
                delta = choice.get("delta") or choice.get("message") or {}
                if isinstance(delta, dict):
                    self.completion_chars += _chars(delta.get("content"))
                if isinstance(choice.get("text"), str):
                    self.completion_chars += len(choice["text"])
        self._take_usage(obj.get("usage"))
        return not (self.strip_usage_chunk and obj.get("usage") and not obj.get("choices"))

    def _take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            numbers = {k: v for k, v in usage.items() if k in ("prompt_tokens", "completion_tokens", "total_tokens")}
            if all(type(v) is int and v >= 0 for v in numbers.values()) and numbers:
                self.usage = numbers

    def finish(self) -> None:
        """Read usage from a complete JSON answer."""
        if not self._sse and self._json:
            try:
                obj = json.loads(b"".join(self._json))
            except (ValueError, UnicodeDecodeError):
                return
            if isinstance(obj, dict):
                self._take_usage(obj.get("usage"))
                for choice in obj.get("choices") or []:
                    if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
                        self.completion_chars += _chars(choice["message"].get("content"))

    def tokens(self) -> tuple[int, int, int, bool]:
        """(prompt, completion, total, estimated)."""
        if self.usage is not None:
            prompt = self.usage.get("prompt_tokens", 0)
            completion = self.usage.get("completion_tokens", 0)
            return prompt, completion, self.usage.get("total_tokens", prompt + completion), False
        prompt, completion = math.ceil(self.prompt_chars / 4), math.ceil(self.completion_chars / 4)
        return prompt, completion, prompt + completion, True
