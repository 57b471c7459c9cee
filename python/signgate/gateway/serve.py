"""``signgate serve``'s server: the gateway under uvicorn, in one process or several.

Only this module (and :mod:`.protocol`) imports uvicorn: the ASGI application runs under any
server. With several workers, uvicorn starts each in a fresh process; the parsed configuration
reaches them pickled in an environment variable (which only this user and root can read, like the
variables the secrets came from), never rebuilt from the command line, so ``main([...])`` from code
serves exactly what it was given.

Two things differ from ``uvicorn.run``:

- With ``admin_port``, a second listening socket is bound for the admin endpoint, and
  :class:`~.admin.Router` sends only the connections accepted on it to :class:`~.admin.Admin`.
- ``SIGHUP`` reloads the configuration in place (``reload`` builds it again: the CLI reads its
  file and flags anew). Each serving process swaps its configuration between requests, so no
  stream drops; a broken file is refused with a log line and the running configuration stays.
  uvicorn's own supervisor answers SIGHUP by replacing every worker, which cuts the streams a
  worker holds once ``--shutdown-timeout`` has passed: :class:`Supervisor` checks the file once,
  hands the new configuration to the workers it will start from then on, and passes the signal
  to each running worker, which reloads itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gc
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
import uvloop
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from ..errors import CommandError, ConfigError, ConfigRejected
from .accesslog import AccessLogWriter
from .admin import Admin, Router
from .app import Gateway, create_app
from .config import GatewayConfig
from .protocol import GatewayHttpProtocol, configure_protocol, protocol_class

_CONFIG_ENV = "_SIGNGATE_SERVE_CONFIG"

logger = logging.getLogger("signgate.gateway")

#: Builds the configuration anew (from the file and flags it came from); raises ConfigError or
#: CommandError naming what is wrong. Pickled to the workers: a module-level function or a partial.
Reloader = Callable[[], GatewayConfig]


def serve(
    config: GatewayConfig,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    access_log: bool = True,
    reload: Reloader | None = None,
) -> None:
    """Serve ``config`` on ``host:port`` until SIGTERM or SIGINT (then in-flight streams get
    ``config.shutdown_timeout`` seconds to finish). ``SIGHUP`` rebuilds the configuration with
    ``reload`` and serves it from the next request on (without ``reload``, SIGHUP is ignored)."""
    if config.workers > 1 and config.usage_hook is not None:
        raise ConfigError("a usage_hook is a function of this process; with several workers, use usage_webhook")
    if config.workers > 1 and (config.store is None or config.store == "memory"):
        print(
            f"signgate serve: warning: with {config.workers} workers and the memory store, single-use URLs are "
            "refused (503 store_unavailable), and so are revocations: give --store redis://host:port/db to share them",
            file=sys.stderr,
        )
    if config.admin_port is not None:
        if config.admin_token is None:
            raise ConfigError("the admin endpoint needs a token: give --admin-token-env VAR")
        if config.admin_port == port:
            raise ConfigError(f"the admin port must not be the public port ({port}): the admin endpoint is private")
        if config.admin_host not in ("127.0.0.1", "::1", "localhost"):
            print(
                f"signgate serve: warning: the admin endpoint listens on {config.admin_host}: whoever reaches it "
                "may try tokens; keep it on loopback or a private network",
                file=sys.stderr,
            )
    # Until the event loop's handler is installed, a SIGHUP must not end the process (its default
    # action). With workers, the supervisor installs its own at once (see Supervisor).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    options = _options(config, host, port, log_level)
    keys = ", ".join(sorted(config.keys))
    print(f"signgate gateway on http://{host}:{port} (keys: {keys}; workers: {config.workers})", file=sys.stderr)
    if config.workers == 1:
        writer = AccessLogWriter() if access_log else None
        gateway = create_app(config, access_log=writer)
        reloading = _Reloading(gateway, reload, options["http"], workers=1)
        uv_config = uvicorn.Config(_application(gateway, config, reloading), **options)
        sockets = _sockets(uv_config, config)
        server = uvicorn.Server(uv_config)
        _tune_gc()
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(_serve_one(server, sockets, reloading))
        except KeyboardInterrupt:
            pass
        finally:
            if writer is not None:
                writer.close()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
    else:
        os.environ[_CONFIG_ENV] = _pickled(config, access_log, reload)
        # uvicorn pickles its options for each worker: the protocol class is made for this
        # configuration, so workers find it by name (see __getattr__ below), as they do the app.
        options["http"] = "signgate.gateway.serve:WorkerProtocol"
        uv_config = uvicorn.Config("signgate.gateway.serve:worker_app", factory=True, workers=config.workers, **options)
        sockets = _sockets(uv_config, config)
        with contextlib.suppress(KeyboardInterrupt):
            Supervisor(uv_config, sockets, reload, access_log).run()
    logging.shutdown()


async def _serve_one(server: uvicorn.Server, sockets: list[socket.socket], reloading: _Reloading) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloading.on_signal)
    await server.serve(sockets=sockets)


def _sockets(uv_config: uvicorn.Config, config: GatewayConfig) -> list[socket.socket]:
    """The public socket, as uvicorn binds it, and the admin socket when there is one."""
    public = uv_config.bind_socket()
    if config.admin_port is None:
        return [public]
    family = socket.AF_INET6 if ":" in config.admin_host else socket.AF_INET
    admin = socket.socket(family, socket.SOCK_STREAM)
    admin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        admin.bind((config.admin_host, config.admin_port))
    except OSError as exc:
        public.close()
        admin.close()
        raise ConfigError(
            f"cannot listen for the admin endpoint on {config.admin_host}:{config.admin_port}: {exc.strerror}"
        ) from None
    admin.set_inheritable(True)
    print(f"signgate admin endpoint on http://{config.admin_host}:{config.admin_port}", file=sys.stderr)
    return [public, admin]


def _pickled(config: GatewayConfig, access_log: bool, reload: Reloader | None) -> str:
    return base64.b64encode(pickle.dumps((config, access_log, reload))).decode()


class _Reloading:
    """How one serving process reloads: on SIGHUP (or the admin endpoint), build the configuration
    again and swap it into the gateway and the protocol class; a broken one is logged and refused.
    With several workers, the admin endpoint checks the file here, then signals the supervisor,
    which reloads every worker."""

    def __init__(
        self, gateway: Gateway, reload: Reloader | None, protocol: type[GatewayHttpProtocol], *, workers: int
    ) -> None:
        self._gateway = gateway
        self._reload = reload
        self._protocol = protocol
        self._workers = workers

    @property
    def available(self) -> bool:
        return self._reload is not None

    def on_signal(self) -> None:
        if self._reload is None:
            logger.warning("SIGHUP: this gateway was not started from a configuration file; nothing to reload")
            return
        with contextlib.suppress(ConfigRejected):  # logged
            self.apply()

    def apply(self) -> dict[str, Any]:
        """Reload now; returns what the admin endpoint answers. Raises ConfigRejected (logged)."""
        config = self._build()
        kept = self._gateway.reconfigure(config)
        configure_protocol(self._protocol, config)
        self._gateway.metrics.reloads["ok"] += 1
        keys = sorted(config.keys)
        logger.info("reloaded the configuration (process %d): keys %s", os.getpid(), ", ".join(keys))
        if kept:
            logger.warning("reload: %s changed, which takes a restart; the running value(s) stay", ", ".join(kept))
        return {"reloaded": True, "keys": keys, "kept": kept}

    async def from_admin(self) -> dict[str, Any]:
        if self._workers == 1:
            return self.apply()
        self._build()  # refused here, with its error, if it is broken
        os.kill(os.getppid(), signal.SIGHUP)
        return {"reloading": True, "workers": self._workers}

    def _build(self) -> GatewayConfig:
        assert self._reload is not None
        try:
            return self._reload()
        except (ConfigError, CommandError) as exc:
            self._gateway.metrics.reloads["failed"] += 1
            logger.error("reload refused, the running configuration stays: %s", exc)
            raise ConfigRejected(f"the configuration was not reloaded: {exc}") from None
        except Exception as exc:
            self._gateway.metrics.reloads["failed"] += 1
            logger.exception("reload failed, the running configuration stays")
            raise ConfigRejected(f"the configuration was not reloaded: {type(exc).__name__}") from None


def _application(gateway: Gateway, config: GatewayConfig, reloading: _Reloading) -> Any:
    """What uvicorn serves: the gateway, behind the admin router when there is an admin port."""
    if config.admin_port is None:
        return gateway
    assert config.admin_token is not None
    admin = Admin(gateway, config.admin_token, reloading.from_admin if reloading.available else None)
    return Router(gateway, admin, config.admin_port)


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, with SIGHUP a reload in place instead of new workers."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], reload: Reloader | None,
                 access_log: bool) -> None:  # fmt: skip
        super().__init__(config, sockets)
        self._reload = reload
        self._access_log = access_log

    def handle_hup(self) -> None:
        if self._reload is None:
            logger.warning("SIGHUP: this gateway was not started from a configuration file; nothing to reload")
            return
        try:
            config = self._reload()
        except Exception as exc:
            logger.error("reload refused, the running configuration stays: %s", exc)
            return
        # Workers started from now on (replacing one that died) start with it.
        os.environ[_CONFIG_ENV] = _pickled(config, self._access_log, self._reload)
        for process in self.processes:
            pid = process.pid
            if pid is not None and process.process.is_alive():
                # A worker reloads the file itself (see worker_app). One that has not installed its
                # handler yet is still starting and serves nothing: the signal ends it, and uvicorn
                # starts it again with the configuration above.
                os.kill(pid, signal.SIGHUP)
        logger.info("reload: signalled %d worker(s)", len(self.processes))


@functools.cache
def _worker_config() -> tuple[GatewayConfig, bool, Reloader | None]:
    """The configuration, access-log switch and reloader the parent process handed its workers."""
    config, access_log, reload = pickle.loads(base64.b64decode(os.environ[_CONFIG_ENV]))  # noqa: S301 - our own parent's
    return config, access_log, reload


@functools.cache
def _worker_protocol() -> type[GatewayHttpProtocol]:
    return protocol_class(_worker_config()[0])


def worker_app() -> Any:
    """uvicorn's factory in each worker process: the application for the parent's configuration.
    It runs in the worker's event loop, before it serves: the SIGHUP handler is installed here."""
    config, access_log, reload = _worker_config()
    gateway = create_app(config, access_log=AccessLogWriter() if access_log else None)
    reloading = _Reloading(gateway, reload, _worker_protocol(), workers=config.workers)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloading.on_signal)
    _tune_gc()
    return _application(gateway, config, reloading)


def __getattr__(name: str) -> Any:
    # ``WorkerProtocol``: the protocol class for the parent's configuration, in a worker process.
    if name == "WorkerProtocol":
        return _worker_protocol()
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
