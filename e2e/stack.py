"""The demo as the end-to-end tests run it: real processes on free loopback ports.

:meth:`Stack.demo` is ``python -m demo`` (the app, the gateway and the stand-in model) with
secrets the tests chose; :meth:`Stack.app_only` is the Flask app alone, pointed at a gateway
address where nothing listens. Either keeps every line of its output, so a failing test can
show what the servers said while it ran.
"""

from __future__ import annotations

import json
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Variables that would make the launcher use a real model instead of the stand-in.
_UPSTREAM_ENVS = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "SIGNGATE_UPSTREAM_URL", "SIGNGATE_UPSTREAM_API_KEY",
    "MODEL",
)  # fmt: skip
#: A port that another process took between our probe and the launcher's bind.
_PORT_TAKEN = ("address already in use", "choose another --port")


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_secret() -> str:
    """A secret as the demo makes them; URL-safe, so no encoding the page might apply hides it."""
    return secrets.token_urlsafe(32)


class StackError(Exception):
    """The stack exited or never became healthy; the message holds its output."""


@dataclass
class Stack:
    """One running demo. ``secrets`` are the values that must never reach the browser."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    app_url: str
    gateway_url: str
    standin_url: str | None
    health_urls: list[str]
    secrets: dict[str, str] = field(repr=False)
    log_path: Path | None = None
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    lines: list[str] = field(default_factory=list, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)

    # -- what to run ------------------------------------------------------------------------

    @classmethod
    def demo(
        cls,
        name: str,
        instance: Path,
        *,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        args: tuple[str, ...] = (),
    ) -> Stack:
        """``python -m demo`` on three free ports. ``env`` adds variables the app reads
        (``SIGN_EXPIRES``, ``SIGN_RATE_LIMIT``, ...); ``args`` options of the launcher
        (``--provider anthropic``). Not started yet: call :meth:`start`."""
        app, gateway, standin = free_port(), free_port(), free_port()
        chosen = {"signing secret": new_secret(), "stand-in API key": new_secret()}
        argv = [sys.executable, "-m", "demo", "--host", "127.0.0.1", "--port", str(app)]
        argv += ["--gateway-port", str(gateway), "--standin-port", str(standin), "--instance-path", str(instance)]
        argv += args
        environ = _base_env(env)
        environ["DEMO_SIGNING_SECRET"] = chosen["signing secret"]
        environ["DEMO_STANDIN_API_KEY"] = chosen["stand-in API key"]
        base = "http://127.0.0.1"
        return cls(
            name=name,
            argv=argv,
            env=environ,
            app_url=f"{base}:{app}",
            gateway_url=f"{base}:{gateway}",
            standin_url=f"{base}:{standin}",
            health_urls=[f"{base}:{app}/healthz", f"{base}:{gateway}/healthz", f"{base}:{standin}/healthz"],
            secrets=chosen,
            log_path=log_dir / f"{name}.log" if log_dir else None,
        )

    @classmethod
    def app_only(cls, name: str, instance: Path, *, gateway_port: int, log_dir: Path | None = None) -> Stack:
        """The Flask app alone, configured for a gateway at ``gateway_port`` that is not running
        (the caller holds that port bound, unlistened, so connections to it are refused)."""
        app = free_port()
        chosen = {"signing secret": new_secret()}
        factory = f"demo:create_app(instance_path={str(instance)!r})"
        argv = [sys.executable, "-m", "flask", "--app", factory, "run", "--no-reload", "--no-debugger"]
        argv += ["--host", "127.0.0.1", "--port", str(app)]
        environ = _base_env(
            {
                "SIGNGATE_SECRET": chosen["signing secret"],
                "GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
                "UPSTREAM_URL": f"http://127.0.0.1:{free_port()}/v1/chat/completions",
                "STANDIN": "1",
            }
        )
        return cls(
            name=name,
            argv=argv,
            env=environ,
            app_url=f"http://127.0.0.1:{app}",
            gateway_url=f"http://127.0.0.1:{gateway_port}",
            standin_url=None,
            health_urls=[f"http://127.0.0.1:{app}/healthz"],
            secrets=chosen,
            log_path=log_dir / f"{name}.log" if log_dir else None,
        )

    # -- running ----------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the processes and return once every health URL answers 200."""
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._pump, name=f"{self.name}-log", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        pending = list(self.health_urls)
        while pending:
            if self.process.poll() is not None:
                self._join_reader()
                raise StackError(f"{self.name} exited with code {self.process.returncode}:\n{self.log()}")
            pending = [url for url in pending if not _answers(url)]
            if pending and time.monotonic() > deadline:
                self.stop()
                raise StackError(f"{self.name}: no answer from {', '.join(pending)} in {timeout:g} s:\n{self.log()}")
            if pending:
                time.sleep(0.1)  # polling a process we do not control; not a test step

    def port_was_taken(self) -> bool:
        """True when the stack failed because a port was taken after we picked it."""
        return any(marker in self.log().lower() for marker in _PORT_TAKEN)

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._join_reader()
        return self.process.returncode

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        sink = self.log_path.open("w", encoding="utf-8") if self.log_path else None
        try:
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                if sink:
                    sink.write(line)
                    sink.flush()
        finally:
            if sink:
                sink.close()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def log(self, since: int = 0) -> str:
        """The output from line ``since`` on (a value of :meth:`mark`)."""
        return "\n".join(self.lines[since:])

    def mark(self) -> int:
        """Where the output ends now, for :meth:`log`."""
        return len(self.lines)

    def gateway_metric(self, name: str) -> float:
        """The sum of the gateway's ``/metrics`` samples called ``name`` (over its workers and labels)."""
        with urllib.request.urlopen(f"{self.gateway_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = [line.rpartition(" ") for line in text.splitlines() if not line.startswith("#")]
        return sum(float(value) for key, _, value in samples if key.partition("{")[0] == name)

    # -- the stand-in's admin endpoints (loopback only) ---------------------------------------

    def standin_config(self, **settings: float) -> dict[str, float]:
        """Change the stand-in's ``delay`` / ``chunk_delay`` (seconds) for later requests."""
        answer: dict[str, float] = self._standin("/_standin/config", settings)
        return answer

    def standin_stats(self) -> dict[str, int]:
        """The stand-in's counters: requests, streams_started, streams_completed, streams_disconnected..."""
        answer: dict[str, int] = self._standin("/_standin/stats")
        return answer

    def _standin(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        if self.standin_url is None:
            raise StackError(f"{self.name} has no stand-in model")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.standin_url + path, data=data, method="GET" if data is None else "POST")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)


def _base_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UPSTREAM_ENVS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
