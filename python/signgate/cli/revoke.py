"""``signgate revoke``: take back every URL of a user, tenant, key or nonce signed until now.

In the Redis the gateways share (``--store``, through :class:`signgate.Revoker`; needs the redis
extra), or through one gateway's admin endpoint (``--admin``, the standard library's HTTP client;
the only way to reach a gateway that keeps its state in memory). Prints the revocation as one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

from ..errors import CommandError, RevocationError, StoreError
from ..revocation import KINDS, Revocation, one_subject
from .common import secret_from_env

SUMMARY = "revoke the signed URLs of a user, tenant, key or nonce before they expire"
EXTRA = None  # --store needs the redis extra, --admin nothing: checked in run()
DESCRIPTION = (
    "Revoke every URL of one subject signed until now: the gateways refuse them with 401 revoked (and, started "
    "with --revoke-live, end their live streams). URLs signed afterwards work. Ids are matched exactly as signed "
    "(case-sensitive). A revocation lasts as long as the URLs it covers can be valid, then goes by itself."
)
EPILOG = """\
examples:
  # in the Redis every gateway shares (their --store)
  signgate revoke --user user-42 --store redis://127.0.0.1:6379/0
  signgate revoke --tenant acme --store redis+sentinel://10.0.0.1:26379/mymaster

  # through one gateway's admin endpoint (its --admin-port and --admin-token-env)
  export SIGNGATE_ADMIN_TOKEN=...
  signgate revoke --nonce Qx3... --admin http://127.0.0.1:3001

  signgate revoke --list --store redis://127.0.0.1:6379/0
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    subject = p.add_argument_group("what to revoke (exactly one)")
    for kind in KINDS:
        subject.add_argument(
            f"--{kind}",
            metavar=kind.upper(),
            help=f"revoke every URL signed for this {kind} (write --{kind}=VALUE when VALUE starts with '-')",
        )
    subject.add_argument("--list", action="store_true", help="print the revocations in force instead")
    where = p.add_argument_group("where (exactly one)")
    where.add_argument("--store", metavar="URL", help="the Redis the gateways share: redis://, redis+sentinel://, ...")
    where.add_argument("--admin", metavar="URL", help="a gateway's admin endpoint, e.g. http://127.0.0.1:3001")
    p.add_argument(
        "--admin-token-env",
        default="SIGNGATE_ADMIN_TOKEN",
        metavar="VAR",
        help="variable holding the admin token, with --admin (default: SIGNGATE_ADMIN_TOKEN)",
    )
    p.add_argument("--namespace", default="signgate", help="the gateways' Redis namespace (default: signgate)")
    p.add_argument(
        "--lifetime",
        type=int,
        metavar="SECONDS",
        help="keep the revocation this long (default: the longest URL lifetime a gateway announced to the store)",
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="return at once (by default it returns once the revocation's second has passed, so URLs signed "
        "afterwards are never covered)",
    )


def run(args: argparse.Namespace) -> int:
    if (args.store is None) == (args.admin is None):
        raise CommandError("give exactly one of --store URL (the shared Redis) or --admin URL (a gateway)")
    subjects = {kind: getattr(args, kind) for kind in KINDS}
    if args.list:
        if any(v is not None for v in subjects.values()):
            raise CommandError("--list takes no subject")
        revocations = _list_store(args) if args.store else _list_admin(args)
        for r in revocations:
            print(json.dumps(r))
        return 0
    try:
        kind, subject = one_subject(subjects)
    except RevocationError as exc:
        raise CommandError(f"--{exc.field}: {str(exc).removeprefix(exc.field + ': ')}") from None
    result = _revoke_store(args, kind, subject) if args.store else _revoke_admin(args, kind, subject)
    print(json.dumps(result))
    return 0


def _revoker(args: argparse.Namespace) -> Any:
    from ..revocation import Revoker

    try:
        return Revoker(args.store, namespace=args.namespace, lifetime=args.lifetime)
    except ImportError as exc:
        raise CommandError(str(exc).replace("signgate.Revoker", "--store")) from None
    except (RevocationError, ValueError) as exc:
        raise CommandError(f"--store: {exc}") from None


def _revoke_store(args: argparse.Namespace, kind: str, subject: str) -> dict[str, Any]:
    try:
        with _revoker(args) as revoker:
            revocation: Revocation = revoker.revoke(**{kind: subject}, wait=not args.no_wait)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    return revocation.to_dict()


def _list_store(args: argparse.Namespace) -> list[dict[str, Any]]:
    try:
        with _revoker(args) as revoker:
            return [r.to_dict() for r in revoker.revocations()]
    except StoreError as exc:
        raise CommandError(str(exc)) from None


def _revoke_admin(args: argparse.Namespace, kind: str, subject: str) -> dict[str, Any]:
    answer = _admin_call(args, "POST", "/revoke", {kind: subject})
    revoked = answer["revoked"]
    if not args.no_wait:
        # The gateway's clock decided the second; this one waits for it to pass, as closely as it can.
        time.sleep(min(1.0, max(0.0, revoked["at"] + 1 - time.time())))
    return {**revoked, "streams_ended": answer.get("streams_ended", 0)}


def _list_admin(args: argparse.Namespace) -> list[dict[str, Any]]:
    return list(_admin_call(args, "GET", "/revocations", None)["revocations"])


def _admin_call(args: argparse.Namespace, method: str, path: str, payload: dict[str, str] | None) -> Any:
    base = args.admin.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise CommandError(f"--admin {base[:60]!r} must be an http(s) URL, e.g. http://127.0.0.1:3001")
    token = secret_from_env(args.admin_token_env, "--admin-token-env")
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - an http(s) URL, checked above
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise CommandError(f"the admin endpoint refused: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach the admin endpoint at {base}: {reason}") from None
