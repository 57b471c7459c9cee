"""The files in deploy/ that the suite cannot run where they are meant to run (systemd, a container
runtime): each is checked as far as this machine allows, and its commands are run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deploy_servers import DEPLOY, REPO
from servers import Server, free_port

UNIT = DEPLOY / "systemd" / "signgate@.service"
CONTAINERFILE = DEPLOY / "Containerfile"
SECRETS = {"SIGNGATE_SECRET": "deploy-files-secret", "OPENAI_API_KEY": "sk-deploy-files-key"}


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            name, _, value = line.partition("=")
            settings.setdefault(name.strip(), []).append(value.strip())
    return settings


def config_for_test(directory: Path, store_port: int) -> Path:
    """deploy/gateway.toml with the store on this test's loopback port."""
    text = (DEPLOY / "gateway.toml").read_text()
    assert text.count("redis://127.0.0.1:6379/0") == 1
    path = directory / "gateway.toml"
    path.write_text(text.replace("redis://127.0.0.1:6379/0", f"redis://127.0.0.1:{store_port}/0"))
    return path


def secrets_file(directory: Path) -> Path:
    """A secrets file in the form of deploy/secrets.env.example, with the test's values."""
    example = (DEPLOY / "secrets.env.example").read_text()
    names = re.findall(r"^([A-Z_]+)=", example, re.M)
    assert sorted(names) == sorted(SECRETS)
    path = directory / "secrets.env"
    path.write_text("".join(f"{name}={SECRETS[name]}\n" for name in names))
    return path


def installed_unit(directory: Path) -> Path:
    """The unit with the paths of this machine in place of /opt/signgate and /etc/signgate."""
    text = UNIT.read_text()
    signgate = Path(sys.executable).parent / "signgate"
    assert signgate.exists(), f"{signgate} is missing: is the package installed in this venv?"
    for old, new in [
        ("/opt/signgate/bin/signgate", str(signgate)),
        ("/etc/signgate/gateway.toml", str(directory / "gateway.toml")),
        ("/etc/signgate/secrets.env", str(directory / "secrets.env")),
    ]:
        assert old in text, f"{old} is no longer in {UNIT.name}: update this test"
        text = text.replace(old, new)
    path = directory / UNIT.name
    path.write_text(text)
    return path


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (no systemd): the unit's command is still run below")
    unit = installed_unit(tmp_path)
    instance = unit.with_name("signgate@3001.service")
    instance.symlink_to(unit.name)
    done = subprocess.run([analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "signgate@" in line]
    # verify exits 0 on unknown keys and bad values, but names them: any line about our unit fails.
    assert done.returncode == 0 and not ours, done.stdout + done.stderr


@pytest.mark.slow
def test_systemd_unit_command_serves_and_stops_in_time(tmp_path: Path) -> None:
    """ExecStart as systemd would run it (%i a port, EnvironmentFile's variables); then
    KillSignal, which must end it within TimeoutStopSec with a status SuccessExitStatus accepts."""
    from servers import start_redis

    redis = start_redis()
    try:
        config_for_test(tmp_path, redis.port)
        env_file = secrets_file(tmp_path)
        settings = unit_settings(installed_unit(tmp_path).read_text())
        port = free_port()
        (exec_start,) = settings["ExecStart"]
        argv = shlex.split(exec_start.replace("%i", str(port)))
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        server = Server("systemd-unit", argv, port, env={**os.environ, **env}).wait_healthy()
        assert server.proc.poll() is None
        # ExecReload, with the process's pid for $MAINPID: the configuration is read again.
        (exec_reload,) = settings["ExecReload"]
        reload_argv = shlex.split(exec_reload.replace("$MAINPID", str(server.proc.pid)))
        subprocess.run(reload_argv, check=True, timeout=30)
        deadline = time.monotonic() + 30
        while "reloaded the configuration" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "reloaded the configuration" in server.output() and server.proc.poll() is None
        (kill_signal,) = settings["KillSignal"]
        (stop_timeout,) = settings["TimeoutStopSec"]
        started = time.monotonic()
        server.proc.send_signal(getattr(signal, kill_signal))
        status = server.proc.wait(float(stop_timeout))
        assert time.monotonic() - started < float(stop_timeout)
        # 0, or ended by SIGTERM once drained (SuccessExitStatus=SIGTERM)
        assert status == 0 or (status == -signal.SIGTERM and "SIGTERM" in settings["SuccessExitStatus"])
        assert SECRETS["OPENAI_API_KEY"] not in server.output()
    finally:
        redis.stop()


# -- the container file -------------------------------------------------------------------------------


def containerfile() -> list[tuple[str, str]]:
    instructions = []
    for line in CONTAINERFILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword, rest.strip()))
    return instructions


def test_containerfile_stays_minimal() -> None:
    """Only what the next test can run outside a container: a new instruction needs a test too."""
    allowed = {"FROM", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "STOPSIGNAL", "ENTRYPOINT", "CMD"}
    assert {keyword for keyword, _ in containerfile()} <= allowed
    text = CONTAINERFILE.read_text()
    assert "Not built in CI" in text


@pytest.mark.slow
def test_containerfile_installs_and_starts_outside_a_container(tmp_path: Path) -> None:
    """Its COPY and RUN steps in a fresh venv (as the image's python would), then its ENTRYPOINT
    and CMD with the configuration mounted where CMD expects it; only the listen address is
    overridden (loopback and a free port, for the test)."""
    from servers import start_redis

    root = tmp_path / "image"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    workdir = root
    entrypoint: list[str] = []
    cmd: list[str] = []
    for keyword, rest in containerfile():
        if keyword == "WORKDIR":
            workdir = root / rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = rest.split()
            target = workdir / dest
            for source in sources:
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(REPO / source, target / source if dest.endswith("/") else target)
        elif keyword == "RUN":
            done = subprocess.run(rest, shell=True, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        elif keyword == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif keyword == "CMD":
            cmd = json.loads(rest)
    assert entrypoint and cmd

    redis = start_redis()
    try:
        config = config_for_test(tmp_path, redis.port)
        cmd = [str(config) if arg == "/etc/signgate/gateway.toml" else arg for arg in cmd]
        port = free_port()
        argv = [str(venv / "bin" / entrypoint[0]), *entrypoint[1:], *cmd, "--host", "127.0.0.1", "--port", str(port)]
        server = Server("container", argv, port, env={**env, **SECRETS}).wait_healthy(timeout=60)
        # the venv's own signgate, not the suite's editable install
        probe = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import signgate, redis; print(signgate.__file__)"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert str(venv) in probe.stdout
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(40) in (0, -signal.SIGTERM)
        server.stop()
    finally:
        redis.stop()


# -- docs/deploy.md quotes the files as they are ----------------------------------------------------------

QUOTED = {"nginx": "nginx/signgate.conf", "ini": "systemd/signgate@.service", "dockerfile": "Containerfile"}


def test_deploy_doc_quotes_the_files_as_they_are() -> None:
    doc = (REPO / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"^ *```(\w+)\n(.*?)^ *```$", doc, re.M | re.S)
    quoted = [(language, text) for language, text in blocks if language in QUOTED]
    assert {language for language, _ in quoted} == set(QUOTED)
    for language, text in quoted:
        lines = {line.strip() for line in (DEPLOY / QUOTED[language]).read_text().splitlines()}
        for line in text.splitlines():
            assert not line.strip() or line.strip() in lines, (
                f"docs/deploy.md quotes {line.strip()!r}, not in {QUOTED[language]}"
            )
    for link in re.findall(r"\]\(\.\./([^)#]+)\)", doc):
        assert (REPO / link).exists(), f"docs/deploy.md links to {link}, which does not exist"
