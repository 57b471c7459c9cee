"""Starting, watching and stopping the servers a benchmark drives, and reading /proc.

Every server runs in its own session (process group), so stopping it also stops the workers it
forked (gunicorn's), and nothing else. Each child takes the hard limit of open files first:
a proxied stream holds two descriptors, a thousand of them more than the usual soft limit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_nofile() -> None:
    """Take the hard limit of open files (in this process, or in a child before exec)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process (and its children), started in its own session, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"signgate-bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=raise_nofile,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, url: str, timeout: float = 30.0) -> None:
        """Poll ``url`` until it answers 2xx; raise with the server's log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if 200 <= response.status < 300:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready at {url}; its log:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        """Kill the process group this server leads (its workers too) and remove the log."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def stop_all(servers: Sequence[Server]) -> None:
    for server in servers:
        server.stop()


def gunicorn(name: str, app: str, port: int, threads: int, env: Mapping[str, str]) -> Server:
    """gunicorn, one worker of the ``gthread`` class (sync requests, ``threads`` threads), defaults otherwise."""
    argv = [str(BIN / "gunicorn"), "--workers", "1", "--worker-class", "gthread", "--threads", str(threads)]
    argv += ["--bind", f"127.0.0.1:{port}", "--pythonpath", str(HERE), "--log-level", "warning", app]
    return Server(name, argv, env)


def gateway(port: int, model_port: int, secret: str, model_key: str, key_id: str = "bench") -> Server:
    """``signgate serve``, one worker, in front of the local model. Its JSON access log stays on, as in
    production; it goes to the server's log file."""
    argv = [str(BIN / "signgate"), "serve", "--id", key_id, "--secret-env", "BENCH_SECRET"]
    argv += ["--header-env", "Authorization=Bearer ${BENCH_MODEL_KEY}"]
    argv += ["--allow-upstream", f"http://127.0.0.1:{model_port}/v1/", "--allow-private-upstreams"]
    argv += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    return Server("gateway", argv, {"BENCH_SECRET": secret, "BENCH_MODEL_KEY": model_key})


def model(port: int, model_key: str, events: int, seconds: float) -> Server:
    argv = [sys.executable, str(HERE / "_model.py"), "--port", str(port), "--events", str(events)]
    argv += ["--seconds", str(seconds)]
    return Server("model", argv, {"BENCH_MODEL_KEY": model_key})


# -- /proc ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time of a live process so far, all its threads: the sum of each thread's run time from
    /proc/PID/task/*/schedstat, in nanoseconds (user plus system in /proc/PID/stat counts 10 ms ticks,
    too coarse for a dozen relayed searches). A thread that exited takes its time with it; the servers
    here keep theirs (thread pools), and /proc/PID/stat is the fallback."""
    total, found = 0, False
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            pass
    if found:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status: VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def wait_children(pid: int, count: int, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(pid)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise RuntimeError(f"process {pid} did not fork {count} worker(s) in {timeout:.0f} s")
