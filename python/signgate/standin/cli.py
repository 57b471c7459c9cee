"""``signgate standin``: run the offline stand-in from the command line.

The project's CLI wires :func:`add_arguments` and :func:`run` into a sub-command;
``python -m signgate.standin`` does the same on its own.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys

from .. import _extras
from .server import DEFAULT_CHUNK_DELAY, check_delay, serve

DEFAULT_KEY_ENV = "STANDIN_API_KEY"
DEFAULT_PORT = 8787
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _seconds(text: str) -> float:
    try:
        return check_delay("the delay", float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; give seconds, e.g. 1.5") from None


def _env_name(text: str) -> str:
    if not _ENV_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an environment variable name, e.g. STANDIN_API_KEY")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the stand-in's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--api-key-env",
        type=_env_name,
        default=DEFAULT_KEY_ENV,
        metavar="VAR",
        help="environment variable holding the API key clients must send (default: %(default)s)",
    )
    parser.add_argument(
        "--delay", type=_seconds, default=0.0, metavar="SECONDS", help="wait before the first content (default: 0)"
    )
    parser.add_argument(
        "--chunk-delay",
        type=_seconds,
        default=DEFAULT_CHUNK_DELAY,
        metavar="SECONDS",
        help="wait between streamed chunks (default: %(default)s)",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; the exit status. The API key is never printed.

    Without the gateway extra (the server runs under uvicorn) it says how to install it and
    returns 2, before printing anything else."""
    missing = _extras.missing("gateway")
    if missing:
        print(f"signgate standin: error: {_extras.missing_message('gateway', missing)}", file=sys.stderr)
        return 2
    key = os.environ.get(args.api_key_env, "")
    if not key:
        key = secrets.token_urlsafe(32)
        print(
            f"note: ${args.api_key_env} is not set, so the stand-in made up a random API key (not shown) "
            f"that no client knows. Set {args.api_key_env} to the key your clients send.",
            file=sys.stderr,
        )
    print(
        f"signgate stand-in (offline, not a language model): http://{args.host}:{args.port} "
        f"(OpenAI Chat Completions and Responses, Anthropic Messages, Gemini), "
        f"key from ${args.api_key_env}, delay {args.delay:g}s",
        file=sys.stderr,
    )
    serve(args.host, args.port, key, args.delay, args.chunk_delay, log_level=args.log_level)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m signgate.standin",
        description="Offline stand-in for the OpenAI, Anthropic and Gemini APIs: fills JSON schemas from plain "
        "words. Not a language model.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
