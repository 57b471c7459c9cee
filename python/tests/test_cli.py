"""The CLI as a user runs it: a real subprocess, the secret from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from signgate import Signer, Verifier, parse_query
from signgate.signer import DEFAULT_EXPIRES_IN

SECRET = "cli-secret-value"


def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {k: v for k, v in os.environ.items() if k != "SIGNGATE_SECRET"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "signgate", *args],
        env=full_env,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_help_is_useful_on_its_own() -> None:
    top = run("--help").stdout.decode()
    assert "sign" in top and "serve" in top and "SIGNGATE_SECRET" in top
    sign = run("sign", "--help").stdout.decode()
    for option in ("--id", "--gateway", "--upstream", "--method", "--expires", "--header", "--body", "--secret-env"):
        assert option in sign


def test_sign_prints_a_url_that_verifies(tmp_path: Path) -> None:
    body = '{"model":"m","messages":[{"role":"user","content":"héllo"}]}'
    (tmp_path / "req.json").write_text(body)
    out = run(
        "sign",
        "--id",
        "app",
        "--gateway",
        "http://127.0.0.1:3000",
        "--upstream",
        "https://api.example.com/v1/chat",
        "--header",
        "Content-Type: application/json",
        "--body",
        f"@{tmp_path / 'req.json'}",
        "--expires",
        "45",
        env={"SIGNGATE_SECRET": SECRET},
    )
    assert out.returncode == 0, out.stderr
    url = out.stdout.decode().strip()
    params = parse_query(url.split("?", 1)[1])
    assert params.expires == 45
    raw = body.encode()
    headers = {"content-type": "application/json", "content-length": str(len(raw))}
    assert Verifier({"app": [SECRET]}).verify_request("POST", url.split("?", 1)[1], headers, raw).key_id == "app"
    assert SECRET not in out.stdout.decode() + out.stderr.decode()


def test_sign_reads_stdin_and_a_named_secret_variable() -> None:
    out = run(
        "sign",
        "--id",
        "app",
        "--gateway",
        "http://gw",
        "--upstream",
        "https://x.example/",
        "--body",
        "-",
        "--secret-env",
        "MY_SECRET",
        "--json",
        env={"MY_SECRET": SECRET},
        stdin=b"from stdin",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["body"] == "from stdin"


def test_missing_secret_names_the_variable() -> None:
    out = run("sign", "--id", "app", "--gateway", "http://gw", "--upstream", "https://x.example/")
    assert out.returncode == 2
    assert b"SIGNGATE_SECRET is not set" in out.stderr


def test_bad_input_is_a_clear_error() -> None:
    env = {"SIGNGATE_SECRET": SECRET}
    cases = [
        (["--upstream", "not-a-url"], b"upstream_url"),
        (["--upstream", "https://x/", "--header", "no-colon"], b"must look like 'Name: value'"),
        (["--upstream", "https://x/", "--body", "@/nonexistent/file"], b"cannot read the file"),
        (["--upstream", "https://x/", "--expires", "0"], b"expires_in"),
    ]
    for extra, message in cases:
        out = run("sign", "--id", "app", "--gateway", "http://gw", *extra, env=env)
        assert out.returncode == 2, extra
        assert message in out.stderr, (extra, out.stderr)
        assert b"Traceback" not in out.stderr


def test_one_default_expiry_in_the_signer_the_cli_and_the_readme() -> None:
    """A URL signed without an expiry lives 30 s, whether from Python or the command line, and
    the README and the help say so."""
    signer = Signer("app", SECRET, "http://gw")
    assert signer.expires_in == DEFAULT_EXPIRES_IN == 30
    out = run(
        "sign", "--id", "app", "--gateway", "http://gw", "--upstream", "https://x/", env={"SIGNGATE_SECRET": SECRET}
    )
    assert out.returncode == 0, out.stderr
    assert parse_query(out.stdout.decode().strip().split("?", 1)[1]).expires == 30
    assert "(default: 30)" in run("sign", "--help").stdout.decode()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "30 s by default" in readme
