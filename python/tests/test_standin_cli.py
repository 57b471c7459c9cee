"""``signgate standin`` (and ``python -m signgate.standin``): its options and how it finds its key."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

import signgate.standin
import signgate.standin.server
from signgate.cli.standin import add_arguments, run


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    args = parse()
    assert (args.host, args.port, args.api_key_env, args.delay) == ("127.0.0.1", 8787, "STANDIN_API_KEY", 0.0)


def test_options() -> None:
    args = parse("--host", "::1", "--port", "9001", "--api-key-env", "MY_KEY", "--delay", "1.5", "--chunk-delay", "0")
    assert (args.host, args.port, args.api_key_env, args.delay, args.chunk_delay) == ("::1", 9001, "MY_KEY", 1.5, 0.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--delay", "-1"], "between 0 and 600"),
        (["--delay", "soon"], "give seconds"),
        (["--delay", "nan"], "number of seconds"),
        (["--api-key-env", "MY-KEY"], "not an environment variable name"),
    ],
)
def test_bad_options_say_what_to_fix(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert message in capsys.readouterr().err


def test_unset_key_is_generated_and_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: dict[str, Any] = {}

    def fake_serve(host: str, port: int, api_key: str, delay: float, chunk_delay: float, **kw: Any) -> None:
        served.update(host=host, port=port, api_key=api_key, delay=delay)

    monkeypatch.delenv("STANDIN_API_KEY", raising=False)
    monkeypatch.setattr(signgate.standin.server, "serve", fake_serve)
    assert run(parse("--delay", "2")) == 0
    out = capsys.readouterr()
    assert len(served["api_key"]) >= 32
    assert served["delay"] == 2.0
    assert "STANDIN_API_KEY is not set" in out.err
    assert served["api_key"] not in out.out + out.err


def test_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setenv("OTHER_KEY", "sk-from-env-123")
    monkeypatch.setattr(signgate.standin.server, "serve", lambda *a, **kw: served.update(api_key=a[2]))
    run(parse("--api-key-env", "OTHER_KEY"))
    out = capsys.readouterr()
    assert served["api_key"] == "sk-from-env-123"
    assert "sk-from-env-123" not in out.out + out.err
    assert "not set" not in out.err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_module_runs_a_server_that_never_logs_the_key() -> None:
    secret = "sk-module-run-9d2e7"
    port = free_port()
    env = {**os.environ, "STANDIN_TEST_KEY": secret}
    argv = [sys.executable, "-m", "signgate.standin", "--port", str(port), "--api-key-env", "STANDIN_TEST_KEY"]
    with subprocess.Popen(
        [*argv, "--log-level", "debug"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                        assert json.loads(response.read()) == {"status": "ok"}
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
            for key in (secret, "sk-wrong"):
                request = urllib.request.Request(
                    f"{base}/v1/chat/completions", data=body, headers={"Authorization": f"Bearer {key}"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        assert response.status == 200
                except urllib.error.HTTPError as exc:
                    with exc:
                        assert (key, exc.code) == ("sk-wrong", 401)
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=20)
    text = (out + err).decode()
    assert "not a language model" in text
    assert "POST /v1/chat/completions" in text  # the access log ran, and still:
    assert secret not in text


def test_all_is_complete_and_sorted() -> None:
    exported = {name for name in vars(signgate.standin) if not name.startswith("_")}
    modules = {"answers", "cli", "model", "numbers", "schema", "server", "text"}
    assert set(signgate.standin.__all__) == exported - modules
    assert signgate.standin.__all__ == sorted(signgate.standin.__all__)
