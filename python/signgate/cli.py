"""The ``signgate`` command: sign URLs, run the gateway, run the offline stand-in model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__, _extras
from .errors import SigningError
from .signer import DEFAULT_EXPIRES_IN, Signer

EPILOG = """\
examples:
  export SIGNGATE_SECRET=...   # the secret never goes on the command line
  signgate sign --id app --gateway http://127.0.0.1:3000 \\
      --upstream https://api.openai.com/v1/chat/completions \\
      --header 'Content-Type: application/json' --body @request.json
  signgate serve --id app --secret-env SIGNGATE_SECRET \\
      --header-env 'Authorization=Bearer ${OPENAI_API_KEY}' \\
      --allow-upstream https://api.openai.com/v1/
"""


class CommandError(Exception):
    """A usage error: printed as ``signgate <command>: error: <message>``, exit status 2."""


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` -> ``("Name", "value")``; raises CommandError naming the fix."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise CommandError(f"--header {text[:60]!r} must look like 'Name: value'")
    return name.strip(), value.strip()


def secret_from_env(var: str, option: str = "--secret-env") -> str:
    value = os.environ.get(var)
    if not value:
        raise CommandError(
            f"the environment variable {var} is not set or empty; export it, or name another with {option}"
        )
    return value


def _read_body(spec: str | None) -> bytes | None:
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


def _add_sign(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sign",
        help="print a signed URL for one upstream request",
        description="Sign one request and print the URL. The secret is read from an environment variable, "
        "never from the command line.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--id", required=True, help="the key id the gateway knows the secret by")
    p.add_argument("--gateway", required=True, metavar="URL", help="the gateway's base URL")
    p.add_argument("--upstream", required=True, metavar="URL", help="the upstream URL the request may reach")
    p.add_argument("--method", default="POST", help="HTTP method (default: POST)")
    p.add_argument(
        "--expires",
        type=int,
        default=DEFAULT_EXPIRES_IN,
        metavar="SECONDS",
        help="lifetime in seconds (default: %(default)s)",
    )
    p.add_argument("--header", action="append", default=[], metavar="'K: V'", help="a header to bind (repeatable)")
    p.add_argument("--body", metavar="@FILE|-|TEXT", help="body to bind: @file, - for standard input, or literal text")
    p.add_argument(
        "--secret-env",
        default="SIGNGATE_SECRET",
        metavar="NAME",
        help="variable holding the secret (default: SIGNGATE_SECRET)",
    )
    p.add_argument("--json", action="store_true", help="print {url, method, headers, body} as JSON instead of the URL")
    p.set_defaults(run=_run_sign, command="sign")


def _run_sign(args: argparse.Namespace) -> int:
    headers = dict(parse_header(h) for h in args.header)
    secret = secret_from_env(args.secret_env)
    signer = Signer(args.id, secret, args.gateway, expires_in=args.expires)
    signed = signer.sign(args.method, args.upstream, headers=headers, body=_read_body(args.body))
    print(json.dumps(signed.to_dict(), ensure_ascii=False) if args.json else signed.url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signgate",
        description="Presigned URLs for LLM APIs. The backend signs a short-lived URL; the gateway checks it, "
        "adds the API key and streams the answer back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"signgate {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_sign(sub)
    for register in _optional_commands():
        register(sub)
    return parser


Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _optional_commands() -> list[Register]:
    """Commands whose dependencies come with ``pip install 'signgate[gateway]'``.

    Without that extra they are still listed, and answer any arguments with how to install it.
    """
    missing = _extras.missing("gateway")
    if missing:
        return [
            _unavailable("serve", "run the gateway", missing),
            _unavailable("standin", "run the offline stand-in model", missing),
        ]
    from .gateway.cli import add_serve
    from .standin import cli as standin_cli

    return [add_serve, _add_standin(standin_cli.add_arguments, standin_cli.run)]


def _add_standin(
    add_arguments: Callable[[argparse.ArgumentParser], None], run: Callable[[argparse.Namespace], int]
) -> Register:
    def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        p = sub.add_parser(
            "standin",
            help="run the offline stand-in model: OpenAI, Anthropic and Gemini APIs, NOT a language model",
            description="A server for OpenAI Chat Completions and Responses, Anthropic Messages and Google "
            "Gemini whose 'model' is a deterministic parser driven by the request's JSON schema (a response "
            "format or a function's parameters). For demos and tests without an LLM; see docs/standin.md.",
        )
        add_arguments(p)
        p.set_defaults(run=run, command="standin")

    return register


def _unavailable(command: str, summary: str, missing: list[str]) -> Register:
    def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        # No options, not even --help: whatever follows the command gets the same answer.
        p = sub.add_parser(command, help=f"{summary} (needs signgate[gateway])", add_help=False)
        p.set_defaults(run=lambda _: _missing_extra(command, missing), command=command, takes_any_arguments=True)

    return register


def _missing_extra(command: str, missing: list[str]) -> int:
    print(f"signgate {command}: error: {_extras.missing_message('gateway', missing)}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "takes_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # what parse_args would say
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return run(args)
    except (CommandError, SigningError, ValueError) as exc:
        print(f"signgate {args.command}: error: {exc}", file=sys.stderr)
        return 2
