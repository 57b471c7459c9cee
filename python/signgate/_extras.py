"""Whether an optional extra is installed, found without importing anything.

``importlib.util.find_spec`` asks the import system's finders whether a module exists. Importing
it and catching ``ImportError`` instead would also catch a real bug (a broken import inside
signgate or inside a dependency) and report it as a missing extra.
"""

from __future__ import annotations

from importlib.util import find_spec

#: The top-level modules each extra's distributions install (python/tests/test_cli_extras.py
#: checks this against pyproject.toml).
MODULES: dict[str, tuple[str, ...]] = {
    "gateway": ("aiohappyeyeballs", "httptools", "httpx", "uvicorn", "uvloop"),
    "redis": ("redis",),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be found; empty when it is installed."""
    return [name for name in MODULES[extra] if find_spec(name) is None]


def install_hint(extra: str) -> str:
    """How to install ``extra``, from a package index or from a clone."""
    return f"pip install 'signgate[{extra}]' (from a clone of the repository: pip install '.[{extra}]')"


def missing_message(extra: str, modules: list[str]) -> str:
    """The error for a command that needs ``extra`` when ``modules`` of it are missing."""
    return (
        f"this needs the {extra} extra, which is not installed (missing: {', '.join(modules)}); "
        f"install it with: {install_hint(extra)}"
    )
