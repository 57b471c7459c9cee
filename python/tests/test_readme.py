"""The README's shell blocks, run as a new user runs them: in terminals (bash reading the blocks
from its standard input, so that `cd`, `export`, `$URL` and `&` jobs carry on from one block to
the next), from a fresh clone, against the stand-in and real gateway processes.

How the README tells this test what to do: each ```sh block is preceded by a marker,
``<!-- readme-test: STEP -->``, naming the step (see ``STEPS``), or
``<!-- readme-test: skip: REASON -->``. A block without a marker fails the test, and so does a
step this test does not know, so a new command cannot slip in untested. The one skipped block
sends a request to api.openai.com: it needs a real OpenAI API key (and a network these machines
do not have). The Development block is skipped too: it is the suites themselves (``make test``
runs this test).

What the test substitutes, and nothing else:

* the GitHub URL in ``git clone`` by a local bare clone of this repository's HEAD (so the
  install tests what is committed; CI runs on a clean checkout);
* the ports written in the README, 3000 (the gateway), 8787 (the stand-in) and 6379 (Redis), in
  ``127.0.0.1:PORT`` and ``--port PORT``, by free ports;
* ``make demo``'s ports through its ``ARGS`` variable, set in the terminal's environment (make
  reads variables from there), as the README says ``ARGS`` works.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Server, free_port, start_redis

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GITHUB = "https://github.com/signgate/signgate"
#: The marker before a block, and the block.
BLOCK = re.compile(r"<!-- readme-test: ([^\n]*?) -->\n```sh\n(.*?)\n```", re.DOTALL)
STEPS = {
    "install",
    "terminal-1",
    "terminal-1-serve",
    "terminal-2",
    "terminal-2-refused",
    "terminal-1-openai",
    "terminal-1-limits",
    "demo",
}
#: Long enough for pip to fetch and build on a slow day; a failure says what the terminal printed.
INSTALL_TIMEOUT = 900.0


def readme_blocks() -> tuple[dict[str, str], dict[str, str]]:
    """The README's steps (name -> block) and skipped blocks (reason -> block)."""
    text = (REPO / "README.md").read_text()
    blocks = BLOCK.findall(text)
    assert len(blocks) == text.count("```sh"), "every ```sh block needs a <!-- readme-test: ... --> marker"
    steps: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for marker, block in blocks:
        if marker.startswith("skip:"):
            skipped[marker.removeprefix("skip:").strip()] = block
        else:
            assert marker not in steps, f"two blocks are marked {marker}"
            steps[marker] = block
    assert set(steps) == STEPS, f"steps this test does not know, or lacks: {set(steps) ^ STEPS}"
    return steps, skipped


def clean_env() -> dict[str, str]:
    """A new terminal's environment: no virtual environment active, no project variables;
    pip's and the proxies' settings of this machine kept."""
    keep = ("HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_") or k.lower().endswith("_proxy")}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and "/.venv/" not in p + "/"]
    env["PATH"] = os.pathsep.join(path)
    env.setdefault("LANG", "C.UTF-8")
    env["TERM"] = "dumb"
    return env


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """One terminal: a bash reading what is typed from its standard input."""

    def __init__(self, name: str, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
            # As a terminal starts it: a test run started in the background (make test &) ignores
            # SIGINT, and a shell that starts with it ignored passes that on, so Ctrl-C would do nothing.
            preexec_fn=_default_sigint,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._count = 0
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        # A command that fails stops the terminal, so the test sees where.
        self.type("set -e -o pipefail")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def run(self, block: str, timeout: float = 60.0) -> str:
        """Type ``block`` and return what it printed once it is done."""
        self._count += 1
        done = f"__readme_test_{self._count}_done__"
        self.type(block)
        self.type(f"printf '\\n%s\\n' {done}")
        printed: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.name}: not done in {timeout:g} s:\n{self.log()}") from None
            if line is None:
                raise AssertionError(f"{self.name} exited ({self.proc.wait()}) during the block:\n{self.log()}")
            if line.strip() == done:
                return "".join(printed)
            printed.append(line)

    def start(self, block: str) -> None:
        """Type ``block``, which runs until interrupted (a server in the foreground)."""
        self.type(block)

    def interrupt(self) -> None:
        """Ctrl-C for what runs in the foreground: SIGINT to the shell's newest child."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert children, f"{self.name}: nothing runs in the foreground"
        os.kill(int(children[-1]), signal.SIGINT)

    def log(self) -> str:
        return "".join(self.output) or "(nothing)"

    def close(self) -> None:
        """End the terminal and whatever it still runs in its process group (a job started with
        ``&`` outlives a shell that has exited)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def answers(url: str, timeout: float, terminal: Terminal) -> str:
    """The body of ``url`` once it answers 200, polling while ``terminal`` runs."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError):
            if terminal.proc.poll() is not None:
                raise AssertionError(f"{terminal.name} exited:\n{terminal.log()}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer from {url} in {timeout:g} s:\n{terminal.log()}") from None
            time.sleep(0.2)  # polling a server we do not control


def closed(port: int, timeout: float = 30.0) -> bool:
    """Whether nothing listens on ``port`` any more (within ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                pass
        except (urllib.error.URLError, OSError):
            return True
        time.sleep(0.2)
    return False


def redis_keys(port: int) -> int:
    """How many keys the Redis on ``port`` holds."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"DBSIZE\r\n")
        answer = conn.recv(64)
    assert answer.startswith(b":"), answer
    return int(answer[1:].strip())


@pytest.fixture
def redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def test_the_readme_works_as_written(tmp_path: Path, redis: Server, terminals: list[Terminal]) -> None:
    steps, skipped = readme_blocks()
    assert [reason for reason in skipped if "OpenAI API key" in reason], "the OpenAI block is skipped, and says why"
    ports = {"3000": free_port(), "8787": free_port(), "6379": redis.port}

    def substituted(block: str) -> str:
        block = block.replace(f"git clone {GITHUB} ", f"git clone {remote} ")
        return re.sub(r"(127\.0\.0\.1:|--port )(3000|8787|6379)\b", lambda m: f"{m[1]}{ports[m[2]]}", block)

    def terminal(name: str, cwd: Path, **env: str) -> Terminal:
        opened = Terminal(name, cwd, clean_env() | env)
        terminals.append(opened)
        return opened

    gateway = f"http://127.0.0.1:{ports['3000']}"
    standin = f"http://127.0.0.1:{ports['8787']}"
    remote = tmp_path / "remote" / "signgate.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(REPO), str(remote)], check=True, timeout=120)
    home = tmp_path / "work"
    home.mkdir()

    # Install: clone, a virtual environment, pip install '.[gateway]'.
    terminal("install", home).run(substituted(steps["install"]), timeout=INSTALL_TIMEOUT)
    clone = home / "signgate"
    assert (clone / ".venv" / "bin" / "signgate").exists()

    # The offline quick start: terminal 1 runs the stand-in and the gateway, terminal 2 signs and sends.
    one = terminal("terminal 1", clone)
    one.run(substituted(steps["terminal-1"]))
    assert (clone / "signgate.secret").stat().st_mode & 0o077 == 0, "the secret file is readable by others"
    answers(f"{standin}/healthz", 60, one)
    one.start(substituted(steps["terminal-1-serve"]))
    answers(f"{gateway}/healthz", 60, one)

    two = terminal("terminal 2", clone)
    printed = two.run(substituted(steps["terminal-2"]))
    completion = json.loads(printed.strip().splitlines()[-1])
    assert completion["object"] == "chat.completion", printed
    assert "offline stand-in" in completion["choices"][0]["message"]["content"]
    printed = two.run(substituted(steps["terminal-2-refused"]))
    refusal = json.loads(printed.strip().splitlines()[-1])
    assert refusal["error"]["code"] == "bad_signature", printed  # the code the README names

    # The OpenAI variant of terminal 1: the gateway starts with the key (a placeholder here; no
    # request reaches OpenAI, as the terminal-2 block that would send one is skipped).
    one.interrupt()
    one.run("true")  # the shell is back: the gateway stopped
    assert closed(ports["3000"])
    one.start(substituted(steps["terminal-1-openai"]))
    answers(f"{gateway}/healthz", 60, one)
    one.interrupt()
    one.run("true")

    # The limits shared through Redis, in terminal 1 in place of its gateway; terminal 2 again.
    one.start(substituted(steps["terminal-1-limits"]))
    answers(f"{gateway}/healthz", INSTALL_TIMEOUT, one)
    printed = two.run(substituted(steps["terminal-2"]))
    assert json.loads(printed.strip().splitlines()[-1])["object"] == "chat.completion", printed
    assert redis_keys(redis.port) > 0, "the gateway counted nothing in Redis"
    one.interrupt()
    one.run("kill %1")  # as the README says, after Ctrl-C: the stand-in stops too
    assert closed(ports["3000"]) and closed(ports["8787"])

    # The demo, on free ports through ARGS, stopped with Ctrl-C.
    app, demo_gateway, demo_standin = free_port(), free_port(), free_port()
    args = f"--port {app} --gateway-port {demo_gateway} --standin-port {demo_standin} --quiet"
    demo = terminal("demo", clone, ARGS=args)
    demo.start(steps["demo"])
    page = answers(f"http://127.0.0.1:{app}/cars", INSTALL_TIMEOUT, demo)
    assert "Describe the car you want" in page
    answers(f"http://127.0.0.1:{demo_gateway}/healthz", 30, demo)
    answers(f"http://127.0.0.1:{demo_standin}/healthz", 30, demo)
    os.killpg(demo.proc.pid, signal.SIGINT)  # Ctrl-C reaches make and the launcher
    assert demo.proc.wait(timeout=60) is not None
    assert closed(app) and closed(demo_gateway) and closed(demo_standin), demo.log()
    assert "ready" in demo.log()
