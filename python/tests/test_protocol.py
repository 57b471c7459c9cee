"""signgate serve's own HTTP/1.1 protocol (signgate.gateway.protocol) on real sockets, and the
canary for the parts of uvicorn it relies on: uvicorn builds the protocol with ``config``,
``server_state`` and ``app_state``, tracks connections and tasks in the server state, writes the
Date header into ``default_headers`` and calls ``shutdown()`` on each connection at a graceful
shutdown. These tests fail, naming what moved, when a uvicorn release changes any of that.
(Its limits, the head deadline, the caps, pipelining, are tested against real servers in
test_hostile.py.)"""

from __future__ import annotations

import asyncio
import inspect
import socket
from importlib.metadata import version
from typing import Any

import pytest
import uvicorn
from uvicorn.server import Server, ServerState

from signgate.gateway import GatewayConfig, KeyConfig
from signgate.gateway.asgi import ABORT, CLIENT_LOST, COALESCE
from signgate.gateway.protocol import GatewayHttpProtocol, protocol_class


def test_the_installed_uvicorn_is_the_pinned_one() -> None:
    major, minor = (int(part) for part in version("uvicorn").split(".")[:2])
    assert (major, minor) == (0, 55), (
        f"uvicorn {version('uvicorn')} is installed but pyproject.toml pins 0.55.x: run this file's "
        "tests against the new release, fix what they name in signgate/gateway/protocol.py, then move the pin"
    )


def test_uvicorn_builds_the_protocol_with_the_arguments_it_takes() -> None:
    source = inspect.getsource(Server)
    for argument in ("config=config", "server_state=self.server_state", "app_state=self.lifespan.state"):
        assert argument in source, f"uvicorn's Server no longer passes {argument} to the protocol class"
    assert list(inspect.signature(GatewayHttpProtocol).parameters)[:3] == ["config", "server_state", "app_state"]


def test_the_server_state_still_has_what_the_protocol_uses() -> None:
    state = ServerState()
    for name, kind in (("connections", set), ("tasks", set), ("default_headers", list), ("total_requests", int)):
        assert isinstance(getattr(state, name, None), kind), f"uvicorn's ServerState has no {name} ({kind.__name__})"
    shutdown = inspect.getsource(Server.shutdown)
    assert "connection.shutdown()" in shutdown and "server_state.connections" in shutdown, (
        "uvicorn's graceful shutdown no longer calls shutdown() on each connection"
    )
    assert "server_state.tasks" in inspect.getsource(Server), "uvicorn no longer waits for the protocol's tasks"
    assert "self.server_state.default_headers =" in inspect.getsource(Server.on_tick), (
        "uvicorn no longer renews the Date header in default_headers, which the protocol writes"
    )
    assert uvicorn.Config(app=None, timeout_keep_alive=7).timeout_keep_alive == 7


def test_the_protocol_class_is_per_configuration() -> None:
    a = protocol_class(GatewayConfig(keys={"a": KeyConfig("a", ("s",))}, header_timeout=3.0))
    b = protocol_class(GatewayConfig(keys={"b": KeyConfig("b", ("s",))}, header_timeout=7.0))
    assert a is not b and issubclass(a, GatewayHttpProtocol)
    assert (a.header_timeout, b.header_timeout) == (3.0, 7.0)
    assert GatewayHttpProtocol.header_timeout == 10.0  # the base class is never changed


def test_a_real_connection_serves_asgi_with_the_extensions_and_tracks_itself() -> None:
    seen: dict[str, Any] = {}
    state = ServerState()
    state.default_headers = [(b"date", b"Mon, 07 Dec 2026 00:00:00 GMT")]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["extensions"] = sorted(scope.get("extensions", {}))
        seen["scope"] = {k: scope[k] for k in ("method", "path", "raw_path", "query_string", "http_version")}
        seen["headers"] = scope["headers"]
        seen["received"] = [await receive()]
        seen["tracked"] = (len(state.connections), len(state.tasks))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> bytes:
        config = uvicorn.Config(app, lifespan="off", log_level="warning")
        config.load()
        cls = protocol_class(GatewayConfig(keys={"app": KeyConfig("app", ("s",))}))
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: cls(config=config, server_state=state, app_state={}), ours)
        reader, writer = await asyncio.open_connection(sock=theirs)
        writer.write(b"POST /a%20b?x=1 HTTP/1.1\r\nHost: x\r\nX-Pad: v \t\r\ncontent-length: 3\r\n\r\nabc")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"ok"), 10)
        writer.close()
        await asyncio.sleep(0.05)
        seen["after"] = (len(state.connections), len(state.tasks), state.total_requests)
        return answer

    answer = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\ncontent-length: 2\r\n"), answer
    assert seen["extensions"] == sorted([ABORT, CLIENT_LOST, COALESCE])
    assert seen["scope"] == {
        "method": "POST", "path": "/a b", "raw_path": b"/a%20b", "query_string": b"x=1", "http_version": "1.1"
    }  # fmt: skip
    assert seen["headers"] == [(b"host", b"x"), (b"x-pad", b"v"), (b"content-length", b"3")]
    assert seen["received"] == [{"type": "http.request", "body": b"abc", "more_body": False}]
    assert seen["tracked"] == (1, 1)
    assert seen["after"] == (0, 0, 1)


# -- the coalesced head: one write for a small answer's head and body -----------------------------


def _serve_one(
    app: Any,
    request: bytes,
    steps: Any,
    *,
    keep_alive: float = 5.0,
    header_timeout: float = 10.0,
    state: ServerState | None = None,
) -> list[bytes]:
    """Run ``app`` under the configured protocol on a real socket pair, send ``request``, and
    call ``steps(read_now, seen)`` to look at what arrived while the app waits; returns what
    the peer received at each look and then until the connection closed."""

    async def main() -> list[bytes]:
        config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_keep_alive=keep_alive)
        config.load()
        cls = protocol_class(GatewayConfig(keys={"app": KeyConfig("app", ("s",))}, header_timeout=header_timeout))
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        loop = asyncio.get_running_loop()
        server_state = state or ServerState()
        await loop.connect_accepted_socket(lambda: cls(config=config, server_state=server_state, app_state={}), ours)
        await loop.sock_sendall(theirs, request)
        seen: list[bytes] = []

        def read_now() -> bytes:
            try:
                return theirs.recv(65536)
            except BlockingIOError:
                return b""

        await steps(read_now, seen, lambda data: loop.sock_sendall(theirs, data))
        rest = b""
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(theirs, 65536), 10)
            if not chunk:
                break
            rest += chunk
        seen.append(rest)
        theirs.close()
        return seen

    return asyncio.run(main())


def _gated_app(hold: bool, gate: asyncio.Event) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if hold:
            scope["extensions"][COALESCE]()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await gate.wait()
        await send({"type": "http.response.body", "body": b"hello"})

    return app


@pytest.mark.parametrize("hold", [True, False])
def test_a_held_head_goes_out_with_the_first_body_bytes(hold: bool) -> None:
    gate = asyncio.Event()  # bound to a loop on first use, inside _serve_one's

    async def steps(read_now: Any, seen: list[bytes], send: Any) -> None:
        await asyncio.sleep(0.2)  # the app has sent its head, and waits at the gate
        seen.append(read_now())
        gate.set()

    request = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    while_waiting, rest = _serve_one(_gated_app(hold, gate), request, steps)
    if hold:
        assert while_waiting == b"", "a held head must wait for the body"
        assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"\r\n\r\nhello")
    else:  # without the extension, the head goes out at once, as uvicorn writes it
        assert while_waiting.startswith(b"HTTP/1.1 200") and while_waiting.endswith(b"\r\n\r\n")
        assert rest == b"hello"


def test_a_held_head_without_body_bytes_is_still_sent() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"][COALESCE]()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})  # not written for HEAD

    async def nothing(read_now: Any, seen: list[bytes], send: Any) -> None:
        return None

    (answer,) = _serve_one(app, b"HEAD / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", nothing)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n")


def test_a_held_head_is_sent_before_a_break_off() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"][COALESCE]()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        scope["extensions"][ABORT]()

    async def nothing(read_now: Any, seen: list[bytes], send: Any) -> None:
        return None

    (answer,) = _serve_one(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", nothing)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n")  # then the connection closed


# -- framing, bodies, deadlines: what uvicorn's request cycle did, now the protocol's own --------------


async def _nothing(read_now: Any, seen: list[bytes], send: Any) -> None:
    return None


def _answering(status: int, headers: list[tuple[bytes, bytes]], *chunks: bytes) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


def _parsed(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in ``raw``, parsed by llhttp itself (chunked framing undone)."""
    import httptools

    class Collect:
        def __init__(self) -> None:
            self.done: list[tuple[int, dict[str, str], bytes]] = []
            self.headers: dict[str, str] = {}
            self.body = b""

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode().lower()] = value.decode()

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            self.done.append((parser.get_status_code(), self.headers, self.body))
            self.headers, self.body = {}, b""

    collect = Collect()
    parser = httptools.HttpResponseParser(collect)
    parser.feed_data(raw)
    return collect.done


def test_a_response_without_a_length_is_chunked_and_ends_with_the_last_chunk() -> None:
    request = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    (raw,) = _serve_one(_answering(200, [(b"content-type", b"text/plain")], b"ab", b"", b"cd"), request, _nothing)
    assert b"transfer-encoding: chunked\r\n" in raw and raw.endswith(b"0\r\n\r\n")
    assert _parsed(raw) == [
        (200, {"content-type": "text/plain", "transfer-encoding": "chunked", "connection": "close"}, b"abcd")
    ]


def test_an_http_1_0_client_gets_a_streamed_body_ended_by_the_close_not_chunked() -> None:
    request = b"GET / HTTP/1.0\r\nhost: x\r\n\r\n"
    (raw,) = _serve_one(_answering(200, [(b"content-type", b"text/plain")], b"ab", b"cd"), request, _nothing)
    assert b"transfer-encoding" not in raw and b"connection: close\r\n" in raw
    assert raw.endswith(b"\r\n\r\nabcd")


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_no_body_is_framed_or_written_where_http_has_none(method: str, status: int) -> None:
    request = f"{method} / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode()
    (raw,) = _serve_one(_answering(status, [(b"content-length", b"5")] if method == "HEAD" else []), request, _nothing)
    assert raw.endswith(b"\r\n\r\n") and b"transfer-encoding" not in raw, raw
    assert raw.startswith(f"HTTP/1.1 {status} ".encode())


@pytest.mark.parametrize(
    ("headers", "complaint"),
    [
        ([(b"x-bad name", b"v")], "Invalid HTTP header name or value."),
        ([(b"x-ok", b"v\r\nx-injected: 1")], "Invalid HTTP header name or value."),
    ],
)
def test_a_header_that_would_split_the_response_is_never_written(
    headers: list[tuple[bytes, bytes]], complaint: str, caplog: pytest.LogCaptureFixture
) -> None:
    request = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    (raw,) = _serve_one(_answering(200, headers, b"x"), request, _nothing)
    assert raw.startswith(b"HTTP/1.1 500 ") and b"injected" not in raw and b"bad name" not in raw
    assert complaint in caplog.text


def test_a_response_longer_or_shorter_than_its_length_is_an_error_not_a_desync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n"
    (raw,) = _serve_one(_answering(200, [(b"content-length", b"2")], b"abc"), request, _nothing)
    assert raw.endswith(b"\r\n\r\n")  # the head went out, no byte of the body, and the connection closed
    assert "Response content longer than Content-Length" in caplog.text


def test_an_app_that_returns_without_answering_gets_a_500_logged() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    (raw,) = _serve_one(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", _nothing)
    assert _parsed(raw) == [
        (
            500,
            {"content-type": "text/plain; charset=utf-8", "content-length": "21", "connection": "close"},
            b"Internal Server Error",
        )
    ]


def test_a_body_arrives_in_parts_with_reading_paused_past_the_high_water_mark() -> None:
    body = bytes(range(256)) * 1024  # 256 KiB: four times the high-water mark
    got: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        data = b""
        while True:
            message = await receive()
            got.append(len(message["body"]))
            data += message["body"]
            if not message["more_body"]:
                break
        assert data == body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    head = f"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()

    async def send_body(read_now: Any, seen: list[bytes], send: Any) -> None:
        for i in range(0, len(body), 4096):
            await send(body[i : i + 4096])

    (raw,) = _serve_one(app, head, send_body)
    assert raw.endswith(b"ok") and sum(got) == len(body) and len(got) > 1


def test_expect_100_continue_is_answered_when_the_app_asks_for_the_body() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": message["body"]})

    head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"

    async def then_body(read_now: Any, seen: list[bytes], send: Any) -> None:
        await asyncio.sleep(0.2)
        seen.append(read_now())
        await send(b"abc")

    interim, rest = _serve_one(app, head, then_body)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"abc")


def test_pipelined_requests_are_answered_in_order() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.05 if scope["path"] == "/1" else 0)  # the first is the slowest
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    request = b"".join(f"GET /{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for i in range(1, 4))
    request += b"GET /4 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    (raw,) = _serve_one(app, request, _nothing)
    assert [body for _, _, body in _parsed(raw)] == [b"/1", b"/2", b"/3", b"/4"]


def test_each_response_carries_the_date_the_server_holds_now() -> None:
    state = ServerState()
    state.default_headers = [(b"date", b"first")]
    app = _answering(200, [(b"content-length", b"1")], b"x")

    async def renewed(read_now: Any, seen: list[bytes], send: Any) -> None:
        await asyncio.sleep(0.1)
        state.default_headers = [(b"date", b"second")]  # as uvicorn's server does once a second
        await send(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")

    (raw,) = _serve_one(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", renewed, state=state)
    assert [headers["date"] for _, headers, _ in _parsed(raw)] == ["first", "second"]


def test_a_kept_alive_connection_left_silent_is_closed_after_the_keep_alive_time() -> None:
    app = _answering(200, [(b"content-length", b"1")], b"x")
    # Closed, silently, long before the head deadline: without the keep-alive close the read that
    # waits for the end (10 s at most, in _serve_one) gives up and the test fails.
    (raw,) = _serve_one(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", _nothing, keep_alive=0.3, header_timeout=60)
    assert raw.endswith(b"\r\n\r\nx")


def test_each_request_moves_the_deadlines_of_a_kept_alive_connection() -> None:
    app = _answering(200, [(b"content-length", b"1")], b"x")

    async def steady(read_now: Any, seen: list[bytes], send: Any) -> None:
        for _ in range(4):  # 1.6 s in all: past every deadline counted from the first request
            await asyncio.sleep(0.4)
            await send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")

    (raw,) = _serve_one(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", steady, keep_alive=1.0, header_timeout=1.5)
    assert [status for status, _, _ in _parsed(raw)] == [200] * 5  # all answered, then closed silently


def test_a_head_begun_within_the_keep_alive_time_gets_the_rest_of_the_head_deadline() -> None:
    app = _answering(200, [(b"content-length", b"1")], b"x")

    async def slow_head(read_now: Any, seen: list[bytes], send: Any) -> None:
        await asyncio.sleep(0.1)
        await send(b"GET / HT")  # begun, never finished

    (raw,) = _serve_one(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", slow_head, keep_alive=1.0, header_timeout=2.0)
    first, second = _parsed(raw)
    assert first[2] == b"x" and second[0] == 408 and "client_timeout" in second[2].decode()


def test_the_supervisor_internals_serve_py_relies_on_are_there() -> None:
    """serve.Supervisor replaces uvicorn's SIGHUP handling (which would start new workers and cut
    the old ones' streams): it relies on the handler's name, the worker list and what a worker
    exposes, and serve() on binding the public socket and serving given sockets."""
    import signal

    from uvicorn.supervisors.multiprocess import SIGNALS, Multiprocess, Process

    assert SIGNALS.get(signal.SIGHUP) == "HUP" and callable(getattr(Multiprocess, "handle_hup", None)), (
        "uvicorn's supervisor no longer dispatches SIGHUP to handle_hup: serve.Supervisor's override is never called"
    )
    assert 'getattr(self, f"handle_{sig_name.lower()}"' in inspect.getsource(Multiprocess.handle_signals)
    assert "self.processes" in inspect.getsource(Multiprocess.__init__)
    assert isinstance(Process.pid, property)
    assert "self.process = " in inspect.getsource(Process.__init__)
    assert callable(getattr(uvicorn.Config, "bind_socket", None))
    assert "sockets" in inspect.signature(uvicorn.Server.serve).parameters


@pytest.mark.parametrize("target", [b"http://example.test", b"http://example.test?x=1", b"HTTP://EXAMPLE.TEST:80"])
def test_an_absolute_form_target_without_a_path_is_served_as_slash_with_nothing_logged(
    target: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # llhttp accepts it (RFC 9112 3.2.2; an empty path is "/", 3.3) but parse_url gives no path:
    # it was an AttributeError inside the parser's callback, logged with a traceback per request.
    seen: list[tuple[str, bytes, bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["path"], scope["raw_path"], scope["query_string"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    request = b"GET " + target + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    (raw,) = _serve_one(app, request, _nothing)
    assert [status for status, _, _ in _parsed(raw)] == [200]
    assert seen == [("/", b"/", b"x=1" if b"?" in target else b"")]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text


def test_an_http_1_0_client_never_gets_a_100_continue() -> None:
    # RFC 9110 10.1.1 and 15.2: a 100-continue expectation in an HTTP/1.0 request is ignored, and no
    # 1xx is sent to an HTTP/1.0 client, which would take it for the final answer.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": message["body"]})

    request = b"POST / HTTP/1.0\r\nhost: x\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\nabc"
    (raw,) = _serve_one(app, request, _nothing)
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"\r\n\r\nabc") and b" 100 " not in raw, raw


@pytest.mark.parametrize("target", [b"http://h:99999/", b"http://h:x/", b"http:///x"])
def test_a_pipelined_request_with_a_bad_target_is_never_answered_in_the_running_ones_place(target: bytes) -> None:
    # llhttp accepts these targets; httptools.parse_url then refuses them inside the head's callback.
    # The refusal must not be written while the request before it waits for its answer: the client
    # would read the 400 as that request's answer (and its application was told the client left).
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    request = b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\nGET " + target + b" HTTP/1.1\r\nhost: x\r\n\r\n"
    (raw,) = _serve_one(app, request, _nothing)
    statuses = [status for status, _, _ in _parsed(raw)]
    assert statuses[:1] in ([], [200]), raw  # closed (as for any malformed pipelined request), or answered
