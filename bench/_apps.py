"""The Flask apps the benchmarks run under gunicorn, configured from the environment.

``search_app()``: an app server that serves AI searches two ways, for the headline.

- ``POST /api/search/relay`` calls the model itself (``requests``, streaming) and relays the
  answer: the way an app does it without signgate. The thread is held for the whole answer.
- ``POST /api/search/sign`` only signs the same model call with ``signgate.Signer`` and returns
  ``{url, method, headers, body}``; the browser (here, the load generator) sends that to the gateway.

``proxy_app()``: a naive pass-through proxy that verifies nothing, adds the model's API key and
relays the upstream's answer with ``requests`` streaming: what one would write in Flask instead of
a gateway.

``BusyMeter`` measures, inside the app, how long its threads spend in requests (from the WSGI call
until the response is closed, so a streamed answer counts until its last byte), and publishes
the running totals in a small shared file the load generator reads (see ``read_busy``).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, jsonify, request, stream_with_context

from signgate import Signer

SYSTEM_PROMPT = "Turn the user's words into used-car search filters as JSON."

# seq (even when consistent), requests finished, busy seconds of finished requests,
# requests in flight, sum of the in-flight requests' start times (time.monotonic, system-wide).
_LAYOUT = struct.Struct("<QQdQd")


class BusyMeter:
    """WSGI middleware: the thread time spent inside requests, readable from another process."""

    def __init__(self, app: Callable[..., Iterable[bytes]], path: str) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._file = Path(path).open("r+b")  # noqa: SIM115 - lives as long as the process
        self._map = mmap.mmap(self._file.fileno(), _LAYOUT.size)
        self._seq = self._done = self._inflight = 0
        self._busy = self._starts = 0.0

    def _publish(self) -> None:
        # A seqlock: odd while writing, so a reader that sees the same even number before and
        # after reading has a consistent snapshot.
        self._seq += 1
        _LAYOUT.pack_into(self._map, 0, self._seq, self._done, self._busy, self._inflight, self._starts)
        self._seq += 1
        struct.pack_into("<Q", self._map, 0, self._seq)

    def _begin(self, start: float) -> None:
        with self._lock:
            self._inflight += 1
            self._starts += start
            self._publish()

    def _end(self, start: float) -> None:
        end = time.monotonic()
        with self._lock:
            self._inflight -= 1
            self._starts -= start
            self._done += 1
            self._busy += end - start
            self._publish()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start = time.monotonic()
        self._begin(start)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._end(start)
            raise
        return _Closing(body, lambda: self._end(start))


class _Closing:
    """The app's response iterable, with a callback after the server closed it (the answer's last byte)."""

    def __init__(self, body: Iterable[bytes], after: Callable[[], None]) -> None:
        self._body, self._after = body, after

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._after()


def new_busy_file(path: str) -> None:
    Path(path).write_bytes(bytes(_LAYOUT.size))


def read_busy(path: str) -> tuple[int, float]:
    """(requests finished, thread-seconds spent in requests so far, in-flight ones up to now)."""
    with Path(path).open("rb") as f, mmap.mmap(f.fileno(), _LAYOUT.size, access=mmap.ACCESS_READ) as shared:
        while True:
            seq, done, busy, inflight, starts = _LAYOUT.unpack_from(shared)
            now = time.monotonic()
            if seq % 2 == 0 and struct.unpack_from("<Q", shared)[0] == seq:
                return done, busy + inflight * now - starts


def _model_call(query: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "stream": True,
        "max_tokens": 200,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": query[:500]}],
    }


_local = threading.local()


def _session() -> requests.Session:
    """One pooled ``requests`` session per thread (a Session is not thread-safe)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def _relay(upstream: requests.Response) -> Response:
    def body() -> Iterator[bytes]:
        try:
            yield from upstream.iter_content(chunk_size=None)
        finally:
            upstream.close()

    content_type = upstream.headers.get("Content-Type", "application/octet-stream")
    return Response(stream_with_context(body()), status=upstream.status_code, content_type=content_type)


def search_app() -> Any:
    model_url = os.environ["BENCH_MODEL_URL"]
    model_auth = "Bearer " + os.environ["BENCH_MODEL_KEY"]
    signer = Signer("bench", os.environ["BENCH_SECRET"], os.environ["BENCH_GATEWAY_URL"], expires_in=30)
    app = Flask("search")

    @app.post("/api/search/relay")
    def relay() -> Response:
        query = str(request.get_json(force=True).get("query", ""))
        upstream = _session().post(
            model_url, json=_model_call(query), headers={"Authorization": model_auth}, stream=True, timeout=(5, 60)
        )
        return _relay(upstream)

    @app.post("/api/search/sign")
    def sign() -> Response:
        query = str(request.get_json(force=True).get("query", ""))
        return jsonify(signer.sign("POST", model_url, json=_model_call(query)).to_dict())

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    busy_file = os.environ.get("BENCH_BUSY_FILE")
    if busy_file:
        app.wsgi_app = BusyMeter(app.wsgi_app, busy_file)  # type: ignore[method-assign]
    return app


def proxy_app() -> Any:
    upstream_base = os.environ["BENCH_UPSTREAM"].rstrip("/")
    model_auth = "Bearer " + os.environ["BENCH_MODEL_KEY"]
    app = Flask("proxy")

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    @app.route("/<path:path>", methods=["GET", "POST"])
    def proxy(path: str) -> Response:
        query = request.query_string.decode("latin-1")
        url = f"{upstream_base}/{path}" + (f"?{query}" if query else "")
        headers = {"Authorization": model_auth}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        upstream = _session().request(
            request.method, url, data=request.get_data(), headers=headers, stream=True, timeout=(5, 60)
        )
        return _relay(upstream)

    return app
