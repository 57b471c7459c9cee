"""Gateway configuration: TOML files, flags, and start-up errors that name what is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gateway_client import send
from servers import Server, start_gateway

from signgate import Signer
from signgate.gateway import ConfigError, GatewayConfig, UpstreamPrefix, load_toml
from signgate.gateway.upstream import Target


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_toml_with_many_keys_and_rotation(tmp_path: Path, upstream: Server) -> None:
    config = write(
        tmp_path,
        f"""
[gateway]
max_body = "256k"
cors_origins = ["https://app.example"]
allow_private_upstreams = true

[keys.app]
secrets = ["new-secret", "old-secret"]
headers = {{ Authorization = "Bearer ${{TEST_API_KEY}}" }}
allow_upstreams = ["{upstream.url}/v1/"]

[keys.batch]
secret_env = ["BATCH_SECRET"]
allow_upstreams = ["{upstream.url}/other/"]
max_expires = 10
""",
    )
    gateway = start_gateway("--config", str(config), env={"TEST_API_KEY": "sk-from-env", "BATCH_SECRET": "batch"})
    try:
        for secret in ("new-secret", "old-secret"):
            reply = send(Signer("app", secret, gateway.url).sign("GET", f"{upstream.url}/v1/echo"))
            assert reply.status == 200
            assert ["Authorization", "Bearer sk-from-env"] in reply.json()["headers"]
        batch = Signer("batch", "batch", gateway.url, expires_in=10)
        assert send(batch.sign("GET", f"{upstream.url}/other/echo")).status == 200
        assert send(batch.sign("GET", f"{upstream.url}/v1/echo")).error_code == "upstream_not_allowed"
        assert send(batch.sign("GET", f"{upstream.url}/other/echo", expires_in=11)).error_code == "expiry_too_long"
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[keys.app]\nheaders = {}\n", "keys.app: needs at least one non-empty secret"),
        ('[keys.app]\nsecrets = ["s"]\nallow_upstreams = ["ftp://x/"]\n', "keys.app.allow_upstreams: 'ftp://x/'"),
        ('[keys.app]\nsecrets = ["s"]\nallow_upstreams = ["https://u:p@x/"]\n', "user name or password"),
        ('[keys.app]\nsecrets = ["s"]\nheaders = { A = "${NOT_SET_ANYWHERE}" }\n', "NOT_SET_ANYWHERE is not set"),
        ('[keys.app]\nsecrets = ["s"]\nheaders = { "Bad Name" = "v" }\n', "'Bad Name' is not a valid header"),
        ('[keys.app]\nsecrets = ["s"]\nsecret = "typo"\n', "unknown field(s) ['secret']"),
        ('[keys."a/b"]\nsecrets = ["s"]\n', "must not contain '/'"),
        ('[keys.app]\nsecrets = ["s"]\ncors_origins = ["https://x/path"]\n', "is not an origin"),
        ('[gateway]\nmax_body = "lots"\n', "gateway.max_body: 'lots' is not a size"),
        ("[gateway]\nread_timeout = -1\n", "gateway.read_timeout: must be a positive number"),
        ("[gateway]\nheader_timeout = 0\n", "gateway.header_timeout: must be a positive number"),
        ("[gateway]\nworkers = 2\n", "gateway.workers: unknown setting"),
        ("[server]\n", "unknown section(s) ['server']"),
        ('[gateway]\nstore = "redis//:hunter2@host"\n', "'redis//***@host' is not a store"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_toml_names_file_key_and_field(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signgate", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "no keys configured"),
        (["--id", "app"], "has no secret"),
        (["--id", "app", "--secret-env", "UNSET_VAR_X"], "UNSET_VAR_X is not set"),
        (["app", "s", "--allow-upstream", "nope"], "--allow-upstream: 'nope' is not an http(s) URL prefix"),
        (["app", "s", "--header-env", "Authorization"], "must look like 'Name=template"),
        (["app", "s", "--cors-origin", "app.example"], "is not an origin"),
        (["app", "s", "--config", "/nonexistent.toml"], "/nonexistent.toml: cannot read the file"),
        (["--allow-upstream", "https://x/"], "need a key"),
        (["app", "s", "--max-body", "0"], "--max-body: '0' is not a size"),
        (["app", "s", "--header-timeout", "0"], "--header-timeout must be positive"),
    ],
)
def test_bad_flags_stop_start_up_with_a_clear_message(args: list[str], fragment: str) -> None:
    out = serve(*args, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 2, out.stderr
    assert fragment in out.stderr
    assert "Traceback" not in out.stderr


def test_signway_compatible_positional_form(upstream: Server) -> None:
    gateway = start_gateway("my-id", "my-secret", "--header", "X-Api-Key: k1", "--allow-private-upstreams")
    try:
        reply = send(Signer("my-id", "my-secret", gateway.url).sign("GET", f"{upstream.url}/v1/echo"))
        assert reply.status == 200
        assert ["X-Api-Key", "k1"] in reply.json()["headers"]
        assert "prefer --header-env" in gateway.output()
        assert "may reach any public http(s) upstream" in gateway.output()
    finally:
        gateway.stop()


def test_several_workers_serve(upstream: Server) -> None:
    gateway = start_gateway(
        "--id", "app", "--secret-env", "S", "--allow-private-upstreams", "--workers", "2", env={"S": "s"}
    )
    try:
        signer = Signer("app", "s", gateway.url)
        assert all(send(signer.sign("GET", f"{upstream.url}/v1/echo")).status == 200 for _ in range(20))
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("prefix", "url", "allowed"),
    [
        ("https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions", True),
        ("https://api.openai.com/v1/", "https://api.openai.com/v2/chat", False),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1", False),
        ("https://api.openai.com/v1", "https://api.openai.com/v1/chat", True),
        ("https://api.openai.com/v1", "https://api.openai.com/v1?x=1", True),
        ("https://api.openai.com/v1", "https://api.openai.com/v10", False),
        ("https://api.openai.com/v1/", "http://api.openai.com/v1/chat", False),
        ("https://api.openai.com/v1/", "https://api.openai.com:8443/v1/chat", False),
        ("https://api.openai.com/v1/", "https://api.openai.com.evil.example/v1/chat", False),
        ("https://API.openai.com:443/v1/", "https://api.openai.com/v1/x", True),
        ("http://[::1]:8080/", "http://[::1]:8080/v1", True),
    ],
)
def test_upstream_prefixes_match_origin_and_path_segments(prefix: str, url: str, allowed: bool) -> None:
    target = Target.from_url(url)
    assert target is not None
    assert UpstreamPrefix.parse(prefix, "test").allows(target) is allowed


def test_userinfo_is_never_a_target() -> None:
    assert Target.from_url("https://api.openai.com@evil.example/v1/") is None


def test_config_repr_hides_secrets() -> None:
    config = GatewayConfig()
    assert "secret" not in repr(config).lower()
