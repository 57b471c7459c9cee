"""``signgate serve``: run the gateway under uvicorn."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from dataclasses import replace
from typing import Any

from .. import _extras
from ..cli import CommandError, parse_header, secret_from_env
from .accesslog import AccessLogWriter
from .config import (
    ConfigError,
    GatewayConfig,
    KeyConfig,
    UpstreamPrefix,
    check_header,
    check_key_id,
    check_origin,
    check_store,
    check_webhook,
    expand_env,
    load_toml,
    parse_limit_flag,
    parse_size,
)
from .store import Limits

_ARGV_ENV = "_SIGNGATE_SERVE_ARGV"

SERVE_EPILOG = """\
examples:
  # Signway-compatible (the secret and the API key end up in the process list; prefer the next form)
  signgate serve my-id my-secret --header 'Authorization: Bearer sk-...'

  # secrets from the environment, one upstream allowed, one browser origin
  export SIGNGATE_SECRET=... OPENAI_API_KEY=...
  signgate serve --id my-id --secret-env SIGNGATE_SECRET \\
      --header-env 'Authorization=Bearer ${OPENAI_API_KEY}' \\
      --allow-upstream https://api.openai.com/v1/ --cors-origin https://app.example.com

  # many keys, rotation, limits: a TOML file (see docs/operations.md)
  signgate serve --config gateway.toml
"""


def add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the gateway: verify signed URLs, add the API key, stream the answer back",
        description="Run the gateway. Each request must carry a valid SW1 signature; it is forwarded to the "
        "signed upstream with the key's headers added, and the answer is streamed back.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    p.add_argument("--config", metavar="FILE", help="TOML file with [gateway] settings and [keys.<id>] tables")
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
    p.set_defaults(run=run_serve, command="serve")


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """Build and validate the configuration; raises ConfigError or CommandError naming the problem."""
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
    config = replace(config, **changes)

    key = _key_from_flags(args)
    if key is not None:
        config = config.with_key(key)
    elif args.header or args.header_env or args.allow_upstream or args.secret_env:
        raise CommandError(
            "--header, --header-env, --allow-upstream and --secret-env need a key: give --id ID or ID SECRET"
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


def _key_from_flags(args: argparse.Namespace) -> KeyConfig | None:
    if args.key_id and args.flag_id:
        raise CommandError("give the key id once: either ID SECRET or --id ID")
    key_id = args.key_id or args.flag_id
    if key_id is None:
        return None
    check_key_id(key_id, "ID")
    secrets = [args.secret] if args.secret else []
    secrets += [secret_from_env(var) for var in args.secret_env]
    if not secrets:
        raise CommandError(f"key {key_id!r} has no secret: give it as SECRET or with --secret-env VAR")
    headers = [check_header(*parse_header(h), "--header") for h in args.header]
    for spec in args.header_env:
        name, sep, template = spec.partition("=")
        if not sep:
            raise CommandError(f"--header-env {spec[:40]!r} must look like 'Name=template with ${{VAR}}'")
        headers.append(check_header(name.strip(), expand_env(template, f"--header-env {name.strip()}"), "--header-env"))
    uppers = tuple(UpstreamPrefix.parse(p, "--allow-upstream") for p in args.allow_upstream)
    limits: dict[str, dict[str, int]] = {}
    for spec in args.limit:
        parse_limit_flag(spec, limits)
    return KeyConfig(
        id=key_id,
        secrets=tuple(secrets),
        headers=tuple(headers),
        allow_upstreams=uppers,
        limits=Limits(**limits.get("key", {})),
        tenant_limits=Limits(**limits.get("tenant", {})),
        user_limits=Limits(**limits.get("user", {})),
    )


def _logging_config(level: str) -> dict[str, Any]:
    """Errors and warnings to standard error. The access log bypasses logging: see _access_log."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # uvicorn's access log prints the query string, which holds the signature: never enable it.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "signgate": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "signgate.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }


def _access_log(args: argparse.Namespace) -> AccessLogWriter | None:
    """The access log of a serving process: JSON lines on standard output, batched per loop
    iteration, unless --no-access-log."""
    return None if args.no_access_log else AccessLogWriter()


def _parse_serve_argv(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="signgate")
    add_serve(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def worker_app() -> Any:
    """uvicorn's factory in each worker process: rebuild the configuration from the same argv."""
    from .app import create_app
    from .protocol import configure

    args = _parse_serve_argv(json.loads(os.environ[_ARGV_ENV]))
    config = config_from_args(args)
    configure(config)  # this worker's protocol class: uvicorn builds it, so its limits are set here
    app = create_app(config, access_log=_access_log(args))
    _tune_gc()
    return app


def _tune_gc() -> None:
    """Keep CPython's cycle collector from re-walking every open stream, in a serving process.

    Each stream holds a few hundred objects for seconds or minutes. With the default thresholds
    the collector walks all of them again each time the live set grows by a quarter: 9,000 streams
    spent a third of the gateway's CPU in gc, which found no cycles at all. Objects from start-up
    are frozen out of collections, and the young generation is collected after 10,000 net
    allocations instead of 700; cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .protocol import configure

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if args.header:
        print(
            "signgate serve: warning: --header puts its value in the process list; prefer --header-env "
            "'Name=... ${VAR}' for API keys",
            file=sys.stderr,
        )
    if config.store and config.store != "memory":
        missing = _extras.missing("redis")
        if missing:
            raise CommandError(f"--store redis://... {_extras.missing_message('redis', missing)}")
    if config.workers > 1 and (config.store is None or config.store == "memory"):
        print(
            f"signgate serve: warning: with {config.workers} workers and the memory store, single-use URLs are "
            "refused (503 store_unavailable): give --store redis://host:port/db to share them",
            file=sys.stderr,
        )
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "loop": "uvloop",
        "http": configure(config),  # httptools with a deadline and a size cap for the request head
        "ws": "none",  # an upgrade reaches the gateway as HTTP, which refuses it in JSON
        "lifespan": "on",
        "access_log": False,
        "log_config": _logging_config(args.log_level),
        "timeout_graceful_shutdown": config.shutdown_timeout,
        "server_header": False,
        "proxy_headers": False,  # the gateway reads no client address; skip uvicorn's middleware
        "backlog": 4096,
    }
    keys = ", ".join(sorted(config.keys))
    print(
        f"signgate gateway on http://{args.host}:{args.port} (keys: {keys}; workers: {args.workers})", file=sys.stderr
    )
    if args.workers == 1:
        access_log = _access_log(args)
        app = create_app(config, access_log=access_log)
        _tune_gc()
        try:
            uvicorn.run(app, **options)
        finally:
            if access_log is not None:
                access_log.close()
    else:
        argv = sys.argv[sys.argv.index("serve") + 1 :] if "serve" in sys.argv else []
        os.environ[_ARGV_ENV] = json.dumps(argv)
        uvicorn.run("signgate.gateway.cli:worker_app", factory=True, workers=args.workers, **options)
    logging.shutdown()
    return 0
