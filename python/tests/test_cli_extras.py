"""The CLI without the gateway extra, run for real: ``python -S`` with a module path that holds
signgate and its core dependencies and nothing else, so the extra's packages are truly absent."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from signgate import _extras

REPO = Path(__file__).resolve().parents[2]
HINT = "pip install 'signgate[gateway]'"
#: A requirement as metadata spells it: ``name[extra,...] ...; marker``.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


def _requirements(dist: str, extras: set[str]) -> list[tuple[str, set[str]]]:
    """The distributions ``dist`` needs with ``extras``, each with the extras it is asked for.
    Other markers are not evaluated: a requirement that is not installed here is skipped later."""
    needed = []
    for requirement in importlib.metadata.requires(dist) or []:
        marker = _EXTRA_MARKER.search(requirement.partition(";")[2])
        if marker is not None and marker.group(1) not in extras:
            continue
        match = _REQUIREMENT.match(requirement)
        assert match is not None, requirement
        wanted = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
        needed.append((match.group(1), wanted))
    return needed


def _link_distribution(site: Path, name: str) -> None:
    """Link every top-level file and folder distribution ``name`` installed (its code and its
    .dist-info) into ``site``."""
    dist = importlib.metadata.distribution(name)
    for file in dist.files or []:
        top = file.parts[0]
        if top in ("..", "__pycache__") or (site / top).exists():
            continue
        source = Path(str(dist.locate_file(top)))
        if source.exists():
            (site / top).symlink_to(source)


def isolated(site: Path, extras: set[str]) -> dict[str, str]:
    """The environment of a ``python -S`` that finds signgate, its core dependencies and those
    of ``extras``, and nothing else: ``site`` is filled with links to them."""
    (site / "signgate").symlink_to(REPO / "python" / "signgate")
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = _requirements("signgate", extras)
    while todo:
        name, wanted = todo.pop()
        key = (name.lower().replace("_", "-"), frozenset(wanted))
        if key in seen:
            continue
        seen.add(key)
        try:
            _link_distribution(site, name)
        except importlib.metadata.PackageNotFoundError:
            continue  # for another platform or Python
        todo += _requirements(name, wanted)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def core_only(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """signgate without any extra."""
    return isolated(tmp_path_factory.mktemp("core-only"), set())


@pytest.fixture(scope="module")
def gateway_only(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """signgate with the gateway extra, without the redis extra."""
    return isolated(tmp_path_factory.mktemp("gateway-only"), {"gateway"})


def python_s(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -S`` (no site-packages) with ``env``."""
    return subprocess.run(
        [sys.executable, "-S", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_setup_really_lacks_the_extra_and_has_the_core(core_only: dict[str, str]) -> None:
    found = python_s(
        core_only,
        "-c",
        "import importlib.util as u, ada_url, signgate; "
        f"print([m for m in {_extras.MODULES['gateway']!r} if u.find_spec(m) is not None])",
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "signgate", "serve", "--id", "x", "--secret-env", "S", "--allow-upstream", "https://api.example.com/"],
        ["-m", "signgate", "serve", "x", "secret"],
        ["-m", "signgate", "serve"],
        ["-m", "signgate", "serve", "--help"],
        ["-m", "signgate", "standin"],
        ["-m", "signgate", "standin", "--port", "9", "--delay", "1"],
        ["-m", "signgate.standin", "--port", "9"],
    ],
    ids=["serve-flags", "serve-signway-form", "serve-bare", "serve-help", "standin", "standin-flags", "python-m"],
)
def test_every_command_of_the_extra_names_it_whatever_its_arguments(core_only: dict[str, str], argv: list[str]) -> None:
    out = python_s(core_only, *argv)
    assert out.returncode == 2, out
    assert HINT in out.stderr and "uvicorn" in out.stderr
    assert "Traceback" not in out.stderr and "unrecognized arguments" not in out.stderr
    assert out.stdout == ""
    assert "stand-in (offline" not in out.stderr  # no banner before the error


def test_help_lists_the_commands_and_what_they_need(core_only: dict[str, str]) -> None:
    out = python_s(core_only, "-m", "signgate", "--help")
    assert out.returncode == 0, out.stderr
    assert "serve" in out.stdout and "standin" in out.stdout
    assert out.stdout.count("(needs signgate[gateway])") == 2


def test_the_core_commands_work_without_the_extra(core_only: dict[str, str]) -> None:
    env = core_only | {"SIGNGATE_SECRET": "core-only-secret"}
    argv = ["-m", "signgate", "sign", "--id", "app", "--gateway", "http://127.0.0.1:3000"]
    out = python_s(env, *argv, "--upstream", "https://api.example.com/v1/chat/completions")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("http://127.0.0.1:3000/?X-Sw-Algorithm=")
    # A typo in a command that exists is still a usage error, not an extra's message.
    typo = python_s(env, *argv, "--upstream", "https://api.example.com/", "--colour", "red")
    assert typo.returncode == 2, typo
    assert "unrecognized arguments: --colour red" in typo.stderr and HINT not in typo.stderr


def test_a_broken_dependency_is_not_reported_as_a_missing_extra(tmp_path: Path) -> None:
    """An httptools that is installed but fails to import is a real problem, and the user must
    see it as it is: find_spec finds the module, so the CLI imports the gateway and the error
    surfaces with its traceback."""
    broken = tmp_path / "httptools"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('this httptools is broken on purpose')\n")
    env = dict(os.environ) | {"PYTHONPATH": str(tmp_path), "SIGNGATE_SECRET": "s"}
    out = subprocess.run(
        [sys.executable, "-m", "signgate", "serve", "--id", "x", "--secret-env", "SIGNGATE_SECRET"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "this httptools is broken on purpose" in out.stderr and "Traceback" in out.stderr
    assert HINT not in out.stderr


def test_the_store_flag_names_the_redis_extra(gateway_only: dict[str, str]) -> None:
    assert (
        python_s(gateway_only, "-c", "import importlib.util as u, uvicorn; assert not u.find_spec('redis')").returncode
        == 0
    )
    env = gateway_only | {"SIGNGATE_SECRET": "s"}
    argv = ["-m", "signgate", "serve", "--id", "x", "--secret-env", "SIGNGATE_SECRET"]
    out = python_s(env, *argv, "--store", "redis://127.0.0.1:1/0")
    assert out.returncode == 2, out
    assert "--store redis://" in out.stderr and "pip install 'signgate[redis]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_module_lists_match_pyproject() -> None:
    """Each extra's module list names exactly the top-level modules of the distributions that
    pyproject.toml lists for it."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    by_dist: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            by_dist.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    assert set(extras) == set(_extras.MODULES)
    for extra, requirements in extras.items():
        modules: set[str] = set()
        for requirement in requirements:
            match = _REQUIREMENT.match(requirement)
            assert match is not None
            modules |= {m for m in by_dist[match.group(1).lower()] if not m.startswith("_")}
        assert sorted(modules) == sorted(_extras.MODULES[extra]), extra


def test_revoke_needs_no_gateway_and_names_the_redis_extra_for_a_store(core_only: dict[str, str]) -> None:
    helped = python_s(core_only, "-m", "signgate", "revoke", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--store" in helped.stdout and "--admin" in helped.stdout
    out = python_s(core_only, "-m", "signgate", "revoke", "--user", "u-1", "--store", "redis://127.0.0.1:1/0")
    assert out.returncode == 2, out
    assert "--store this needs the redis extra" in out.stderr and "pip install 'signgate[redis]'" in out.stderr
    assert "Traceback" not in out.stderr
    api = python_s(core_only, "-c", "import signgate; signgate.Revoker('redis://127.0.0.1:1/0')")
    assert api.returncode == 1
    assert "ImportError: signgate.Revoker this needs the redis extra" in api.stderr
    assert "pip install 'signgate[redis]'" in api.stderr
