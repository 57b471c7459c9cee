"""The ``signgate`` command: ``sign``, ``serve``, ``revoke`` and ``standin``, each in the same shape.

A sub-command is a module of this package with ``SUMMARY``, ``DESCRIPTION``, ``EXTRA`` (the extra
it needs, or None), ``add_arguments(parser)`` and ``run(args) -> exit status``; nothing heavier is
imported until ``run``. A command whose extra is missing (found with ``importlib.util.find_spec``,
so a real import error is never taken for a missing extra) answers any arguments with how to
install it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from .. import __version__, _extras
from ..errors import CommandError, SigningError

EPILOG = """\
examples:
  export SIGNGATE_SECRET=...   # the secret never goes on the command line
  signgate sign --id app --gateway http://127.0.0.1:3000 \\
      --upstream https://api.openai.com/v1/chat/completions \\
      --header 'Content-Type: application/json' --body @request.json
  signgate serve --id app --secret-env SIGNGATE_SECRET \\
      --header-env 'Authorization=Bearer ${OPENAI_API_KEY}' \\
      --allow-upstream https://api.openai.com/v1/
  signgate revoke --user user-42 --store redis://127.0.0.1:6379/0
"""

#: Sub-command name -> its module.
COMMANDS = {
    "sign": "signgate.cli.sign",
    "serve": "signgate.cli.serve",
    "revoke": "signgate.cli.revoke",
    "standin": "signgate.cli.standin",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser(prog: str = "signgate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Presigned URLs for LLM APIs. The backend signs a short-lived URL; the gateway checks it, "
        "adds the API key and streams the answer back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"signgate {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    for name in COMMANDS:
        module = _module(name)
        extra = module.EXTRA
        summary = module.SUMMARY + (f" (needs signgate[{extra}])" if extra and _extras.missing(extra) else "")
        p = sub.add_parser(
            name,
            help=summary,
            description=module.DESCRIPTION,
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "signgate") -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    if command in COMMANDS:
        extra = _module(command).EXTRA
        missing = _extras.missing(extra) if extra else []
        if missing:  # whatever the arguments: they may name options only the extra's code knows
            print(f"{prog} {command}: error: {_extras.missing_message(extra, missing)}", file=sys.stderr)
            return 2
    parser = build_parser(prog)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(_module(args.command).run(args))
    except (CommandError, SigningError, ValueError) as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
