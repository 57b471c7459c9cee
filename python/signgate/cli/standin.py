"""``signgate standin``: run the offline stand-in model (OpenAI, Anthropic and Gemini APIs; NOT a
language model)."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys

from ..standin.server import DEFAULT_CHUNK_DELAY, check_delay

SUMMARY = "run the offline stand-in model: OpenAI, Anthropic and Gemini APIs, NOT a language model"
EXTRA = "gateway"  # it runs under uvicorn
DESCRIPTION = (
    "A server for OpenAI Chat Completions and Responses, Anthropic Messages and Google Gemini whose 'model' is "
    "a deterministic parser driven by the request's JSON schema (a response format or a function's "
    "parameters). For demos and tests without an LLM; see docs/standin.md."
)

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
    """Serve until interrupted; the exit status. The API key is never printed."""
    from ..standin.server import serve

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
