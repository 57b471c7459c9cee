"""Checking a chat completion request the way OpenAI does, with OpenAI-shaped 400 errors."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class RequestError(Exception):
    """A request the stand-in refuses; ``param`` names the offending field, as OpenAI's errors do."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code


def _check_message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise RequestError(f"{where} must be an object with 'role' and 'content'.", param=where, code="invalid_type")
    role = message.get("role")
    if role not in ROLES:
        raise RequestError(
            f"{where}.role is {role!r}; use one of {', '.join(sorted(ROLES))}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is None and role == "assistant":
        return
    if isinstance(content, str):
        return
    if isinstance(content, list) and all(isinstance(p, Mapping) and isinstance(p.get("type"), str) for p in content):
        return
    raise RequestError(
        f'{where}.content must be a string or a list of content parts such as {{"type": "text", "text": "..."}}.',
        param=f"{where}.content",
        code="invalid_type",
    )


def _check_response_format(value: Any) -> None:
    if not isinstance(value, Mapping) or value.get("type") not in RESPONSE_FORMATS:
        raise RequestError(
            f"response_format.type must be one of {', '.join(RESPONSE_FORMATS)}.",
            param="response_format.type",
            code="invalid_value",
        )
    if value["type"] != "json_schema":
        return
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise RequestError(
            "response_format.json_schema must be an object with 'name' and 'schema'.",
            param="response_format.json_schema",
            code="invalid_type",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise RequestError(
            "response_format.json_schema.name must be 1 to 64 letters, digits, '_' or '-'.",
            param="response_format.json_schema.name",
            code="invalid_value",
        )
    if "schema" in spec and not isinstance(spec["schema"], Mapping):
        raise RequestError(
            "response_format.json_schema.schema must be a JSON Schema object.",
            param="response_format.json_schema.schema",
            code="invalid_type",
        )
    if "strict" in spec and spec["strict"] is not None and not isinstance(spec["strict"], bool):
        raise RequestError(
            "response_format.json_schema.strict must be true or false.",
            param="response_format.json_schema.strict",
            code="invalid_type",
        )


def check_chat_request(body: bytes) -> dict[str, Any]:
    """The parsed request if it is one the stand-in can answer, else :class:`RequestError`."""
    try:
        request = json.loads(body)
    except ValueError:
        raise RequestError(
            "The body of your request is not valid JSON. Send a JSON object with 'model' and 'messages'."
        ) from None
    if not isinstance(request, dict):
        raise RequestError("The body of your request must be a JSON object with 'model' and 'messages'.")
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError('You must provide a model parameter, e.g. "model": "signgate-standin".', param="model")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(
            'messages must be a non-empty array of {"role", "content"} objects.', param="messages", code="invalid_type"
        )
    for index, message in enumerate(messages):
        _check_message(index, message)
    stream = request.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("stream must be true or false.", param="stream", code="invalid_type")
    options = request.get("stream_options")
    if options is not None:
        if not stream:
            raise RequestError(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )
        if not isinstance(options, Mapping) or not isinstance(options.get("include_usage", False), bool):
            raise RequestError(
                'stream_options must be an object such as {"include_usage": true}.',
                param="stream_options",
                code="invalid_type",
            )
    if request.get("response_format") is not None:
        _check_response_format(request["response_format"])
    n = request.get("n")
    if n is not None and n != 1:
        raise RequestError("The stand-in answers with one choice; set n to 1 or leave it out.", param="n")
    return request
