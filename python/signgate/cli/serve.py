"""``signgate serve``: the gateway's flags, turned into a configuration, then served.

The flags build the same :class:`~signgate.gateway.config.GatewayConfig` a TOML file does (one key
through :func:`~signgate.gateway.config.key_from_table`, as a ``[keys.<id>]`` table would), and
:func:`signgate.gateway.serve.serve` runs it; nothing of the gateway is imported until then, so
the flags parse (and ``--help`` shows) without the gateway extra.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import _extras
from ..errors import CommandError, ConfigError
from .common import parse_header, secret_from_env

if TYPE_CHECKING:
    from ..gateway.config import GatewayConfig, KeyConfig

SUMMARY = "run the gateway: verify signed URLs, add the API key, stream the answer back"
EXTRA = "gateway"
DESCRIPTION = (
    "Run the gateway. Each request must carry a valid SW1 signature; it is forwarded to the signed upstream "
    "with the key's headers added, and the answer is streamed back."
)
EPILOG = """\
examples:
  # Signway-compatible (the secret and the API key end up in the process list; prefer the next form)
  signgate serve my-id my-secret --header 'Authorization: Bearer sk-...'

  # secrets from the environment, one upstream allowed, one browser origin
  export SIGNGATE_SECRET=... OPENAI_API_KEY=...
  signgate serve --id my-id --secret-env SIGNGATE_SECRET \\
      --header-env 'Authorization=Bearer ${OPENAI_API_KEY}' \\
      --allow-upstream https://api.openai.com/v1/ --cors-origin https://app.example.com

  # many keys, rotation, limits: a TOML file (see docs/operations.md); kill -HUP reloads it
  signgate serve --config gateway.toml

  # revocation and reload over HTTP, on a private port (see signgate revoke --help)
  export SIGNGATE_ADMIN_TOKEN=$(openssl rand -hex 32)
  signgate serve --config gateway.toml --admin-port 3001 --admin-token-env SIGNGATE_ADMIN_TOKEN
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("key_id", nargs="?", metavar="ID", help="key id (Signway-compatible form)")
    p.add_argument("secret", nargs="?", metavar="SECRET", help="its secret (Signway-compatible form; visible in ps)")
    key = p.add_argument_group("one key from flags")
    key.add_argument("--id", dest="flag_id", metavar="ID", help="key id")
    key.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="VAR",
        help="variable holding the key's secret (repeat for rotation: every secret verifies)",
    )
    key.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'K: V'",
        help="header added to every upstream request (Signway-compatible)",
    )
    key.add_argument(
        "--header-env",
        action="append",
        default=[],
        metavar="'K=TEMPLATE'",
        help="header added upstream, ${VAR} expanded from the environment, "
        "e.g. 'Authorization=Bearer ${OPENAI_API_KEY}'",
    )
    key.add_argument(
        "--allow-upstream",
        action="append",
        default=[],
        metavar="PREFIX",
        help="upstream origin and path prefix the key may reach (repeatable); without any, "
        "every public upstream is allowed, as in Signway",
    )
    key.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="SCOPE.LIMIT=N",
        help="a limit for the key (SCOPE key), each tenant or each user: e.g. user.requests_per_minute=10, "
        "tenant.concurrent_streams=20, key.tokens_per_day=1000000 (repeatable)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with [gateway] settings and [keys.<id>] tables; SIGHUP reloads it (and the flags on top)",
    )
    srv = p.add_argument_group("server")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    srv.add_argument("--port", type=int, default=3000, help="port to listen on (default: 3000)")
    srv.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    srv.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser origin allowed to call the gateway (repeatable; '*' for any)",
    )
    srv.add_argument(
        "--allow-private-upstreams",
        action="store_true",
        help="allow upstreams on loopback, private and link-local addresses (tests, local models)",
    )
    state = p.add_argument_group("shared state and usage")
    state.add_argument(
        "--store",
        metavar="URL",
        help="where nonces and counters live: memory (default, per worker), redis://host:port/db, "
        "redis+cluster://host:port,host:port or redis+sentinel://host:port,host:port/service (docs/deploy.md)",
    )
    state.add_argument(
        "--store-fail-open",
        action="store_true",
        help="when the store is unreachable, serve without limits instead of refusing with 503",
    )
    state.add_argument("--usage-webhook", metavar="URL", help="POST one JSON usage record per request to this URL")
    admin = p.add_argument_group("revocation and the admin endpoint")
    admin.add_argument(
        "--revoke-live",
        action="store_true",
        help="end the live streams a revocation covers (with an SSE error event), instead of letting them finish",
    )
    admin.add_argument(
        "--admin-port",
        type=int,
        metavar="PORT",
        help="serve the admin endpoint (POST /revoke, GET /revocations, POST /reload) on this port, never the "
        "public one (default: off)",
    )
    admin.add_argument("--admin-host", default="127.0.0.1", help="address of the admin endpoint (default: 127.0.0.1)")
    admin.add_argument(
        "--admin-token-env",
        metavar="VAR",
        help="variable holding the admin endpoint's bearer token (at least 16 characters)",
    )
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-body", metavar="SIZE", help="largest request body (default: 1MiB)")
    lim.add_argument("--max-header-bytes", metavar="SIZE", help="largest request header block (default: 16KiB)")
    lim.add_argument(
        "--max-buffered",
        metavar="SIZE",
        help="request-body bytes a worker holds at once across all requests; beyond it, 503 (default: 64MiB)",
    )
    lim.add_argument(
        "--max-streams", type=int, metavar="N", help="concurrent upstream requests per worker (default: 9000)"
    )
    lim.add_argument("--max-expires", type=int, metavar="SECONDS", help="longest accepted X-Sw-Expires (default: 3600)")
    lim.add_argument("--connect-timeout", type=float, metavar="SECONDS", help="upstream connect timeout (default: 10)")
    lim.add_argument(
        "--read-timeout",
        type=float,
        metavar="SECONDS",
        help="longest upstream silence, before headers or between chunks (default: 300)",
    )
    lim.add_argument(
        "--client-timeout",
        type=float,
        metavar="SECONDS",
        help="time to receive a request body, and longest time a response may wait for its client to read "
        "(default: 30)",
    )
    lim.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        help="time to receive a request's headers, counted from the connection's start or the previous "
        "response (default: 10)",
    )
    lim.add_argument(
        "--shutdown-timeout",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight streams may finish (default: 30)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--no-access-log", action="store_true", help="do not write JSON access log lines")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.header:
        print(
            "signgate serve: warning: --header puts its value in the process list; prefer --header-env "
            "'Name=... ${VAR}' for API keys",
            file=sys.stderr,
        )
    if config.store and config.store != "memory":
        missing = _extras.missing("redis")
        if missing:
            raise CommandError(
                f"--store {config.store.split(':', 1)[0]}://... {_extras.missing_message('redis', missing)}"
            )
    from ..gateway.serve import serve

    # SIGHUP builds the configuration again, from the file and the flags, as at start-up.
    reload = functools.partial(config_from_args, args) if args.config else None
    serve(
        config,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        reload=reload,
    )
    return 0


def config_from_argv(argv: Sequence[str]) -> GatewayConfig:
    """The configuration ``signgate serve ARGV...`` would serve (for code that embeds the gateway
    with the same flags)."""
    parser = argparse.ArgumentParser(prog="signgate serve")
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """Build and validate the configuration; raises CommandError naming the problem."""
    try:
        return _config(args)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def _config(args: argparse.Namespace) -> GatewayConfig:
    from ..gateway.config import GatewayConfig, check_origin, check_store, check_webhook, load_toml, parse_size

    config = load_toml(args.config) if args.config else GatewayConfig()
    changes: dict[str, Any] = {}
    for name in (
        "max_streams",
        "max_expires",
        "connect_timeout",
        "read_timeout",
        "client_timeout",
        "header_timeout",
        "shutdown_timeout",
    ):
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be positive, got {value}")
            changes[name] = value
    for name in ("max_body", "max_header_bytes", "max_buffered"):
        if getattr(args, name) is not None:
            changes[name] = parse_size(getattr(args, name), f"--{name.replace('_', '-')}")
    if args.cors_origin:
        changes["cors_origins"] = config.cors_origins + tuple(
            check_origin(o, "--cors-origin") for o in args.cors_origin
        )
    if args.allow_private_upstreams:
        changes["allow_private_upstreams"] = True
    if args.store is not None:
        changes["store"] = check_store(args.store, "--store")
    if args.store_fail_open:
        changes["store_fail_open"] = True
    if args.usage_webhook is not None:
        changes["usage_webhook"] = check_webhook(args.usage_webhook, "--usage-webhook")
    if args.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {args.workers}")
    changes["workers"] = args.workers
    if args.revoke_live:
        changes["revoke_live"] = True
    changes.update(_admin(args))
    config = replace(config, **changes)

    key = _key_from_flags(args)
    if key is not None:
        config = config.with_key(key)
    elif args.header or args.header_env or args.allow_upstream or args.secret_env or args.limit:
        raise CommandError(
            "--header, --header-env, --allow-upstream, --secret-env and --limit need a key: give --id ID or ID SECRET"
        )
    if not config.keys:
        raise CommandError("no keys configured: give ID SECRET, --id ID --secret-env VAR, or --config FILE")
    limited = sorted(k.id for k in config.keys.values() if k.limits or k.tenant_limits or k.user_limits)
    if config.workers > 1 and (config.store is None or config.store == "memory") and limited:
        raise CommandError(
            f"key(s) {limited} have limits, and with {config.workers} workers each would count on its own in "
            "memory: give --store redis://host:port/db (shared by every worker), or run one worker"
        )
    return config


def _admin(args: argparse.Namespace) -> dict[str, Any]:
    """The admin endpoint's settings, checked; none without --admin-port."""
    if args.admin_port is None:
        if args.admin_token_env:
            raise CommandError("--admin-token-env needs --admin-port PORT: the admin endpoint is off without it")
        return {}
    if not 0 < args.admin_port < 65536:
        raise CommandError(f"--admin-port must be between 1 and 65535, got {args.admin_port}")
    if args.admin_port == args.port:
        raise CommandError(f"--admin-port must differ from --port ({args.port}): the admin endpoint is private")
    if not args.admin_token_env:
        raise CommandError("--admin-port needs --admin-token-env VAR: the variable holding the admin token")
    from ..gateway.admin import check_token

    token = secret_from_env(args.admin_token_env, "--admin-token-env")
    try:
        check_token(token, f"--admin-token-env {args.admin_token_env}")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return {"admin_port": args.admin_port, "admin_host": args.admin_host, "admin_token": token}


def _key_from_flags(args: argparse.Namespace) -> KeyConfig | None:
    """The key the flags describe, built as its ``[keys.<id>]`` table would be."""
    from ..gateway.config import key_from_table, parse_limit_flag

    if args.key_id and args.flag_id:
        raise CommandError("give the key id once: either ID SECRET or --id ID")
    key_id = args.key_id or args.flag_id
    if key_id is None:
        return None
    if not args.secret and not args.secret_env:
        raise CommandError(f"key {key_id!r} has no secret: give it as SECRET or with --secret-env VAR")
    headers: dict[str, str] = {}
    for spec in args.header_env:
        name, sep, template = spec.partition("=")
        if not sep:
            raise CommandError(f"--header-env {spec[:40]!r} must look like 'Name=template with ${{VAR}}'")
        headers[name.strip()] = template
    limits: dict[str, Any] = {}
    for spec in args.limit:
        parse_limit_flag(spec, limits)
    table = {
        "secrets": [args.secret] if args.secret else [],
        "secret_env": list(args.secret_env),
        "headers": headers,
        "allow_upstreams": list(args.allow_upstream),
        "limits": limits,
    }
    labels = {
        "secrets": "SECRET",
        "secret_env": "--secret-env",
        "headers": "--header-env",
        "allow_upstreams": "--allow-upstream",
        "limits": "--limit",
    }
    literal = [parse_header(h) for h in args.header]  # Signway's --header: taken as written, no ${VAR}
    return key_from_table(key_id, table, "ID", labels=labels, literal_headers=literal)
