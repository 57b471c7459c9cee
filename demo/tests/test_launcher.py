"""``python -m demo``: what it runs (checked without running it) and how it supervises children
(checked with small stand-in child processes, never the real gateway or stand-in model)."""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from demo import launcher
from demo.launcher import Child, Plan, StartupError, Supervisor, parse_args, plan

PY = sys.executable


def argv_of(the_plan: Plan, name: str) -> list[str]:
    return next(c.argv for c in the_plan.children if c.name == name)


def env_of(the_plan: Plan, name: str) -> dict[str, str]:
    return next(c.env for c in the_plan.children if c.name == name)


def all_argv(the_plan: Plan) -> str:
    return " ".join(a for c in the_plan.children for a in c.argv)


def test_standin_mode() -> None:
    environ = {"PATH": "/usr/bin", "SIGNGATE_SECRET": "stale", "UNRELATED": "kept"}
    the_plan = plan(parse_args([]), environ)
    assert [c.name for c in the_plan.children] == ["stand-in", "gateway"]
    assert argv_of(the_plan, "stand-in") == [
        PY, "-m", "signgate", "standin", "--host", "127.0.0.1", "--port", "5002", "--api-key-env", "STANDIN_API_KEY",
    ]  # fmt: skip
    assert argv_of(the_plan, "gateway") == [
        PY, "-m", "signgate", "serve", "--id", "demo", "--secret-env", "SIGNGATE_SECRET",
        "--header-env", "authorization=Bearer ${STANDIN_API_KEY}",
        "--allow-upstream", "http://127.0.0.1:5002/v1/", "--allow-private-upstreams",
        "--cors-origin", "http://127.0.0.1:5000",
        "--limit", "user.requests_per_minute=30", "--limit", "user.concurrent_streams=3",
        "--host", "127.0.0.1", "--port", "5001",
    ]  # fmt: skip
    config = the_plan.app_config
    assert config["GATEWAY_URL"] == "http://127.0.0.1:5001"
    assert config["UPSTREAM_URL"] == "http://127.0.0.1:5002/v1/chat/completions"
    # The stand-in answers as whatever model is asked for: it is asked for itself, so the page
    # names it when it names the model that answered.
    assert config["STANDIN"] is True and config["MODEL"] == "signgate-standin" and config["SIGNGATE_KEY_ID"] == "demo"
    assert the_plan.app_url == "http://127.0.0.1:5000"
    assert [c.health_url for c in the_plan.children] == [
        "http://127.0.0.1:5002/healthz",
        "http://127.0.0.1:5001/healthz",
    ]

    gateway, standin = env_of(the_plan, "gateway"), env_of(the_plan, "stand-in")
    # The secrets are fresh, strong, shared only with the process that needs each, and never in argv.
    assert gateway["SIGNGATE_SECRET"] == config["SIGNGATE_SECRET"] != "stale"
    assert gateway["STANDIN_API_KEY"] == standin["STANDIN_API_KEY"]
    assert len(config["SIGNGATE_SECRET"]) >= 40 and len(standin["STANDIN_API_KEY"]) >= 40
    assert "SIGNGATE_SECRET" not in standin
    assert gateway["UNRELATED"] == standin["UNRELATED"] == "kept"
    for secret in (config["SIGNGATE_SECRET"], standin["STANDIN_API_KEY"]):
        assert secret not in all_argv(the_plan)
        assert secret not in repr(the_plan)
    assert plan(parse_args([]), environ).app_config["SIGNGATE_SECRET"] != config["SIGNGATE_SECRET"]


def test_given_secrets_replace_the_generated_ones() -> None:
    """The end-to-end tests choose the secrets, to look for them in everything the browser saw."""
    environ = {
        "DEMO_SIGNING_SECRET": "given-signing-secret-0123456789",
        "DEMO_STANDIN_API_KEY": "given-standin-key-0123456789",
        "SIGNGATE_SECRET": "stale",
        "STANDIN_API_KEY": "stale-key",
    }
    the_plan = plan(parse_args([]), environ)
    assert the_plan.app_config["SIGNGATE_SECRET"] == "given-signing-secret-0123456789"
    gateway, standin = env_of(the_plan, "gateway"), env_of(the_plan, "stand-in")
    assert gateway["SIGNGATE_SECRET"] == "given-signing-secret-0123456789"
    assert gateway["STANDIN_API_KEY"] == standin["STANDIN_API_KEY"] == "given-standin-key-0123456789"
    for env in (gateway, standin):
        # Each child gets what it needs under the name it reads, and nothing under the launcher's names.
        assert "DEMO_SIGNING_SECRET" not in env and "DEMO_STANDIN_API_KEY" not in env
    assert "SIGNGATE_SECRET" not in standin
    for secret in ("given-signing-secret-0123456789", "given-standin-key-0123456789"):
        assert secret not in all_argv(the_plan)
        assert secret not in repr(the_plan)


def test_empty_given_secrets_are_generated() -> None:
    the_plan = plan(parse_args([]), {"DEMO_SIGNING_SECRET": "", "DEMO_STANDIN_API_KEY": ""})
    assert len(the_plan.app_config["SIGNGATE_SECRET"]) >= 40
    assert len(env_of(the_plan, "stand-in")["STANDIN_API_KEY"]) >= 40


def test_instance_path() -> None:
    assert plan(parse_args([]), {}).instance_path is None
    assert plan(parse_args(["--instance-path", "/tmp/demo-instance"]), {}).instance_path == "/tmp/demo-instance"


def test_options() -> None:
    args = parse_args(
        [
            *("--host", "127.0.0.2", "--port", "6000", "--gateway-port", "6001", "--standin-port", "6002"),
            *("--standin-delay", "0.25", "--model", "m1", "--key-id", "k"),
        ]
    )
    the_plan = plan(args, {"MODEL": "from-env"})
    assert argv_of(the_plan, "stand-in")[-2:] == ["--delay", "0.25"]
    gateway = argv_of(the_plan, "gateway")
    assert gateway[gateway.index("--cors-origin") + 1] == "http://127.0.0.2:6000"
    assert gateway[gateway.index("--host") + 1 :] == ["127.0.0.2", "--port", "6001"]
    assert gateway[gateway.index("--id") + 1] == "k"
    assert gateway[gateway.index("--allow-upstream") + 1] == "http://127.0.0.1:6002/v1/"
    assert the_plan.app_config["GATEWAY_URL"] == "http://127.0.0.2:6001"
    assert the_plan.app_config["MODEL"] == "m1"
    assert (the_plan.host, the_plan.port) == ("127.0.0.2", 6000)


def test_openai_mode() -> None:
    the_plan = plan(parse_args([]), {"OPENAI_API_KEY": "sk-test-key"})
    assert [c.name for c in the_plan.children] == ["gateway"]
    gateway = argv_of(the_plan, "gateway")
    assert gateway[gateway.index("--header-env") + 1] == "authorization=Bearer ${OPENAI_API_KEY}"
    assert gateway[gateway.index("--allow-upstream") + 1] == "https://api.openai.com/v1/"
    assert "--allow-private-upstreams" not in gateway
    assert env_of(the_plan, "gateway")["OPENAI_API_KEY"] == "sk-test-key"
    assert "sk-test-key" not in all_argv(the_plan)
    assert "sk-test-key" not in the_plan.app_config.values()  # the app never holds the API key
    assert the_plan.app_config["UPSTREAM_URL"] == "https://api.openai.com/v1/chat/completions"
    assert the_plan.app_config["STANDIN"] is False
    assert the_plan.app_config["MODEL"] == "gpt-4o-mini"


def test_custom_local_upstream_without_a_key() -> None:
    environ = {"SIGNGATE_UPSTREAM_URL": "http://localhost:11434/v1/chat/completions", "MODEL": "llama3.2"}
    the_plan = plan(parse_args([]), environ)
    assert [c.name for c in the_plan.children] == ["gateway"]
    gateway = argv_of(the_plan, "gateway")
    assert "--header-env" not in gateway
    assert gateway[gateway.index("--allow-upstream") + 1] == "http://localhost:11434/v1/"
    assert "--allow-private-upstreams" in gateway
    assert the_plan.app_config["MODEL"] == "llama3.2"
    assert the_plan.app_config["UPSTREAM_URL"] == environ["SIGNGATE_UPSTREAM_URL"]
    assert the_plan.app_config["STANDIN"] is False


def test_custom_remote_upstream_with_a_key() -> None:
    environ = {
        "SIGNGATE_UPSTREAM_URL": "https://llm.example.com/openai/v1/chat/completions",
        "SIGNGATE_UPSTREAM_API_KEY": "gk-1",
        "OPENAI_API_KEY": "sk-unused",
    }
    the_plan = plan(parse_args([]), environ)
    gateway = argv_of(the_plan, "gateway")
    assert gateway[gateway.index("--header-env") + 1] == "authorization=Bearer ${SIGNGATE_UPSTREAM_API_KEY}"
    assert gateway[gateway.index("--allow-upstream") + 1] == "https://llm.example.com/openai/v1/"
    assert "--allow-private-upstreams" not in gateway
    env = env_of(the_plan, "gateway")
    assert env["SIGNGATE_UPSTREAM_API_KEY"] == "gk-1"
    assert "OPENAI_API_KEY" not in env  # a key the gateway will not use is not handed on


# -- the supervisor, with small fake children ------------------------------------------------

HEALTHY = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
print("fake child listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
DIES = "import sys; print('boom: --secret-env names an unset variable', flush=True); sys.exit(2)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child(name: str, code: str, port: int | None = None) -> Child:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return Child(name, [PY, "-c", code, str(port)], dict(os.environ), url, f"{url}/healthz", "fake")


def test_healthy_child_then_stop() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    supervisor.start(child("fake", HEALTHY))
    try:
        supervisor.wait_healthy(timeout=20)
        assert supervisor.died() is None
    finally:
        supervisor.stop()
    [running] = supervisor.running
    assert running.process.returncode == -signal.SIGTERM
    assert "[fake] fake child listening" in out.getvalue()


def test_child_dying_at_startup_is_reported_with_its_output() -> None:
    supervisor = Supervisor(out=io.StringIO(), quiet=True)
    supervisor.start(child("gateway", DIES))
    try:
        with pytest.raises(StartupError, match="gateway exited with code 2 during start-up") as info:
            supervisor.wait_healthy(timeout=20)
        assert "boom: --secret-env names an unset variable" in str(info.value)
    finally:
        supervisor.stop()


def test_child_that_never_gets_healthy_times_out() -> None:
    supervisor = Supervisor(out=io.StringIO(), quiet=True, grace=0.2)
    supervisor.start(child("slow", STUBBORN))
    try:
        with pytest.raises(StartupError, match=r"slow did not answer its health check within 0\.5 s"):
            supervisor.wait_healthy(timeout=0.5)
    finally:
        supervisor.stop()


def test_child_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    supervisor = Supervisor(out=io.StringIO(), quiet=True, grace=0.5)
    supervisor.start(child("stubborn", STUBBORN))
    deadline = time.monotonic() + 10
    while not supervisor.running[0].output and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until it has installed its SIGTERM handler
    started = time.monotonic()
    supervisor.stop()
    assert supervisor.running[0].process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5


# -- main, with the plan replaced by fake children -------------------------------------------


def fake_plan(monkeypatch: pytest.MonkeyPatch, catalog_path: Path, children: list[Child], port: int) -> None:
    config = {"DATABASE": str(catalog_path), "SIGNGATE_SECRET": "s", "GATEWAY_URL": children[-1].url}
    the_plan = Plan(children=children, app_config=config, host="127.0.0.1", port=port, upstream="http://fake/")
    monkeypatch.setattr(launcher, "plan", lambda _args, _environ: the_plan)


def test_main_exits_non_zero_when_a_child_dies(
    monkeypatch: pytest.MonkeyPatch, catalog_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_plan(monkeypatch, catalog_path, [child("gateway", DIES)], free_port())
    assert launcher.main(["--startup-timeout", "20", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "error: gateway exited with code 2 during start-up" in out
    assert "boom" in out and "ready" not in out


def test_main_serves_until_sigterm(
    monkeypatch: pytest.MonkeyPatch, catalog_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    fake = child("gateway", HEALTHY)
    fake_plan(monkeypatch, catalog_path, [fake], port)
    seen: dict[str, int] = {}

    def use_then_stop() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cars?body=suv", timeout=2) as response:
                    seen["cars"] = response.status
                    break
            except OSError:
                time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=use_then_stop)
    thread.start()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = launcher.main(["--startup-timeout", "20", "--quiet"])
    finally:
        thread.join()
    assert code == 0
    assert seen == {"cars": 200}
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers are put back
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [f"gateway   {fake.url}  (fake)", f"app       http://127.0.0.1:{port}/cars"]
    assert lines[2] == "ready" and lines[-1] == "stopping"
    with pytest.raises(OSError):
        urllib.request.urlopen(fake.health_url, timeout=1)  # the child is gone


def test_main_reports_a_busy_port(
    monkeypatch: pytest.MonkeyPatch, catalog_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        fake_plan(monkeypatch, catalog_path, [child("gateway", HEALTHY)], port)
        assert launcher.main(["--quiet"]) == 1
    assert "choose another --port" in capsys.readouterr().out


def test_main_reports_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, catalog_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_plan(monkeypatch, catalog_path, [child("gateway", HEALTHY)], free_port())
    monkeypatch.setenv("SIGN_RATE_LIMIT", "lots")
    assert launcher.main(["--quiet"]) == 2
    assert "error: SIGN_RATE_LIMIT must be a whole number, got 'lots'" in capsys.readouterr().out


def test_main_builds_the_app_in_the_given_instance_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import demo

    seen: dict[str, object] = {}

    def fake_create_app(config: object, *, instance_path: str | None = None) -> object:
        seen["instance_path"] = instance_path
        raise ValueError("stop here")

    monkeypatch.setattr(demo, "create_app", fake_create_app)
    assert launcher.main(["--quiet", "--instance-path", str(tmp_path)], environ={}) == 2
    assert seen == {"instance_path": str(tmp_path)}
    assert "error: stop here" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("provider", "key_header", "path"),
    [
        ("chat", "authorization=Bearer ${STANDIN_API_KEY}", "/v1/chat/completions"),
        ("responses", "authorization=Bearer ${STANDIN_API_KEY}", "/v1/responses"),
        ("anthropic", "x-api-key=${STANDIN_API_KEY}", "/v1/messages"),
        (
            "gemini",
            "x-goog-api-key=${STANDIN_API_KEY}",
            "/v1beta/models/signgate-standin:streamGenerateContent?alt=sse",
        ),
    ],
)
def test_each_provider_on_the_standin(provider: str, key_header: str, path: str) -> None:
    the_plan = plan(parse_args(["--provider", provider]), {})
    assert [c.name for c in the_plan.children] == ["stand-in", "gateway"]
    gateway = argv_of(the_plan, "gateway")
    assert gateway[gateway.index("--header-env") + 1] == key_header
    assert ("--header" in gateway) == (provider == "anthropic")
    if provider == "anthropic":
        assert gateway[gateway.index("--header") + 1] == "anthropic-version: 2023-06-01"
    assert the_plan.app_config["UPSTREAM_URL"] == "http://127.0.0.1:5002" + path
    assert the_plan.app_config["PROVIDER"] == provider
    assert the_plan.app_config["ANSWER_AS"] == ("tool" if provider == "anthropic" else "schema")
    assert parse_args(["--provider", provider, "--answer-as", "tool"]).answer_as == "tool"


@pytest.mark.parametrize(
    ("provider", "env", "url", "model"),
    [
        ("anthropic", "ANTHROPIC_API_KEY", "https://api.anthropic.com/v1/messages", "claude-haiku-4-5"),
        ("gemini", "GEMINI_API_KEY",
         "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
         "gemini-2.5-flash"),
        ("responses", "OPENAI_API_KEY", "https://api.openai.com/v1/responses", "gpt-4.1-mini"),
    ],
)  # fmt: skip
def test_each_provider_on_its_service(provider: str, env: str, url: str, model: str) -> None:
    the_plan = plan(parse_args(["--provider", provider]), {"OPENAI_API_KEY": "sk-openai", env: "sk-service-key"})
    assert [c.name for c in the_plan.children] == ["gateway"]
    assert the_plan.app_config["UPSTREAM_URL"] == url and the_plan.app_config["MODEL"] == model
    assert env_of(the_plan, "gateway")[env] == "sk-service-key"
    assert "sk-service-key" not in all_argv(the_plan) and "sk-service-key" not in the_plan.app_config.values()
    if env != "OPENAI_API_KEY":  # another service's key is never handed to the gateway
        assert "OPENAI_API_KEY" not in env_of(the_plan, "gateway")
