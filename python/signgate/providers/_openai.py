"""What OpenAI's two APIs (Chat Completions and Responses) share: the key, the error shape,
JSON-schema formats and function tools' checks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import _read
from .base import Headers, OutputFormat, ProviderError, Query

KEY_HEADERS = ("authorization",)
_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def auth_header(key: str) -> tuple[str, str]:
    return "authorization", f"Bearer {key}"


def api_key(headers: Headers, query: Query) -> str:
    token = _read.bearer(headers, "")
    if token is None:
        raise ProviderError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            status=401,
            code="invalid_api_key",
        )
    return token


def check_headers(headers: Headers) -> None:
    """OpenAI's APIs need no header besides the key."""


def error(err: ProviderError) -> dict[str, Any]:
    """OpenAI's error body; every error the stand-in sends is an ``invalid_request_error``."""
    return {"error": {"message": err.message, "type": "invalid_request_error", "param": err.param, "code": err.code}}


def json_schema_format(spec: Mapping[str, Any], where: str, *, schema_required: bool) -> OutputFormat:
    """A ``json_schema`` format's ``name``, ``schema`` and ``strict``, checked as OpenAI does."""
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise ProviderError(
            f"{where}.name must be 1 to 64 letters, digits, '_' or '-'.", param=f"{where}.name", code="invalid_value"
        )
    if "schema" in spec or schema_required:
        if "schema" not in spec:
            raise ProviderError(
                f"Missing required parameter: '{where}.schema'. Give the JSON Schema the answer must match.",
                param=f"{where}.schema",
                code="missing_required_parameter",
            )
        _read.schema(spec["schema"], f"{where}.schema")
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise ProviderError(f"{where}.strict must be true or false.", param=f"{where}.strict", code="invalid_type")
    schema = spec.get("schema")
    return OutputFormat("json_schema", schema if isinstance(schema, Mapping) else {}, name)


def model(request: Mapping[str, Any]) -> str:
    value = request.get("model")
    if not isinstance(value, str) or not value:
        raise ProviderError('You must provide a model parameter, e.g. "model": "signgate-standin".', param="model")
    return value


def stream_flag(request: Mapping[str, Any]) -> bool:
    return _read.flag(request.get("stream"), "stream")


def stream_options(request: Mapping[str, Any], stream: bool) -> Mapping[str, Any]:
    options = request.get("stream_options")
    if options is None:
        return {}
    if not stream:
        raise ProviderError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    return _read.mapping(options, "stream_options", '{"include_usage": true}')
