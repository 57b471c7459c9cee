"""Start real server processes for tests: free ports, health polling, logs on failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A child process whose output goes to a file, so a failing test can show it."""

    def __init__(self, name: str, argv: Sequence[str], port: int, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log: IO[bytes] = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            list(argv), stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=HERE
        )

    def wait_healthy(self, path: str = "/healthz", timeout: float = 20) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def start_upstream() -> Server:
    port = free_port()
    return Server("upstream", [sys.executable, str(HERE / "fake_upstream.py"), str(port)], port).wait_healthy()


def start_gateway(*args: str, env: dict[str, str] | None = None, health: bool = True, port: int = 0) -> Server:
    port = port or free_port()
    server = Server(
        "gateway",
        [sys.executable, "-m", "signgate", "serve", "--port", str(port), *args],
        port,
        env=env,
    )
    return server.wait_healthy() if health else server


def start_redis(*extra: str, name: str = "redis", port: int = 0) -> Server:
    """A real redis-server on a free loopback port, without persistence; ``extra`` adds options."""
    port = port or free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]
    return wait_pong(Server(name, argv, port))


def wait_pong(server: Server, timeout: float = 20) -> Server:
    """Wait until a Redis server (or sentinel) answers PING on its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.output()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return server
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not answer in {timeout} s:\n{server.output()}")
