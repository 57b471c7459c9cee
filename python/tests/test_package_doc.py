"""``help(signgate)`` opens with a usage example, and the example works as written."""

from __future__ import annotations

import pydoc
import textwrap

import pytest

import signgate
from signgate import Verifier


def example() -> str:
    """The first ``::`` block of the package docstring."""
    doc = signgate.__doc__ or ""
    _, found, rest = doc.partition("::\n\n")
    assert found, "the package docstring has no example block"
    lines = []
    for line in rest.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip()


def test_help_opens_with_the_example() -> None:
    shown = pydoc.render_doc(signgate, renderer=pydoc.plaintext).splitlines()
    first = next(i for i, line in enumerate(shown) if "from signgate import Signer" in line)
    assert first < 12, "\n".join(shown[:20])
    assert len(example().splitlines()) <= 10


def test_the_example_signs_a_request_the_verifier_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNGATE_SECRET", "doc-example-secret")
    scope: dict[str, object] = {}
    exec(compile(example(), "signgate.__doc__", "exec"), scope)
    signed = scope["signed"]
    assert isinstance(signed, signgate.SignedRequest)
    sent = signed.to_dict()
    assert set(sent) == {"url", "method", "headers", "body"}
    body = sent["body"].encode()
    headers = {**sent["headers"], "content-length": str(len(body))}
    query = sent["url"].split("?", 1)[1]
    verified = Verifier({"my-app": ["doc-example-secret"]}).verify_request("POST", query, headers, body)
    assert verified.key_id == "my-app"
