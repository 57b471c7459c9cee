"""``python -m demo``: the app, the gateway and the stand-in model, on loopback, in one command.

:func:`plan` decides what to run from the options and the environment (a pure function, so
tests can check it); :class:`Supervisor` starts child processes, waits until their health
endpoints answer, and stops them. Secrets are generated here and reach the children only
through environment variables: never on a command line, never printed.

The Flask app runs in this process on a threaded werkzeug server; the gateway and the stand-in
are children (``python -m signgate serve`` / ``standin``).
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

from signgate import providers
from signgate.standin.server import MODEL_ID as STANDIN_MODEL

from . import apis

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Environment variables that carry secrets to the children.
GATEWAY_SECRET_ENV = "SIGNGATE_SECRET"  # noqa: S105 - the name of a variable, not a secret
STANDIN_KEY_ENV = "STANDIN_API_KEY"
#: Set, they replace the secrets generated at start: the end-to-end tests choose their own so
#: that they can check that neither ever reaches the browser. Read by the launcher only.
GIVEN_SECRET_ENV = "DEMO_SIGNING_SECRET"  # noqa: S105 - the name of a variable, not a secret
GIVEN_STANDIN_KEY_ENV = "DEMO_STANDIN_API_KEY"
#: Never handed to a child that does not need them.
_SECRET_ENVS = (
    GATEWAY_SECRET_ENV,
    STANDIN_KEY_ENV,
    GIVEN_SECRET_ENV,
    GIVEN_STANDIN_KEY_ENV,
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "SIGNGATE_UPSTREAM_API_KEY",
)


@dataclass(frozen=True)
class Child:
    """A process to start: its command, its environment, and where it says it is healthy."""

    name: str
    argv: list[str]
    #: Holds the secrets, so it is kept out of repr().
    env: dict[str, str] = field(repr=False)
    url: str
    health_url: str
    note: str = ""


@dataclass(frozen=True)
class Plan:
    children: list[Child]
    #: Config for ``create_app``; holds the signing secret, so never print it.
    app_config: dict[str, Any] = field(repr=False)
    host: str
    port: int
    upstream: str
    #: The app's instance folder (the catalog lives there); None for ``demo/instance``.
    instance_path: str | None = None

    @property
    def app_url(self) -> str:
        return f"http://{_netloc(self.host, self.port)}"


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_private(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _allowed_prefix(url: str) -> str:
    """The gateway's --allow-upstream for ``url``: the API root of an OpenAI-style
    ``.../v1/chat/completions`` URL (``.../v1/``), else its path up to the last slash."""
    parts = urlsplit(url)
    root, found, _ = parts.path.rpartition("/chat/completions")
    path = root + "/" if found else parts.path[: parts.path.rfind("/") + 1] or "/"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _child_env(environ: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in _SECRET_ENVS}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def plan(args: argparse.Namespace, environ: Mapping[str, str]) -> Plan:
    """What to run for the API ``--provider`` names (demo/apis.py). Upstream:
    ``SIGNGATE_UPSTREAM_URL`` (with ``SIGNGATE_UPSTREAM_API_KEY`` or the API's own key variable
    as its key, if set), else the API's service when its key variable (``OPENAI_API_KEY``,
    ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``) is set, else the offline stand-in, which speaks
    all four.

    The signing secret and the stand-in's key are fresh random values unless
    ``DEMO_SIGNING_SECRET`` / ``DEMO_STANDIN_API_KEY`` give them (a stale ``SIGNGATE_SECRET`` or
    ``STANDIN_API_KEY`` in the environment is never reused)."""
    api = apis.APIS[args.provider]
    host: str = args.host
    gateway_url = f"http://{_netloc(host, args.gateway_port)}"
    signing_secret = environ.get(GIVEN_SECRET_ENV) or secrets.token_urlsafe(32)
    gateway_env = {GATEWAY_SECRET_ENV: signing_secret}
    children: list[Child] = []

    custom = environ.get("SIGNGATE_UPSTREAM_URL", "").strip()
    key_env = next((k for k in ("SIGNGATE_UPSTREAM_API_KEY", api.key_env) if environ.get(k)), None)
    standin = not custom and not environ.get(api.key_env)
    # The stand-in answers as whatever model is asked for, and the page names the model that
    # answered: so ask it for itself, and a real service for the API's usual model unless told.
    default_model = STANDIN_MODEL if standin else api.default_model
    model = args.model or environ.get("MODEL") or default_model
    if custom:
        upstream = custom
    elif not standin:
        upstream, key_env = api.service + api.path(model), api.key_env
    else:
        # The stand-in only ever talks to the gateway, so it stays on loopback whatever --host is.
        standin_url = f"http://127.0.0.1:{args.standin_port}"
        upstream, key_env = standin_url + api.path(model), STANDIN_KEY_ENV
        api_key = environ.get(GIVEN_STANDIN_KEY_ENV) or secrets.token_urlsafe(32)
        gateway_env[STANDIN_KEY_ENV] = api_key
        standin_argv = [sys.executable, "-m", "signgate", "standin", "--host", "127.0.0.1"]
        standin_argv += ["--port", str(args.standin_port), "--api-key-env", STANDIN_KEY_ENV]
        if args.standin_delay is not None:
            standin_argv += ["--delay", str(args.standin_delay)]
        children.append(
            Child(
                "stand-in",
                standin_argv,
                _child_env(environ, {STANDIN_KEY_ENV: api_key}),
                standin_url,
                f"{standin_url}/healthz",
                "offline stand-in model",
            )
        )
    if key_env is not None and key_env != STANDIN_KEY_ENV:
        gateway_env[key_env] = environ[key_env]

    gateway_argv = [sys.executable, "-m", "signgate", "serve", "--id", args.key_id, "--secret-env", GATEWAY_SECRET_ENV]
    if key_env is not None:
        # In the header the API reads it from; ${VAR} is expanded by the gateway from its own
        # environment, not by a shell.
        name, value = providers.by_name(api.name).auth_header(f"${{{key_env}}}")
        gateway_argv += ["--header-env", f"{name}={value}"]
    for header in api.headers:
        gateway_argv += ["--header", header]
    gateway_argv += ["--allow-upstream", _allowed_prefix(upstream)]
    if _is_private(upstream):
        gateway_argv.append("--allow-private-upstreams")
    gateway_argv += ["--cors-origin", f"http://{_netloc(host, args.port)}"]
    # The app signs single-use URLs attributed to the session's user: limit each user here too.
    gateway_argv += ["--limit", "user.requests_per_minute=30", "--limit", "user.concurrent_streams=3"]
    gateway_argv += ["--host", host, "--port", str(args.gateway_port)]
    children.append(
        Child(
            "gateway",
            gateway_argv,
            _child_env(environ, gateway_env),
            gateway_url,
            f"{gateway_url}/healthz",
            f"forwards to {upstream}",
        )
    )

    app_config = {
        "SIGNGATE_KEY_ID": args.key_id,
        "SIGNGATE_SECRET": signing_secret,
        "GATEWAY_URL": gateway_url,
        "UPSTREAM_URL": upstream,
        "PROVIDER": api.name,
        "ANSWER_AS": args.answer_as or api.answer_as,
        "MODEL": model,
        "STANDIN": standin,
    }
    return Plan(
        children=children,
        app_config=app_config,
        host=host,
        port=args.port,
        upstream=upstream,
        instance_path=args.instance_path,
    )


class StartupError(Exception):
    """A child died or never became healthy; the message holds its recent output."""


@dataclass
class _Running:
    child: Child
    process: subprocess.Popen[str]
    output: collections.deque[str]
    reader: threading.Thread


class Supervisor:
    """Starts children, waits for their health endpoints, and stops them (terminate, then
    kill after ``grace`` seconds). Each child's output is kept (the last ``keep`` lines) and,
    unless ``quiet``, echoed with its name in front."""

    def __init__(self, *, out: IO[str] | None = None, quiet: bool = False, grace: float = 5.0, keep: int = 200) -> None:
        self.out = out if out is not None else sys.stdout
        self.quiet = quiet
        self.grace = grace
        self.keep = keep
        self.running: list[_Running] = []
        self._write_lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._write_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def start(self, child: Child) -> None:
        process = subprocess.Popen(  # noqa: S603 - argv is built by plan(), never by a shell
            child.argv,
            env=child.env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            # Its own session: a Ctrl-C in the terminal reaches only us, and we stop it in order.
            start_new_session=True,
        )
        output: collections.deque[str] = collections.deque(maxlen=self.keep)
        reader = threading.Thread(target=self._pump, args=(child.name, process, output), daemon=True)
        reader.start()
        self.running.append(_Running(child, process, output, reader))

    def _pump(self, name: str, process: subprocess.Popen[str], output: collections.deque[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if not self.quiet:
                self.say(f"[{name}] {line.rstrip()}")

    def output_of(self, running: _Running) -> str:
        running.reader.join(timeout=1.0)
        return "\n".join(running.output)

    def wait_healthy(self, timeout: float) -> None:
        """Return once every child's health URL answers 200; raise :class:`StartupError` if a
        child exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        pending = list(self.running)
        while pending:
            for running in list(pending):
                code = running.process.poll()
                if code is not None:
                    raise StartupError(
                        f"{running.child.name} exited with code {code} during start-up; its output:\n"
                        + (self.output_of(running) or "(none)")
                    )
                if _healthy(running.child.health_url):
                    pending.remove(running)
            if pending and time.monotonic() > deadline:
                names = ", ".join(r.child.name for r in pending)
                tail = "\n".join(f"--- {r.child.name}:\n{self.output_of(r) or '(no output)'}" for r in pending)
                raise StartupError(f"{names} did not answer its health check within {timeout:g} s\n{tail}")
            if pending:
                time.sleep(0.1)

    def died(self) -> _Running | None:
        """A child that has exited, if any."""
        return next((r for r in self.running if r.process.poll() is not None), None)

    def stop(self) -> None:
        """Terminate every child, wait up to ``grace`` seconds, then kill what is left."""
        for running in self.running:
            if running.process.poll() is None:
                running.process.terminate()
        deadline = time.monotonic() + self.grace
        for running in self.running:
            try:
                running.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
        for running in self.running:
            running.reader.join(timeout=1.0)
            if running.process.stdout is not None:
                running.process.stdout.close()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our own http:// URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=(
            "Run the signgate demo: the Flask app, the gateway and (unless the API's key variable or "
            "SIGNGATE_UPSTREAM_URL is set) the offline stand-in model, which speaks every API."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address for the app and the gateway (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="the app's port (default 5000)")
    parser.add_argument("--gateway-port", type=int, default=5001, help="the gateway's port (default 5001)")
    parser.add_argument("--standin-port", type=int, default=5002, help="the stand-in model's port (default 5002)")
    parser.add_argument("--standin-delay", type=float, default=None, help="seconds the stand-in waits between chunks")
    parser.add_argument(
        "--provider",
        choices=apis.API_NAMES,
        default="chat",
        help="the LLM API: OpenAI chat completions (default), OpenAI responses, Anthropic messages or Gemini; "
        "a real one with OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY set",
    )
    parser.add_argument(
        "--answer-as",
        choices=("schema", "tool"),
        default=None,
        help="the answer as JSON matching a schema, or as a forced function call's arguments "
        "(default: a function call for anthropic, a schema for the others)",
    )
    parser.add_argument(
        "--model", default=None, help="model name sent upstream (default $MODEL, or the API's usual model)"
    )
    parser.add_argument("--key-id", default="demo", help="the signing key's id (default demo)")
    parser.add_argument(
        "--instance-path",
        default=None,
        metavar="DIR",
        help="the app's instance folder, where the catalog is built (default demo/instance)",
    )
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds to wait for health checks")
    parser.add_argument("--quiet", action="store_true", help="do not echo the children's logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    from werkzeug.serving import make_server

    from . import create_app

    args = parse_args(argv)
    the_plan = plan(args, os.environ if environ is None else environ)
    supervisor = Supervisor(quiet=args.quiet)

    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = None
    try:
        try:
            app = create_app(the_plan.app_config, instance_path=the_plan.instance_path)
        except ValueError as exc:  # a malformed setting, e.g. SIGN_EXPIRES=soon
            supervisor.say(f"error: {exc}")
            return 2
        try:
            # Bind here rather than in make_server, which calls sys.exit() when the port is busy.
            family = socket.AF_INET6 if ":" in the_plan.host else socket.AF_INET
            with socket.create_server((the_plan.host, the_plan.port), family=family) as listening:
                bound = make_server(the_plan.host, the_plan.port, app, threaded=True, fd=listening.fileno())
        except OSError as exc:
            supervisor.say(f"error: the app cannot listen on {the_plan.app_url}: {exc}; choose another --port")
            return 1
        threading.Thread(target=bound.serve_forever, name="app", daemon=True).start()
        server = bound  # only a serving server may be shut down: shutdown() waits for serve_forever
        for child in the_plan.children:
            supervisor.start(child)
        try:
            supervisor.wait_healthy(args.startup_timeout)
        except StartupError as exc:
            supervisor.say(f"error: {exc}")
            return 1
        for child in the_plan.children:
            supervisor.say(f"{child.name:<9} {child.url}  ({child.note})")
        supervisor.say(f"{'app':<9} {the_plan.app_url}/cars")
        supervisor.say("ready")
        while not stopping.wait(0.5):
            dead = supervisor.died()
            if dead is not None:
                code = dead.process.returncode
                supervisor.say(
                    f"error: {dead.child.name} exited with code {code}; its output:\n{supervisor.output_of(dead)}"
                )
                return 1
        supervisor.say("stopping")
        return 0
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
