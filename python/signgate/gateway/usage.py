"""Token accounting: read ``usage`` from the upstream's answer, or estimate it.

Every request a control accounts for is charged, whatever its body or its answer looks like:

- a JSON body is read strictly (:mod:`signgate.strict_json`) and its prompt text counted; any
  other body counts by its size;
- the API is the one the upstream URL names (:func:`signgate.providers.find_upstream`), and the
  usage is read from that API's own usage events (:meth:`Provider.event_usage`, ``answer_usage``):
  a chat completion's usage chunk, a Responses ``response.completed``, Anthropic's
  ``message_start`` and ``message_delta``, Gemini's last ``usageMetadata``;
- where the API reports a stream's usage only when asked (chat completions'
  ``stream_options.include_usage``), the gateway asks when budgets or billing need it, and
  removes that extra event from the client's stream if the client did not ask for it;
- the answer is watched as server-sent events (any line ending), as JSON, or, when it is neither
  or too large to hold, as bytes. When no usage arrives (the client hung up, the upstream does not
  report it, the answer has an unexpected shape, or the path is no API the gateway knows),
  tokens are estimated at about four characters a token from the prompt and from every piece of
  text in the answer, and the record says ``estimated``; so is a side (prompt or completion)
  that the reported usage leaves out.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidJSON
from ..providers import Provider, Usage
from ..providers._govern import count_chars
from .policy import Found, view

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
    """Watches one answer go by; optionally drops the usage-only SSE event the gateway asked for."""

    model: str | None
    prompt_chars: int
    strip_usage_chunk: bool
    provider: Provider | None = None
    usage: Usage | None = None
    completion_chars: int = 0
    _mode: str = "json"  # "sse", "json", or "bytes" (counted by size)
    _pending: bytearray = field(default_factory=bytearray)
    _json: list[bytes] = field(default_factory=list)
    _json_size: int = 0
    _usage_only: Any = None  # the API's test for the event the gateway asked for

    @classmethod
    def for_request(cls, data: Any, body_size: int, ask_for_usage: bool, found: Found = None) -> tuple[UsageTap, bool]:
        """A tap for a request to the API ``found`` (None: no API the gateway knows) whose
        strictly read body is ``data`` (None: no body, or one that is not JSON, ``body_size``
        bytes long). Returns the tap, and whether it changed ``data`` (it asks a streaming
        upstream for usage when ``ask_for_usage`` and the API reports it only when asked).
        Raises InvalidJSON when ``ask_for_usage`` and ``stream`` is neither a boolean nor null."""
        body = view(data, found)
        if body is not None:
            prompt = body.prompt_chars()
            model = body.model
            stream = body.stream_value()
        else:
            prompt = count_chars(data) if data is not None else body_size
            model = data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), str) else None
            stream = data.get("stream") if isinstance(data, dict) else None
        if model is not None:
            model = model[:_MAX_MODEL]
        if ask_for_usage and not (stream is None or type(stream) is bool):
            # Lax decoders (pydantic's, behind vLLM and most Python servers) read "true", "yes" or
            # 1 as true and would stream without the usage the gateway did not know to ask for.
            raise InvalidJSON(f"stream must be true or false, not {json.dumps(stream)[:40]}")
        strip = bool(ask_for_usage and body is not None and body.ask_for_usage())
        tap = cls(model=model, prompt_chars=prompt, strip_usage_chunk=strip, provider=found[0] if found else None)
        tap._usage_only = body.usage_only if strip and body is not None else None
        return tap, strip

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
        if self.provider is not None:
            self._add(self.provider.event_usage(obj))
        return self._usage_only is None or not self._usage_only(obj)

    def _add(self, usage: Usage | None) -> None:
        """Fold a report into what came before: each count a later report gives replaces the
        earlier one (Anthropic reports input and output tokens in different events, Gemini
        cumulative counts in every chunk)."""
        if usage is not None and (usage.input_tokens is not None or usage.output_tokens is not None):
            self.usage = usage if self.usage is None else self.usage.then(usage)

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
        if self.provider is not None:
            # A stream sent as one JSON array (Gemini's streamGenerateContent without alt=sse)
            # reports its usage as its events do.
            for item in obj if isinstance(obj, list) else [obj]:
                self._add(self.provider.answer_usage(item))
        if self.usage is None or self.usage.output_tokens is None:
            # The text is walked only to estimate from (it takes as long as parsing).
            self.completion_chars += answer_chars(obj)

    def tokens(self) -> tuple[int, int, int, bool]:
        """(prompt, completion, total, estimated): the reported usage, and an estimate for a side
        it leaves out (or for both, when none was reported)."""
        given = self.usage.input_tokens if self.usage is not None else None
        made = self.usage.output_tokens if self.usage is not None else None
        prompt = given if given is not None else _tokens(self.prompt_chars)
        completion = made if made is not None else _tokens(self.completion_chars)
        return prompt, completion, prompt + completion, given is None or made is None
