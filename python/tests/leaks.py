"""Distinctive secrets for the hostile, fault and soak suites, and a watch that nothing echoes them.

Every response those suites receive (status line, headers and body, as raw bytes), every line the
gateway logs and every error message is checked against the API key, the signing secret and the
signature of every URL signed through :class:`RecordingSigner`. The upstream endpoints they use
never echo the Authorization header (``/v1/record`` sends back its SHA-256), so any hit is a leak.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from signgate import SignedRequest, Signer

API_KEY = "sk-canary-HOSTILE-7f3a9c1e52d04b8e-never-echo"
SECRET = "sgs-canary-HOSTILE-5b7e0a13c9f2-signing-secret"
KEY_ID = "hostile"
ENV = {"HOSTILE_SECRET": SECRET, "HOSTILE_API_KEY": API_KEY}
#: The flags that give the gateway this key and its API key (from the environment, never argv).
KEY_ARGS = ["--id", KEY_ID, "--secret-env", "HOSTILE_SECRET", "--header-env", "Authorization=Bearer ${HOSTILE_API_KEY}"]


_HEX_RUN = re.compile(r"[0-9a-f]{64,}")


def authorization_digest() -> str:
    """What ``/v1/record`` reports for the Authorization header the gateway adds."""
    return "sha256:" + hashlib.sha256(f"Bearer {API_KEY}".encode()).hexdigest()


class LeakWatch:
    """Collects the secrets that must never appear, and checks text or bytes for them."""

    def __init__(self) -> None:
        self.signatures: set[str] = set()
        self.checked = 0

    def needles(self) -> list[str]:
        return [API_KEY, SECRET, *self.signatures]

    def check(self, data: bytes | str, where: str) -> None:
        text = data.decode("latin-1") if isinstance(data, bytes) else data
        self.checked += 1
        if API_KEY in text or SECRET in text:
            raise AssertionError(f"{where}: the API key or the signing secret leaked")
        # A signature is 64 lower-case hex characters: look at every such window, not every signature.
        for run in _HEX_RUN.findall(text):
            if any(run[i : i + 64] in self.signatures for i in range(len(run) - 63)):
                raise AssertionError(f"{where}: the signature of a signed URL leaked")


class RecordingSigner(Signer):
    """A Signer that tells a :class:`LeakWatch` every signature it makes."""

    def __init__(self, watch: LeakWatch, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = watch

    def sign(self, *args: Any, **kwargs: Any) -> SignedRequest:
        signed = super().sign(*args, **kwargs)
        self.watch.signatures.add(signed.url.rsplit("X-Sw-Signature=", 1)[1])
        return signed
