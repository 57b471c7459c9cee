"""The wheel and the sdist as a package index would get them: built by the build backend itself
(hatchling, offline), then opened and checked file by file and field by field."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOME = "https://github.com/signgate/signgate"
NAME = "signgate-0.1.0"
#: A Markdown link or image target: [text](target) or ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> zipfile.ZipFile:
    (path,) = dist.glob("*.whl")
    assert path.name == f"{NAME}-py3-none-any.whl"
    return zipfile.ZipFile(path)


@pytest.fixture(scope="module")
def sdist(dist: Path) -> tarfile.TarFile:
    (path,) = dist.glob("*.tar.gz")
    assert path.name == f"{NAME}.tar.gz"
    return tarfile.open(path)


def package_files() -> set[str]:
    """What the wheel must hold of the source tree: every module and the py.typed marker."""
    root = REPO / "python"
    return {
        p.relative_to(root).as_posix()
        for p in (root / "signgate").rglob("*")
        if p.is_file() and (p.suffix == ".py" or p.name == "py.typed")
    }


def metadata(text: str) -> Message:
    return Parser().parsestr(text)


def test_the_wheel_holds_the_package_its_metadata_and_the_licence(wheel: zipfile.ZipFile) -> None:
    info = f"{NAME}.dist-info"
    expected = package_files() | {
        f"{info}/{name}" for name in ("METADATA", "WHEEL", "RECORD", "entry_points.txt", "licenses/LICENSE")
    }
    assert set(wheel.namelist()) == expected
    assert wheel.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
    assert "signgate = signgate.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()


def test_the_sdist_holds_the_source_the_docs_and_the_licence(sdist: tarfile.TarFile) -> None:
    names = {m.name.removeprefix(f"{NAME}/") for m in sdist.getmembers() if m.isfile()}
    docs = {p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*") if p.is_file()}
    source = {f"python/{name}" for name in package_files()}
    top = {"LICENSE", "README.md", "CHANGES.md", "pyproject.toml", "PKG-INFO", ".gitignore"}
    assert names == top | docs | source
    license_file = sdist.extractfile(f"{NAME}/LICENSE")
    assert license_file is not None and license_file.read() == (REPO / "LICENSE").read_bytes()


@pytest.mark.parametrize("where", ["wheel", "sdist"])
def test_the_metadata_a_package_index_shows(where: str, wheel: zipfile.ZipFile, sdist: tarfile.TarFile) -> None:
    if where == "wheel":
        text = wheel.read(f"{NAME}.dist-info/METADATA").decode()
    else:
        member = sdist.extractfile(f"{NAME}/PKG-INFO")
        assert member is not None
        text = member.read().decode()
    meta = metadata(text)
    assert meta["Name"] == "signgate" and meta["Version"] == "0.1.0"
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert urls["Homepage"] == HOME and urls["Source"] == HOME
    assert set(urls) >= {"Homepage", "Source", "Issues", "Changelog", "Documentation"}
    assert all(url.startswith(HOME) for url in urls.values())
    # Only what a user installs: the project's tooling (demo, test, bench, fuzz) are dependency groups.
    assert sorted(meta.get_all("Provides-Extra") or []) == ["gateway", "redis"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload() == (REPO / "README.md").read_text()


def test_every_readme_link_works_on_a_package_index() -> None:
    """A package index shows the README without the repository around it, so a relative link
    breaks there (and so may an anchor, as the index renders headings its own way): every link is
    absolute, and every link into this
    repository names a file that exists."""
    readme = (REPO / "README.md").read_text()
    targets = LINK.findall(readme)
    assert len(targets) > 10
    for target in targets:
        assert target.startswith("https://"), f"a relative link breaks on a package index: {target}"
        for prefix in (
            f"{HOME}/blob/main/",
            f"{HOME}/tree/main/",
            "https://raw.githubusercontent.com/signgate/signgate/main/",
        ):
            if target.startswith(prefix):
                path = target.removeprefix(prefix).partition("#")[0]
                assert (REPO / path).exists(), f"{target} names {path}, which is not in the repository"
