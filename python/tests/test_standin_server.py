"""The stand-in server, tested through a real uvicorn on a loopback socket with the openai client."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import uvicorn

from signgate.standin import PLAIN_ANSWER, StandinApp, create_app

KEY = "sk-standin-test-4f1c"  # not a real key; tests check it is never echoed
CAR_SCHEMA = json.loads((Path(__file__).parent / "standin_car_schema.json").read_text())
CAR_FORMAT = {"type": "json_schema", "json_schema": {"name": "car_filters", "schema": CAR_SCHEMA, "strict": False}}


@dataclass
class Running:
    url: str
    app: StandinApp

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=10)

    def get(self, path: str) -> tuple[int, Any]:
        return http(f"{self.url}{path}")

    def stats(self) -> dict[str, int]:
        status, body = self.get("/_standin/stats")
        assert status == 200
        return dict(body)


def http(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def standin() -> Iterator[Running]:
    app = create_app(KEY, chunk_delay=0.002)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:

        def healthy() -> bool:
            try:
                return http(f"{url}/healthz") == (200, {"status": "ok"})
            except OSError:
                return False

        wait_until(healthy, timeout=10)
        yield Running(url, app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def running(standin: Running) -> Iterator[Running]:
    """The module's server, with its timing put back after each test."""
    delay, chunk_delay = standin.app.delay, standin.app.chunk_delay
    yield standin
    standin.app.delay, standin.app.chunk_delay = delay, chunk_delay


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Extract car search filters."}, {"role": "user", "content": text}]


def test_health(running: Running) -> None:
    assert running.get("/healthz") == (200, {"status": "ok"})


def test_non_streaming_fills_the_schema(running: Running) -> None:
    with running.client() as client:
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("crossover under 30k"), response_format=CAR_FORMAT
        )
    assert answer.object == "chat.completion"
    assert answer.model == "gpt-4o-mini"
    assert answer.choices[0].finish_reason == "stop"
    content = answer.choices[0].message.content
    assert content is not None
    assert json.loads(content) == {"filters": {"body": "suv", "price_max": 30000}}
    assert answer.usage is not None
    assert answer.usage.completion_tokens == -(-len(content) // 4)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_without_response_format_it_says_what_it_is(running: Running) -> None:
    with running.client() as client:
        answer = client.chat.completions.create(model="m", messages=ask("What is the capital of France?"))
    assert answer.choices[0].message.content == PLAIN_ANSWER
    assert "not a language model" in PLAIN_ANSWER


def test_streaming_with_usage(running: Running) -> None:
    with running.client() as client:
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=ask("AWD Subaru Outback under $28k with less than 60k miles"),
                response_format=CAR_FORMAT,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 10 and all(len(p) <= 4 for p in pieces)  # fields fill in a few characters at a time
    content = "".join(pieces)
    jsonschema.validate(json.loads(content), CAR_SCHEMA)
    assert json.loads(content)["filters"]["mileage_max"] == 60000
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == -(-len(content) // 4)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def raw_stream(url: str, body: dict[str, Any], key: str = KEY) -> socket.socket:
    """Send a chat request over a raw socket and return the socket, response unread."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


def dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2 :]


def test_raw_stream_is_well_formed_sse_ending_with_done(running: Running) -> None:
    body = {"model": "m", "messages": ask("hi"), "stream": True}
    with raw_stream(running.url, body) as sock:
        data = read_until(sock, b"\r\n0\r\n\r\n")
    head, _, chunked = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: text/event-stream" in head.lower()
    events = dechunk(chunked).decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    parsed = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-2])
    assert {p["object"] for p in parsed} == {"chat.completion.chunk"}
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in parsed) == PLAIN_ANSWER
    assert all("usage" not in p for p in parsed)  # only with stream_options.include_usage


def test_client_disconnect_mid_stream_is_counted(running: Running) -> None:
    running.app.chunk_delay = 0.2  # slow enough that the client leaves long before the end
    before = running.stats()
    body = {"model": "m", "messages": ask("hi"), "stream": True}
    with raw_stream(running.url, body) as sock:
        first = read_until(sock, b'"content": "This"')
        assert b'"content": "This"' in first
    wait_until(lambda: running.stats()["streams_disconnected"] == before["streams_disconnected"] + 1)
    after = running.stats()
    assert after["streams_started"] == before["streams_started"] + 1
    assert after["streams_completed"] == before["streams_completed"]


def test_disconnect_during_delay_is_counted(running: Running) -> None:
    running.app.delay = 30.0
    before = running.stats()
    with raw_stream(running.url, {"model": "m", "messages": ask("hi"), "stream": True}) as sock:
        read_until(sock, b'"role": "assistant"')
    wait_until(lambda: running.stats()["streams_disconnected"] == before["streams_disconnected"] + 1)


def test_completed_stream_is_counted(running: Running) -> None:
    before = running.stats()
    with running.client() as client:
        list(client.chat.completions.create(model="m", messages=ask("hi"), stream=True))
    after = running.stats()
    assert after["streams_completed"] == before["streams_completed"] + 1
    assert after["streams_disconnected"] == before["streams_disconnected"]
    assert after["requests"] == before["requests"] + 1


def test_delay_config_holds_back_the_first_content(running: Running) -> None:
    status, config = http(f"{running.url}/_standin/config", data=json.dumps({"delay": 0.4}).encode())
    assert (status, config["delay"]) == (200, 0.4)
    assert running.get("/_standin/config")[1]["delay"] == 0.4
    with running.client() as client:
        start = time.monotonic()
        stream = client.chat.completions.create(model="m", messages=ask("hi"), stream=True)
        arrivals = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - start)
    assert arrivals[0] >= 0.4


def test_streamed_chunks_arrive_as_they_are_sent(running: Running) -> None:
    running.app.chunk_delay = 0.03
    with running.client() as client:
        stream = client.chat.completions.create(model="m", messages=ask("hi"), stream=True)
        arrivals = [time.monotonic() for c in stream if c.choices and c.choices[0].delta.content]
    # PLAIN_ANSWER is about 45 chunks 30 ms apart: a buffered response would arrive all at once.
    assert arrivals[-1] - arrivals[0] >= 0.5


@pytest.mark.parametrize(
    "update",
    [{"delay": -1}, {"delay": "2"}, {"delay": True}, {"delay": 10_000}, {"speed": 1}, [1]],
    ids=["negative", "string", "bool", "too-long", "unknown", "not-object"],
)
def test_config_rejects_bad_updates(running: Running, update: object) -> None:
    status, body = http(f"{running.url}/_standin/config", data=json.dumps(update).encode())
    assert status == 400
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert running.app.delay == 0.0


def test_wrong_key_is_an_authentication_error(running: Running) -> None:
    before = running.stats()
    with running.client("sk-wrong") as client, pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="m", messages=ask("hi"))
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert running.stats()["rejected"] == before["rejected"] + 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {KEY}x"}],
    ids=["missing", "basic", "empty", "longer"],
)
def test_401_is_openai_shaped_and_never_echoes_the_key(running: Running, headers: dict[str, str]) -> None:
    body = json.dumps({"model": "m", "messages": ask("hi")}).encode()
    status, error = http(f"{running.url}/v1/chat/completions", data=body, headers=headers)
    assert status == 401
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["type"] == "invalid_request_error"
    assert KEY not in json.dumps(error)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (json.dumps({"messages": ask("hi")}).encode(), "model"),
        (json.dumps({"model": "m"}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": []}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": [{"role": "robot", "content": "x"}]}).encode(), "messages[0].role"),
        (json.dumps({"model": "m", "messages": [{"role": "user", "content": 5}]}).encode(), "messages[0].content"),
        (json.dumps({"model": "m", "messages": ask("x"), "stream": "yes"}).encode(), "stream"),
        (
            json.dumps({"model": "m", "messages": ask("x"), "stream_options": {"include_usage": True}}).encode(),
            "stream_options",
        ),
        (json.dumps({"model": "m", "messages": ask("x"), "response_format": {"type": "xml"}}).encode(), None),
        (
            json.dumps(
                {"model": "m", "messages": ask("x"), "response_format": {"type": "json_schema", "json_schema": {}}}
            ).encode(),
            "response_format.json_schema.name",
        ),
        (json.dumps({"model": "m", "messages": ask("x"), "n": 3}).encode(), "n"),
    ],
    ids=[
        "bad-json",
        "not-object",
        "no-model",
        "no-messages",
        "empty-messages",
        "bad-role",
        "bad-content",
        "bad-stream",
        "options-without-stream",
        "bad-format",
        "schema-without-name",
        "n",
    ],
)
def test_bad_requests_get_openai_shaped_400s(running: Running, body: bytes, param: str | None) -> None:
    status, error = http(f"{running.url}/v1/chat/completions", data=body, headers={"Authorization": f"Bearer {KEY}"})
    assert status == 400
    assert set(error["error"]) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["error"]["param"] == param


def test_bad_request_through_the_client(running: Running) -> None:
    with running.client() as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])


def test_models_list(running: Running) -> None:
    with running.client() as client:
        assert [m.id for m in client.models.list()] == ["signgate-standin"]


def test_unknown_path_and_method(running: Running) -> None:
    status, body = running.get("/v1/embeddings")
    assert status == 404 and body["error"]["code"] == "unknown_url"
    status, body = running.get("/v1/chat/completions")
    assert status == 405 and "POST" in body["error"]["message"]


def test_oversized_body_is_refused(running: Running) -> None:
    body = json.dumps({"model": "m", "messages": ask("x" * (1 << 20))}).encode()
    status, error = http(f"{running.url}/v1/chat/completions", data=body, headers={"Authorization": f"Bearer {KEY}"})
    assert status == 413 and error["error"]["code"] == "request_too_large"


def call_directly(app: StandinApp, method: str, path: str, client: tuple[str, int] | None) -> tuple[int, Any]:
    """Drive the ASGI app in-process, to give it client addresses no loopback socket can have."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "client": client}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        (("127.0.0.1", 5000), True),
        (("127.8.9.10", 5000), True),
        (("::1", 5000), True),
        (("::ffff:127.0.0.1", 5000), True),
        (("10.1.2.3", 5000), False),
        (("::ffff:10.1.2.3", 5000), False),
        (("not-an-ip", 5000), False),
        (None, False),
    ],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/_standin/stats"), ("POST", "/_standin/config")])
def test_admin_endpoints_answer_loopback_only(
    client: tuple[str, int] | None, allowed: bool, method: str, path: str
) -> None:
    status, body = call_directly(create_app(KEY), method, path, client)
    if allowed:
        assert status == 200
    else:
        assert (status, body["error"]["code"]) == (403, "forbidden")


def test_app_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="api_key"):
        create_app("")
    with pytest.raises(ValueError, match="delay"):
        create_app(KEY, delay=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        create_app(KEY, chunk_size=0)
