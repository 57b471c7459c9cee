"""docs/providers.md's examples work: each backend snippet signs a request whose body obeys the
policy signed with it, at the gateway's reading of that API, and the gateway's key configuration
loads as written."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from signgate import strict_json
from signgate.extensions import PolicyRules
from signgate.gateway.config import load_toml
from signgate.gateway.policy import enforce
from signgate.providers import find_upstream

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)\n```", DOC.read_text(), re.DOTALL)


def test_each_backend_snippet_signs_a_body_that_obeys_its_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNGATE_SECRET", "doc-secret")
    namespace: dict[str, Any] = {
        "os": os,
        "SYSTEM": "Turn words into filters.",
        "question": "a red car",
        "user_id": "u1",
    }
    apis = set()
    for code in blocks("python"):
        exec(code, namespace)  # the documentation's own examples, in order
        signed = namespace["signed"]
        upstream = parse_qs(urlsplit(signed.url).query)["X-Sw-Proxy"][0]
        parts = urlsplit(upstream)
        found = find_upstream("POST", parts.path + (f"?{parts.query}" if parts.query else ""))
        assert found is not None, upstream
        apis.add(found[0].name)
        rules = PolicyRules.from_header(signed.headers["x-signgate-policy"])
        body = strict_json.loads(json.dumps(namespace["body"]))
        enforce(rules, body, found)
        assert json.loads(signed.body) == namespace["body"]
    assert apis == {"chat", "responses", "anthropic", "gemini"}


def test_the_gateway_keys_load_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIGNGATE_SECRET", "SIGNGATE_SECRET_ANTHROPIC", "SIGNGATE_SECRET_GEMINI", "OPENAI_API_KEY",
                 "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):  # fmt: skip
        monkeypatch.setenv(name, f"value-of-{name}")
    (toml,) = blocks("toml")
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    keys = load_toml(path).keys
    assert dict(keys["anthropic"].headers) == {
        "x-api-key": "value-of-ANTHROPIC_API_KEY", "anthropic-version": "2023-06-01",
    }  # fmt: skip
    assert dict(keys["gemini"].headers) == {"x-goog-api-key": "value-of-GEMINI_API_KEY"}
    assert dict(keys["openai"].headers) == {"Authorization": "Bearer value-of-OPENAI_API_KEY"}
