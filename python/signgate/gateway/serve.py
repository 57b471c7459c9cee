"""``signgate serve``'s server: the gateway under uvicorn, in one process or several.

Only this module (and :mod:`.protocol`) imports uvicorn: the ASGI application runs under any
server. With several workers, uvicorn starts each in a fresh process; the parsed configuration
reaches them pickled in an environment variable (which only this user and root can read, like the
variables the secrets came from), never rebuilt from the command line, so ``main([...])`` from code
serves exactly what it was given.
"""

from __future__ import annotations

import base64
import functools
import gc
import logging
import os
import pickle
import sys
from typing import Any

import uvicorn

from ..errors import ConfigError
from .accesslog import AccessLogWriter
from .app import create_app
from .config import GatewayConfig
from .protocol import protocol_class

_CONFIG_ENV = "_SIGNGATE_SERVE_CONFIG"


def serve(config: GatewayConfig, *, host: str, port: int, log_level: str = "info", access_log: bool = True) -> None:
    """Serve ``config`` on ``host:port`` until SIGTERM or SIGINT (then in-flight streams get
    ``config.shutdown_timeout`` seconds to finish)."""
    if config.workers > 1 and config.usage_hook is not None:
        raise ConfigError("a usage_hook is a function of this process; with several workers, use usage_webhook")
    if config.workers > 1 and (config.store is None or config.store == "memory"):
        print(
            f"signgate serve: warning: with {config.workers} workers and the memory store, single-use URLs are "
            "refused (503 store_unavailable): give --store redis://host:port/db to share them",
            file=sys.stderr,
        )
    options = _options(config, host, port, log_level)
    keys = ", ".join(sorted(config.keys))
    print(f"signgate gateway on http://{host}:{port} (keys: {keys}; workers: {config.workers})", file=sys.stderr)
    if config.workers == 1:
        writer = AccessLogWriter() if access_log else None
        app = create_app(config, access_log=writer)
        _tune_gc()
        try:
            uvicorn.run(app, **options)
        finally:
            if writer is not None:
                writer.close()
    else:
        os.environ[_CONFIG_ENV] = base64.b64encode(pickle.dumps((config, access_log))).decode()
        # uvicorn pickles its options for each worker: the protocol class is made for this
        # configuration, so workers find it by name (see __getattr__ below), as they do the app.
        options["http"] = "signgate.gateway.serve:WorkerProtocol"
        uvicorn.run("signgate.gateway.serve:worker_app", factory=True, workers=config.workers, **options)
    logging.shutdown()


@functools.cache
def _worker_config() -> tuple[GatewayConfig, bool]:
    """The configuration and access-log switch the parent process handed its workers."""
    config, access_log = pickle.loads(base64.b64decode(os.environ[_CONFIG_ENV]))  # noqa: S301 - our own parent's
    return config, access_log


def worker_app() -> Any:
    """uvicorn's factory in each worker process: the application for the parent's configuration."""
    config, access_log = _worker_config()
    app = create_app(config, access_log=AccessLogWriter() if access_log else None)
    _tune_gc()
    return app


def __getattr__(name: str) -> Any:
    # ``WorkerProtocol``: the protocol class for the parent's configuration, in a worker process.
    if name == "WorkerProtocol":
        return protocol_class(_worker_config()[0])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _options(config: GatewayConfig, host: str, port: int, log_level: str) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": protocol_class(config),  # httptools with deadlines and size caps for the request head
        "ws": "none",  # an upgrade reaches the gateway as HTTP, which refuses it in JSON
        "lifespan": "on",
        "access_log": False,
        "log_config": _logging_config(log_level),
        "timeout_graceful_shutdown": config.shutdown_timeout,
        "server_header": False,
        "proxy_headers": False,  # the gateway reads no client address; skip uvicorn's middleware
        "backlog": 4096,
    }


def _logging_config(level: str) -> dict[str, Any]:
    """Errors and warnings to standard error. The access log bypasses logging (AccessLogWriter)."""
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
