"""What every sub-command shares: reading headers, secrets and bodies from the command line."""

from __future__ import annotations

import os
import sys

from ..errors import CommandError


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` -> ``("Name", "value")``; raises CommandError naming the fix."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise CommandError(f"--header {text[:60]!r} must look like 'Name: value'")
    return name.strip(), value.strip()


def secret_from_env(var: str, option: str = "--secret-env") -> str:
    """The value of environment variable ``var``; raises CommandError when it is unset or empty."""
    value = os.environ.get(var)
    if not value:
        raise CommandError(
            f"the environment variable {var} is not set or empty; export it, or name another with {option}"
        )
    return value


def read_body(spec: str | None) -> bytes | None:
    """``@FILE``, ``-`` (standard input) or literal text; None for no body."""
    if spec is None:
        return None
    if spec == "-":
        return sys.stdin.buffer.read()
    if spec.startswith("@"):
        try:
            with open(spec[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            raise CommandError(f"--body {spec}: cannot read the file: {exc.strerror}") from None
    return spec.encode()
