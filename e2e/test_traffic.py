"""The traffic check itself: it must find a planted secret wherever a browser can hold one.

Every other test relies on :class:`e2e.traffic.Traffic` to prove that no secret reached the
browser; a recorder blind to, say, streamed bodies would pass them all. Here a small local
server plants a different token in each place, and the check must name every one.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from .stack import new_secret
from .traffic import Traffic

TOKENS = {name: new_secret() for name in ("header", "cookie", "stream", "request", "local", "dom", "unused")}


def _split(token: str) -> str:
    """The token as a JavaScript expression that does not contain it, so it exists only at run time."""
    half = len(token) // 2
    return f"{token[:half]!r} + {token[half:]!r}"


# Like the demo's page: read a streamed answer, then go to another page at once.
PAGE = f"""<!doctype html><title>plant</title>
<script>
localStorage.setItem('k', {_split(TOKENS["local"])});
fetch('/echo', {{method: 'POST', body: {_split(TOKENS["request"])}}});
(async () => {{
  const response = await fetch('/stream');
  const reader = response.body.getReader();
  while (!(await reader.read()).done);
  location.assign('/done');
}})();
</script>"""
DONE = f"""<!doctype html><title>done</title><p id="out">waiting</p>
<script>document.getElementById('out').textContent = 'done ' + ({_split(TOKENS["dom"])});</script>"""


class _Planter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            time.sleep(0.3)  # the server's pace: the body is still arriving when the recorder asks for it
            self.wfile.write(f"data: {TOKENS['stream']}\n\ndata: [DONE]\n\n".encode())
            return
        session = base64.urlsafe_b64encode(json.dumps({"csrf": TOKENS["cookie"]}).encode()).decode().rstrip("=")
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("X-Debug", TOKENS["header"])
        self.send_header("Set-Cookie", f"session={session}.AbCdEf.signature; Path=/")
        self.end_headers()
        self.wfile.write((DONE if self.path == "/done" else PAGE).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def planter() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Planter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_check_finds_a_secret_in_every_place_a_browser_keeps_one(
    browser: Browser, planter: str, tmp_path: Path
) -> None:
    har = tmp_path / "traffic.har"
    context = browser.new_context(record_har_path=har, record_har_content="embed")
    traffic = Traffic(har)
    traffic.watch(context)
    page = context.new_page()
    traffic.attach(page)
    page.goto(planter)
    expect(page.locator("#out")).to_have_text(f"done {TOKENS['dom']}")
    traffic.finish(context)

    leaks = traffic.leaks(TOKENS)
    found = {name for name in TOKENS if any(f"the {name} is in" in leak for leak in leaks)}
    assert found == set(TOKENS) - {"unused"}, "\n".join(leaks)

    def where(name: str) -> list[str]:
        return [leak for leak in leaks if leak.startswith(f"the {name} is in")]

    assert any("response header X-Debug" in w for w in where("header"))
    assert any("decoded" in w for w in where("cookie"))  # only base64-encoded on the wire
    # The DevTools recorder has it. The HAR mostly does not: the page moved on right after
    # reading the stream, as the demo's page does, and the HAR then keeps the body empty.
    assert f"the stream is in the event stream of {planter}/stream" in where("stream")
    assert any("request body of POST" in w for w in where("request"))
    assert all(w.startswith("the local is in the storage") for w in where("local"))
    assert any(w.startswith("the dom is in the HTML") for w in where("dom"))
    assert traffic.unread_streams() == []
    assert traffic.unrecorded_pages == []


def test_a_page_that_was_not_attached_is_reported(browser: Browser, planter: str, tmp_path: Path) -> None:
    har = tmp_path / "traffic.har"
    context = browser.new_context(record_har_path=har, record_har_content="embed")
    traffic = Traffic(har)
    traffic.watch(context)
    page = context.new_page()
    page.goto(f"{planter}/done")
    traffic.finish(context)
    assert traffic.unrecorded_pages == [f"{planter}/done"]
