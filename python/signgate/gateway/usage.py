"""Token accounting: read ``usage`` from the upstream's answer, or estimate it.

Every request a control accounts for is charged, whatever its body or its answer looks like:

- a JSON body is read strictly (:mod:`signgate.strict_json`) and its prompt text counted; any
  other body counts by its size;
- for a streamed chat completion the gateway asks the upstream for usage
  (``stream_options.include_usage``) when budgets or billing need it, and removes that extra chunk
  from the client's stream if the client did not ask for it;
- the answer is watched as server-sent events (any line ending), as JSON, or, when it is neither
  or too large to hold, as bytes. When no usage arrives (the client hung up, the upstream does not
  report it, or the answer has an unexpected shape), tokens are estimated at about four
  characters a token from the prompt and from every piece of text in the answer, and the record
  says ``estimated``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidJSON
from .policy import prompt_chars

_MAX_JSON_ANSWER = 1024 * 1024  # a JSON answer held for reading; beyond it, counted by size
_MAX_EVENT = 1024 * 1024  # an unfinished SSE event held; beyond it, the stream is counted by size
# The model name a usage record keeps: the client chooses it, and records wait in a queue of
# 10,000 for the webhook, so a body-sized name would hold gigabytes while the webhook is slow.
_MAX_MODEL = 256
# A blank line ends an event; lines end with CR LF, LF or CR (the WHATWG EventSource rules).
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r|\n\r\n|\r\n\n")
# Answer fields that name or describe, and hold no generated text.
_META = frozenset(
    {"id", "object", "model", "system_fingerprint", "role", "finish_reason", "type", "service_tier", "created"}
)
# Usage fields by the name a record gives them: chat completions name them prompt_tokens and
# completion_tokens, the Responses API (and Anthropic's Messages API) input_tokens and output_tokens.
_USAGE_FIELDS = {
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "total_tokens": "total_tokens",
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
}


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


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def answer_chars(value: Any) -> int:
    """Characters of generated text in an answer object: every string but identifiers and
    metadata, and nothing of its ``usage``."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(child for key, child in item.items() if key not in _META and key != "usage")
    return total


@dataclass(slots=True)
class UsageTap:
    """Watches one answer go by; optionally drops the usage-only SSE chunk the gateway added."""

    model: str | None
    prompt_chars: int
    strip_usage_chunk: bool
    usage: dict[str, int] | None = None
    completion_chars: int = 0
    _mode: str = "json"  # "sse", "json", or "bytes" (counted by size)
    _pending: bytearray = field(default_factory=bytearray)
    _json: list[bytes] = field(default_factory=list)
    _json_size: int = 0

    @classmethod
    def for_request(cls, data: Any, body_size: int, ask_for_usage: bool) -> tuple[UsageTap, bool]:
        """A tap for a request whose strictly read body is ``data`` (None: no body, or one that is
        not JSON, ``body_size`` bytes long). Returns the tap, and whether it changed ``data`` (it
        asks a streaming upstream for usage when ``ask_for_usage``). Raises InvalidJSON when
        ``ask_for_usage`` and ``stream`` is neither a boolean nor null."""
        if isinstance(data, dict):
            prompt = prompt_chars(data)
        elif data is not None:
            prompt = answer_chars(data)
        else:
            prompt = body_size
        model = data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), str) else None
        if model is not None:
            model = model[:_MAX_MODEL]
        strip = False
        stream = data.get("stream") if isinstance(data, dict) else None
        if ask_for_usage and not (stream is None or type(stream) is bool):
            # Lax decoders (pydantic's, behind vLLM and most Python servers) read "true", "yes" or
            # 1 as true and would stream without the usage the gateway did not know to ask for.
            raise InvalidJSON(f"stream must be true or false, not {json.dumps(stream)[:40]}")
        # Chat Completions reports a stream's usage only when asked; other APIs (Responses,
        # Anthropic Messages) always do, and refuse a stream_options field they do not know.
        if ask_for_usage and stream is True and "messages" in data and "input" not in data:
            options = data.get("stream_options")
            if not isinstance(options, dict) or options.get("include_usage") is not True:
                data["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                strip = True
        return cls(model=model, prompt_chars=prompt, strip_usage_chunk=strip), strip

    def start(self, content_type: str) -> None:
        media_type = content_type.partition(";")[0].strip().lower()
        self._mode = "sse" if media_type == "text/event-stream" else "json"

    def feed(self, chunk: bytes) -> bytes:
        """Inspect a chunk of the answer; return what to forward to the client."""
        if self._mode == "json":
            if self._json_size + len(chunk) <= _MAX_JSON_ANSWER:
                self._json.append(chunk)
                self._json_size += len(chunk)
            else:
                self._to_bytes(self._json_size + len(chunk))
            return chunk
        if self._mode == "bytes":
            self.completion_chars += len(chunk)
            return chunk
        data: bytes | bytearray = chunk
        scan = 0
        if self._pending:
            # What is held ends no event: search only where the new bytes can end one (an end is
            # at most 4 bytes long), and add to the held bytes in place, so that an event arriving
            # in many small pieces costs time in proportion to its size, not to its square.
            scan = len(self._pending) - 3
            self._pending += chunk
            data = self._pending
        out = []
        start = 0
        while (end := _EVENT_END.search(data, max(start, scan))) is not None:
            event = data[start : end.end()]
            if self._keep(event):
                out.append(event)
            start = end.end()
        if len(data) - start > _MAX_EVENT:
            # No event ends: stop parsing, forward as it comes, and count it by size.
            rest = bytes(data[start:])
            self._pending = bytearray()
            self._mode = "bytes"
            self.completion_chars += len(rest)
            out.append(rest)
        elif data is not self._pending:
            self._pending = bytearray(data[start:])
        elif start:
            del self._pending[:start]
        return b"".join(out)

    def _to_bytes(self, size: int) -> None:
        """Count the answer by its size from here on; ``size``: the bytes seen so far."""
        self._json = []
        self._mode = "bytes"
        self.completion_chars += size

    def flush(self) -> bytes:
        """What is left of an unterminated last event, forwarded as it is (and counted)."""
        pending, self._pending = bytes(self._pending), bytearray()
        if pending:
            self._keep(pending)
        return pending

    def _keep(self, event: bytes | bytearray) -> bool:
        payload = b"\n".join(line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:"))
        if not payload or payload == b"[DONE]":
            return True
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError):
            self.completion_chars += len(payload)
            return True
        if not isinstance(obj, dict):
            self.completion_chars += answer_chars(obj)
            return True
        self.completion_chars += answer_chars(obj)
        usage = obj.get("usage")
        self._take_usage(obj)
        return not (self.strip_usage_chunk and usage and not obj.get("choices"))

    def _take_usage(self, obj: dict[str, Any]) -> None:
        """Read the usage an answer object reports: its own ``usage``, or that of the response or
        message it carries (the Responses API's response.completed event, Anthropic's
        message_start). A report without a total adds to what came before (Anthropic reports input
        and output tokens in different events); one with a total replaces it."""
        usage = obj.get("usage")
        for name in ("response", "message"):
            if not isinstance(usage, dict) and isinstance(obj.get(name), dict):
                usage = obj[name].get("usage")
        if isinstance(usage, dict):
            numbers = {_USAGE_FIELDS[k]: v for k, v in usage.items() if k in _USAGE_FIELDS}
            if numbers and all(type(v) is int and v >= 0 for v in numbers.values()):
                if self.usage is not None and "total_tokens" not in numbers:
                    numbers = {**{k: v for k, v in self.usage.items() if k != "total_tokens"}, **numbers}
                self.usage = numbers

    def finish(self) -> None:
        """Read usage (or the text to estimate from) from a complete JSON answer."""
        if self._mode != "json" or not self._json:
            return
        held = b"".join(self._json)
        self._json = []
        try:
            obj = json.loads(held)
        except (ValueError, RecursionError):
            self._to_bytes(len(held))
            return
        if isinstance(obj, dict):
            self._take_usage(obj)
        if self.usage is None:  # the text is walked only to estimate from (it takes as long as parsing)
            self.completion_chars += answer_chars(obj)

    def tokens(self) -> tuple[int, int, int, bool]:
        """(prompt, completion, total, estimated)."""
        if self.usage is not None:
            prompt = self.usage.get("prompt_tokens", 0)
            completion = self.usage.get("completion_tokens", 0)
            return prompt, completion, self.usage.get("total_tokens", prompt + completion), False
        prompt, completion = _tokens(self.prompt_chars), _tokens(self.completion_chars)
        return prompt, completion, prompt + completion, True
