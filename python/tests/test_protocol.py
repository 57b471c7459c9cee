"""The canary for uvicorn's internals: signgate.gateway.protocol subclasses uvicorn's httptools
protocol and reads names uvicorn does not promise to keep. These tests run the real protocol on a
real socket and fail, naming what moved, when a uvicorn release changes any of them.
(Its behaviour, the head deadline, the caps, pipelining, is tested against real servers in
test_hostile.py.)"""

from __future__ import annotations

import asyncio
import inspect
import socket
from importlib.metadata import version
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from signgate.gateway import GatewayConfig, KeyConfig
from signgate.gateway.asgi import ABORT, CLIENT_LOST, COALESCE
from signgate.gateway.protocol import GatewayHttpProtocol, protocol_class

#: Methods of HttpToolsProtocol the subclass overrides: a rename would leave ours never called.
OVERRIDDEN = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "pause_writing",
    "resume_writing",
    "send_400_response",
    "_unsupported_upgrade_warning",
)

#: Attributes of a connection the subclass reads or rebinds.
CONNECTION_ATTRIBUTES = ("pipeline", "headers", "scope", "cycle", "transport", "loop")

#: Attributes of a request cycle the subclass reads or sets.
CYCLE_ATTRIBUTES = ("response_started", "response_complete", "disconnected", "message_event")


def test_the_installed_uvicorn_is_the_pinned_one() -> None:
    major, minor = (int(part) for part in version("uvicorn").split(".")[:2])
    assert (major, minor) == (0, 55), (
        f"uvicorn {version('uvicorn')} is installed but pyproject.toml pins 0.55.x: run this file's "
        "tests against the new release, fix what they name in signgate/gateway/protocol.py, then move the pin"
    )


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_every_overridden_method_still_exists_in_uvicorn(name: str) -> None:
    assert callable(getattr(HttpToolsProtocol, name, None)), (
        f"uvicorn's HttpToolsProtocol has no {name}() any more: GatewayHttpProtocol.{name} is never called"
    )


def test_uvicorn_still_warns_about_upgrades_through_the_method_we_quiet() -> None:
    source = inspect.getsource(HttpToolsProtocol)
    assert "self._unsupported_upgrade_warning()" in source, (
        "uvicorn no longer calls _unsupported_upgrade_warning(): each upgrade request may log warnings again"
    )


def test_the_protocol_class_is_per_configuration() -> None:
    key = KeyConfig("app", ("s",))
    a = protocol_class(GatewayConfig(keys={"app": key}, header_timeout=1.5, max_header_bytes=1000))
    b = protocol_class(GatewayConfig(keys={"app": key}, header_timeout=7.0))
    assert issubclass(a, GatewayHttpProtocol) and issubclass(b, GatewayHttpProtocol)
    assert (a.header_timeout, b.header_timeout) == (1.5, 7.0)
    assert a.max_head_bytes < b.max_head_bytes
    assert GatewayHttpProtocol.header_timeout == 10.0  # the base class is never changed


def test_a_real_connection_has_every_name_the_subclass_reads() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        protocol = seen["protocol"]
        seen["connection"] = {name: hasattr(protocol, name) for name in CONNECTION_ATTRIBUTES}
        cycle = protocol.cycle
        seen["cycle_type"] = type(cycle)
        seen["cycle"] = {name: hasattr(cycle, name) for name in CYCLE_ATTRIBUTES}
        seen["pipeline"] = type(protocol.pipeline).__name__
        seen["extensions"] = sorted(scope.get("extensions", {}))
        seen["started_before"] = cycle.response_started
        await send({"type": "http.response.start", "status": 204, "headers": []})
        seen["started_after"] = cycle.response_started
        await send({"type": "http.response.body", "body": b""})
        seen["complete_after"] = cycle.response_complete

    async def main() -> bytes:
        config = uvicorn.Config(app, lifespan="off", log_level="warning")
        config.load()
        cls = protocol_class(GatewayConfig(keys={"app": KeyConfig("app", ("s",))}))
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()

        def factory() -> GatewayHttpProtocol:
            protocol = cls(config=config, server_state=ServerState(), app_state={})
            seen["protocol"] = protocol
            return protocol

        transport, _ = await loop.connect_accepted_socket(factory, ours)
        reader, writer = await asyncio.open_connection(sock=theirs)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        transport.close()
        await asyncio.sleep(0)
        return answer

    answer = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 204"), answer
    missing = [name for name, present in seen["connection"].items() if not present]
    assert not missing, f"uvicorn's HttpToolsProtocol no longer has {missing}"
    assert seen["cycle_type"] is RequestResponseCycle
    missing = [name for name, present in seen["cycle"].items() if not present]
    assert not missing, f"uvicorn's RequestResponseCycle no longer has {missing}"
    assert seen["pipeline"] == "deque", "uvicorn's pipeline is no longer a deque: on_response_complete reads [-1]"
    assert (seen["started_before"], seen["started_after"], seen["complete_after"]) == (False, True, True), (
        "uvicorn's cycle no longer tracks response_started / response_complete as the protocol expects"
    )
    assert seen["extensions"] == sorted([ABORT, CLIENT_LOST, COALESCE])


# -- the coalesced head: one write for a small answer's head and body -----------------------------


def _serve_one(app: Any, request: bytes, steps: Any) -> list[bytes]:
    """Run ``app`` under the configured protocol on a real socket pair, send ``request``, and
    call ``steps(read_now, proceed)`` to look at what arrived while the app waits; returns what
    the peer received at each look and at the end."""

    async def main() -> list[bytes]:
        config = uvicorn.Config(app, lifespan="off", log_level="warning")
        config.load()
        cls = protocol_class(GatewayConfig(keys={"app": KeyConfig("app", ("s",))}))
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: cls(config=config, server_state=ServerState(), app_state={}), ours)
        await loop.sock_sendall(theirs, request)
        seen: list[bytes] = []

        def read_now() -> bytes:
            try:
                return theirs.recv(65536)
            except BlockingIOError:
                return b""

        await steps(read_now, seen)
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

    async def steps(read_now: Any, seen: list[bytes]) -> None:
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

    async def nothing(read_now: Any, seen: list[bytes]) -> None:
        return None

    (answer,) = _serve_one(app, b"HEAD / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", nothing)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n")


def test_a_held_head_is_sent_before_a_break_off() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"][COALESCE]()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        scope["extensions"][ABORT]()

    async def nothing(read_now: Any, seen: list[bytes]) -> None:
        return None

    (answer,) = _serve_one(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", nothing)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n")  # then the connection closed


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
