"""Everything a browser context saw, kept so that a test can prove no secret was in it.

Three recorders, because no one of them sees everything:

* a HAR file (Playwright's, bodies embedded): every request and response, their headers,
  cookies and bodies, including pages the browser has since left;
* a DevTools session per page for the bodies of ``text/event-stream`` responses, which the
  HAR keeps empty when the page moves on right after reading one, as the demo's page does
  with the gateway's answer (Chromium forgets a page's bodies when it navigates). The body is
  streamed to us as it arrives (``Network.streamResourceContent``); should that fail (the
  call lost a race with the page), it is asked for at the end (``Network.getResponseBody``;
  the Network domain's durable messages keep some bodies past a navigation, though not, in
  our runs, the gateway's). A body neither way reads is reported, never passed over;
* snapshots of each page's HTML, local and session storage and the context's cookies, taken
  at the key states of a test and when its context closes.

:meth:`Traffic.leaks` then says where, if anywhere, a secret appears.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import BrowserContext, CDPSession, Page
from playwright.sync_api import Error as PlaywrightError


@dataclass(frozen=True)
class Seen:
    """One piece of text the browser had, and where it was."""

    where: str
    text: str


@dataclass
class _Stream:
    session: CDPSession
    request_id: str
    url: str
    buffered: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    streaming: bool = False
    #: Why the body could not be read, if it could not.
    error: str = ""

    @property
    def body(self) -> bytes:
        return self.buffered + b"".join(self.chunks)


def _signature(url: str) -> str | None:
    """The X-Sw-Signature of a signed URL, or None."""
    values = parse_qs(urlsplit(url).query).get("X-Sw-Signature")
    return values[0] if values else None


def _short(url: str) -> str:
    """A URL without its query (a signed URL's query is long and not what a reader needs)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _decodings(value: str) -> list[str]:
    """``value``'s base64url segments decoded (and inflated, as itsdangerous compresses), so a
    secret inside a signed cookie such as Flask's session is found too."""
    found = []
    for segment in value.split("."):
        if len(segment) < 8:
            continue
        try:
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (binascii.Error, ValueError):
            continue
        for data in (raw, _inflated(raw)):
            if data:
                found.append(data.decode("utf-8", "replace"))
    return found


def _inflated(data: bytes) -> bytes:
    try:
        return zlib.decompress(data)
    except zlib.error:
        return b""


class Traffic:
    """Records one browser context: :meth:`watch` it right after creating it, and
    :meth:`attach` each of its pages before the page loads anything."""

    def __init__(self, har_path: Path) -> None:
        self.har_path = har_path
        self.entries: list[dict[str, Any]] = []
        self.snapshots: list[Seen] = []
        self.console: list[str] = []
        self.page_errors: list[str] = []
        #: Pages of the context that were never attached, so not recorded (see :meth:`finish`).
        self.unrecorded_pages: list[str] = []
        self._streams: list[_Stream] = []
        #: Event-stream bodies the test itself answered with (Route.fulfill), by request URL.
        self._fulfilled: dict[str, bytes] = {}
        self._sessions: dict[Page, CDPSession] = {}
        self._opened: list[Page] = []
        self.closed = False

    # -- recording --------------------------------------------------------------------------

    def watch(self, context: BrowserContext) -> None:
        """Note every page ``context`` opens, so that :meth:`finish` can tell which ones were
        not attached. (Attaching here would come too late: the page's ``goto`` may already run.)"""
        context.on("page", lambda page: self._opened.append(page))

    def attach(self, page: Page) -> None:
        """Record ``page``; call it before the page loads anything. A request made before
        cannot be streamed (DevTools does not know it), so pages are attached explicitly and
        :meth:`finish` reports any page of the context that was not."""
        if page in self._sessions:
            return
        session = page.context.new_cdp_session(page)
        self._sessions[page] = session
        session.on("Network.responseReceived", lambda event: self._on_response(session, event))
        session.on("Network.dataReceived", self._on_data)
        # Durable: bodies outlive the page that loaded them (see the module docstring).
        session.send("Network.enable", {"enableDurableMessages": True, "maxTotalBufferSize": 64 * 2**20})
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.page_errors.append(f"{page.url}: {error}"))

    def _on_response(self, session: CDPSession, event: dict[str, Any]) -> None:
        response = event["response"]
        content_type = {k.lower(): v for k, v in response.get("headers", {}).items()}.get("content-type", "")
        if "text/event-stream" not in content_type:
            return
        stream = _Stream(session, event["requestId"], response["url"])
        # Registered before the call: data events that arrive while it is answered are kept.
        self._streams.append(stream)
        try:
            answer = session.send("Network.streamResourceContent", {"requestId": stream.request_id})
        except PlaywrightError:
            return  # read in finish() instead
        stream.buffered = base64.b64decode(answer.get("bufferedData", ""))
        stream.streaming = True

    def _on_data(self, event: dict[str, Any]) -> None:
        if not event.get("data"):
            return
        for stream in self._streams:
            if stream.request_id == event["requestId"]:
                stream.chunks.append(base64.b64decode(event["data"]))

    def fulfilled(self, url: str, body: bytes) -> None:
        """Note that the test answered the request for ``url`` with ``body`` itself. DevTools
        cannot always hand such a body over (it arrives whole, and the page may have moved on
        before the recorder asks), but the test knows it, so it is recorded from here."""
        self._fulfilled[url] = body

    def _fulfilled_body(self, url: str) -> bytes | None:
        """The body the test answered ``url`` with: by the URL, or else by its signature (one
        signed URL, one request), should the two URLs be spelled differently."""
        if url in self._fulfilled:
            return self._fulfilled[url]
        signature = _signature(url)
        for fulfilled_url, body in self._fulfilled.items():
            if signature is not None and _signature(fulfilled_url) == signature:
                return body
        return None

    def _read_streams(self) -> None:
        for stream in self._streams:
            fulfilled = self._fulfilled_body(stream.url)
            if fulfilled is not None and not stream.body:
                stream.buffered, stream.error = fulfilled, ""
            if stream.streaming or stream.buffered:
                continue
            try:
                answer = stream.session.send("Network.getResponseBody", {"requestId": stream.request_id})
            except PlaywrightError as exc:
                stream.error = f"{exc} ({len(self._fulfilled)} bodies answered by the test, none for this URL)"
                continue
            body = answer.get("body", "")
            stream.buffered = base64.b64decode(body) if answer.get("base64Encoded") else body.encode()

    def snapshot(self, page: Page, label: str) -> None:
        """Keep the page's HTML, storage and cookies as they are now."""
        where = f"{label} ({_short(page.url)})"
        try:
            self.snapshots.append(Seen(f"HTML {where}", page.content()))
        except PlaywrightError as exc:
            self.snapshots.append(Seen(f"HTML {where} unavailable", str(exc)))
        try:
            storage = page.evaluate(
                "() => JSON.stringify({local: Object.entries(localStorage), session: Object.entries(sessionStorage)})"
            )
            self.snapshots.append(Seen(f"storage {where}", str(storage)))
        except PlaywrightError as exc:
            # With JavaScript disabled no script can write storage; cookies are still read below.
            self.snapshots.append(Seen(f"storage {where} unavailable", str(exc)))
        self._cookies(page.context, where)

    def _cookies(self, context: BrowserContext, where: str) -> None:
        for cookie in context.cookies():
            value = cookie.get("value", "")
            name = f"cookie {cookie.get('name')} {where}"
            self.snapshots.append(Seen(name, json.dumps(cookie)))
            self.snapshots.extend(Seen(f"{name}, decoded", text) for text in _decodings(value))

    def finish(self, context: BrowserContext) -> None:
        """Snapshot every open page, close ``context`` (which writes the HAR) and read the HAR."""
        if self.closed:
            return
        pages = self._opened + [page for page in context.pages if page not in self._opened]
        self.unrecorded_pages = [page.url for page in pages if page not in self._sessions]
        for page in context.pages:
            self.snapshot(page, "at the end")
        self._read_streams()
        storage = context.storage_state()
        self.snapshots.append(Seen("storage state at the end", json.dumps(storage)))
        context.close()
        self.closed = True
        self.entries = json.loads(self.har_path.read_text(encoding="utf-8"))["log"]["entries"]

    # -- reading ----------------------------------------------------------------------------

    def stream_bodies(self) -> dict[str, bytes]:
        """The event-stream bodies read, by request URL (one URL is signed for one request)."""
        return {stream.url: stream.body for stream in self._streams if not stream.error}

    def texts(self) -> Iterator[Seen]:
        """Every piece of text recorded, with where it was."""
        for entry in self.entries:
            request, response = entry["request"], entry["response"]
            where = f"{request['method']} {_short(request['url'])}"
            yield Seen(f"URL of {where}", request["url"])
            for header in request.get("headers", []):
                yield Seen(f"request header {header['name']} of {where}", header["value"])
            for cookie in request.get("cookies", []):
                yield Seen(f"request cookie {cookie['name']} of {where}", json.dumps(cookie))
            if request.get("postData"):
                yield Seen(f"request body of {where}", request["postData"].get("text", ""))
            for header in response.get("headers", []):
                yield Seen(f"response header {header['name']} of {where}", header["value"])
                if header["name"].lower() == "set-cookie":
                    for text in _decodings(header["value"].split(";", 1)[0].partition("=")[2]):
                        yield Seen(f"set-cookie of {where}, decoded", text)
            content = response.get("content", {})
            text = content.get("text", "")
            if content.get("encoding") == "base64":
                text = base64.b64decode(text).decode("utf-8", "replace")
            yield Seen(f"response body of {where}", text)
            if response.get("redirectURL"):
                yield Seen(f"redirect of {where}", response["redirectURL"])
        for url, body in self.stream_bodies().items():
            yield Seen(f"event stream of {_short(url)}", body.decode("utf-8", "replace"))
        yield from self.snapshots
        for line in self.console:
            yield Seen("console", line)
        for error in self.page_errors:
            yield Seen("page error", error)

    def leaks(self, secrets: Mapping[str, str]) -> list[str]:
        """Where each secret (name -> value) appears; empty when none does."""
        return [
            f"the {name} is in the {seen.where}"
            for seen in self.texts()
            for name, value in secrets.items()
            if value in seen.text
        ]

    def unread_streams(self) -> list[str]:
        """Event streams whose body was not read (a blind spot of the check), and why."""
        missing = [f"{_short(stream.url)}: {stream.error}" for stream in self._streams if stream.error]
        caught = self.stream_bodies()
        for entry in self.entries:
            url, mime = entry["request"]["url"], entry["response"].get("content", {}).get("mimeType", "")
            if "text/event-stream" in mime and url not in caught and not entry["response"]["content"].get("text"):
                missing.append(f"{_short(url)}: no recorder has its body")
        return missing
