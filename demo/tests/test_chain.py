"""The whole chain in Python, started the way a user starts it (``python -m demo``):
page -> sign endpoint -> gateway -> stand-in model -> streamed filters -> /cars."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from demo import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack() -> Iterator[str]:
    ports = [_free_port() for _ in range(3)]
    log = tempfile.NamedTemporaryFile(prefix="demo-chain-", suffix=".log", delete=False)  # noqa: SIM115
    argv = [sys.executable, "-m", "demo", "--port", str(ports[0]), "--gateway-port", str(ports[1])]
    argv += ["--standin-port", str(ports[2]), "--quiet"]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    output = Path(log.name)
    try:
        deadline = time.monotonic() + 60
        while "ready" not in output.read_text().splitlines():
            assert proc.poll() is None, f"python -m demo exited:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"python -m demo was not ready in 60 s:\n{output.read_text()}"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{ports[0]}"
    finally:
        proc.terminate()
        assert proc.wait(20) in (0, -15), output.read_text()
        log.close()


class Browser:
    """Just enough of a browser for the app: a cookie jar for its session."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as response:
            return str(response.read().decode())

    def sign(self, query: str) -> dict[str, Any]:
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', self.get("/cars"))
        assert token, "the page embeds no CSRF token"
        request = urllib.request.Request(
            self.base + "/api/search/sign",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json", "X-CSRF-Token": token.group(1)},
        )
        with self.opener.open(request, timeout=30) as response:
            signed: dict[str, Any] = json.loads(response.read())
        return signed


def send(signed: dict[str, Any]) -> tuple[int, list[str]]:
    """Send exactly what the app handed out, as the browser helper does (no cookies); the
    content deltas of the streamed answer, or the error body."""
    request = urllib.request.Request(
        signed["url"], data=signed["body"].encode(), headers=signed["headers"], method=signed["method"]
    )
    deltas: list[str] = []
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data: ") and line != "data: [DONE]":
                    deltas += [c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"]]
    except urllib.error.HTTPError as exc:
        return exc.code, [exc.read().decode()]
    return 200, deltas


def test_a_search_goes_through_every_part(stack: str) -> None:
    browser = Browser(stack)
    signed = browser.sign("a red crossover under 30k, newer than 2018, with leather and a sunroof, cheapest first")
    status, deltas = send(signed)
    assert status == 200, deltas
    assert len([d for d in deltas if d]) > 5, "the answer did not stream in pieces"
    answer = json.loads("".join(deltas))
    filters = {k: v for k, v in answer["filters"].items() if v not in (None, [])}
    assert filters == {
        "body": "suv",
        "color": "red",
        "year_min": 2019,  # "newer than 2018" leaves 2018 out
        "price_max": 30000,
        "features": ["sunroof", "leather"],
        "sort": "price_asc",
    }
    pairs = [(k, str(item)) for k, v in filters.items() for item in (v if isinstance(v, list) else [v])]
    page = browser.get("/cars?" + urllib.parse.urlencode(pairs))
    count = re.search(r'data-testid="result-count"[^>]*data-count="(\d+)"', page)
    assert count and int(count.group(1)) > 0
    assert 'data-testid="ignored-notice"' not in page

    # the URL was single use: the same request again is refused, and says why
    status, body = send(signed)
    assert status == 409 and json.loads(body[0])["error"]["code"] == "replayed"
