"""``signgate sign``: print a signed URL for one upstream request."""

from __future__ import annotations

import argparse
import json

from ..signer import DEFAULT_EXPIRES_IN, Signer
from .common import parse_header, read_body, secret_from_env

SUMMARY = "print a signed URL for one upstream request"
EXTRA = None
DESCRIPTION = (
    "Sign one request and print the URL. The secret is read from an environment variable, never from the command line."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    headers = dict(parse_header(h) for h in args.header)
    secret = secret_from_env(args.secret_env)
    signer = Signer(args.id, secret, args.gateway, expires_in=args.expires)
    signed = signer.sign(args.method, args.upstream, headers=headers, body=read_body(args.body))
    print(json.dumps(signed.to_dict(), ensure_ascii=False) if args.json else signed.url)
    return 0
