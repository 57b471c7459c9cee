"""The policy step and the accounting step (signgate.gateway.accounting): ``read_json`` reads a
body once, strictly where a control reads it; ``Accounts`` takes a finished answer's tokens to
the metrics, the token budgets (a real MemoryStore), the usage hook and the usage webhook (a real
HTTP server on a socket)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgi_client import Peer
from servers import free_port

from signgate import Policy
from signgate.errors import AtCapacity, InvalidJSON, LimitExceeded, PolicyViolation, UnsupportedEncoding
from signgate.extensions import PolicyRules
from signgate.gateway.accounting import Accounts, claims_json, read_json
from signgate.gateway.admission import NO_EXTENSIONS, Admitter, Extensions, limit_scopes
from signgate.gateway.body import Body, BufferBudget, read_body
from signgate.gateway.config import GatewayConfig, KeyConfig
from signgate.gateway.metrics import Metrics
from signgate.gateway.request import read_head
from signgate.gateway.store import Limits, MemoryStore
from signgate.gateway.usage import UsageRecord, UsageTap
from signgate.providers import find_upstream

CHAT = {"model": "gpt-x", "messages": [{"role": "user", "content": "hello there"}]}
JSON = {"content-type": "application/json"}


def read_chat(body: Body, headers: Mapping[str, str], ext: Extensions, wants_usage: bool) -> UsageTap | None:
    """read_json for a chat-completions request, the API these tests speak."""
    return read_json(body, headers, ext, wants_usage, "POST", "/v1/chat/completions")


def body_of(data: bytes, budget: BufferBudget | None = None) -> Body:
    """``data`` as the body step reads it, holding its bytes against ``budget``."""

    async def main() -> Body:
        head = read_head({"method": "POST", "path": "/", "query_string": b"", "headers": []})
        return await read_body(
            Peer(data).receive, head, False, budget or BufferBudget(2**20), max_body=2**20, timeout=10
        )

    return asyncio.run(main())


def policy_ext(**rules: Any) -> Extensions:
    return Extensions(policy=PolicyRules.from_header(Policy(**rules).header()))


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- read_json: what is read, and how strictly ------------------------------------------------------


def test_no_body_and_no_control_means_no_tap() -> None:
    assert read_chat(body_of(b""), {}, NO_EXTENSIONS, False) is None


def test_no_body_under_a_control_is_still_accounted() -> None:
    tap = read_chat(body_of(b""), {}, NO_EXTENSIONS, True)
    assert tap is not None and (tap.model, tap.prompt_chars) == (None, 0)


def test_for_metrics_only_any_reading_will_do_and_nothing_is_refused_or_rewritten() -> None:
    lenient = b'{"model": "a", "model": "gpt-x", "messages": []}'  # duplicate keys: strict reading refuses
    body = body_of(lenient)
    tap = read_chat(body, {"content-encoding": "gzip", **JSON}, NO_EXTENSIONS, False)
    assert tap is not None and tap.model == "gpt-x"
    assert body.data == lenient


@pytest.mark.parametrize("data", [b"\x00\x01binary", b"{not json", b"[" * 100_000])
def test_for_metrics_only_an_unreadable_body_is_counted_by_its_size(data: bytes) -> None:
    tap = read_chat(body_of(data), JSON, NO_EXTENSIONS, False)
    assert tap is not None and tap.prompt_chars == len(data)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"model": "a", "model": "b"}', "model"),
        (b'{"model": "m", "temperature": NaN}', "NaN"),
        (b'{"model": "m"} trailing', ""),
    ],
)
@pytest.mark.parametrize("control", ["usage", "policy"])
def test_under_a_control_a_body_that_is_not_strict_json_is_refused(data: bytes, fragment: str, control: str) -> None:
    ext = policy_ext(models=["m"]) if control == "policy" else NO_EXTENSIONS
    with pytest.raises(InvalidJSON) as refused:
        read_chat(body_of(data), JSON, ext, control == "usage")
    assert (refused.value.status, refused.value.code) == (400, "invalid_json")
    assert fragment in refused.value.message


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate, identity", "GZIP"])
def test_under_a_control_a_compressed_body_is_refused_naming_its_encoding(coding: str) -> None:
    with pytest.raises(UnsupportedEncoding) as refused:
        read_chat(body_of(encoded(CHAT)), {"content-encoding": coding, **JSON}, NO_EXTENSIONS, True)
    assert (refused.value.status, refused.value.code) == (415, "unsupported_encoding")
    assert repr(coding.lower()) in refused.value.message and "uncompressed" in refused.value.message


@pytest.mark.parametrize("coding", ["", "identity", " Identity\t"])
def test_an_identity_encoding_is_no_encoding(coding: str) -> None:
    tap = read_chat(body_of(encoded(CHAT)), {"content-encoding": coding, **JSON}, NO_EXTENSIONS, True)
    assert tap is not None and tap.model == "gpt-x"


def test_under_a_control_a_body_that_is_not_json_is_counted_by_its_size() -> None:
    form = b"model=gpt-x&prompt=hello"
    tap = read_chat(body_of(form), {"content-type": "application/x-www-form-urlencoded"}, NO_EXTENSIONS, True)
    assert tap is not None and (tap.model, tap.prompt_chars) == (None, len(form))


def test_under_a_control_another_spelling_of_a_field_is_refused() -> None:
    with pytest.raises(InvalidJSON) as refused:
        read_chat(body_of(encoded({**CHAT, "Model": "gpt-cheap"})), JSON, NO_EXTENSIONS, True)
    assert "another spelling of 'model'" in refused.value.message


def test_the_policy_is_enforced() -> None:
    with pytest.raises(PolicyViolation) as refused:
        read_chat(body_of(encoded({**CHAT, "model": "gpt-big"})), JSON, policy_ext(models=["gpt-x"]), False)
    assert (refused.value.status, refused.value.rule) == (403, "models")


def test_a_body_the_policy_changes_is_written_back_and_held_at_its_new_size() -> None:
    budget = BufferBudget(2**20)
    body = body_of(encoded(CHAT), budget)
    tap = read_chat(body, JSON, policy_ext(models=["gpt-x"], max_tokens=50), False)
    assert tap is not None
    assert json.loads(body.data)["max_tokens"] == 50
    assert budget.used == body.held == len(body.data)


def test_a_body_that_grows_past_the_buffer_budget_is_refused() -> None:
    data = encoded(CHAT)
    budget = BufferBudget(len(data) + 5)
    body = body_of(data, budget)
    with pytest.raises(AtCapacity):
        read_chat(body, JSON, policy_ext(max_tokens=50), False)


def test_a_streamed_chat_is_asked_for_usage_and_the_extra_chunk_marked_for_stripping() -> None:
    body = body_of(encoded({**CHAT, "stream": True}))
    tap = read_chat(body, JSON, NO_EXTENSIONS, True)
    assert tap is not None and tap.strip_usage_chunk
    assert json.loads(body.data)["stream_options"] == {"include_usage": True}


def test_a_stream_flag_that_is_not_a_boolean_is_refused_where_usage_is_needed() -> None:
    with pytest.raises(InvalidJSON, match="stream must be true or false"):
        read_chat(body_of(encoded({**CHAT, "stream": "true"})), JSON, NO_EXTENSIONS, True)


@pytest.mark.parametrize(
    ("data", "content_type", "claims"),
    [
        (b'{"a": 1}', "", True),
        (b" \r\n\t[1]", "", True),
        (b"hello", "application/json; charset=utf-8", True),
        (b"hello", "application/vnd.api+JSON", True),
        (b"\xef\xbb\xbf{}", "text/plain", True),  # a UTF-8 byte-order mark: lenient decoders read JSON
        ('"a"'.encode("utf-16-le"), "", True),  # UTF-16 without a media type: Python's json reads it
        ('"a"'.encode("utf-16-le"), "audio/wav", False),
        (b"model=x", "application/x-www-form-urlencoded", False),
        (b"RIFF....WAVE", "audio/wav", False),
    ],
)
def test_which_bodies_claim_to_be_json(data: bytes, content_type: str, claims: bool) -> None:
    assert claims_json(data, content_type) is claims


# -- Accounts: where usage goes ----------------------------------------------------------------------

NOW = 1_800_000_000.0
BUDGETED = KeyConfig("app", ("s",), user_limits=Limits(tokens_per_day=100))
PLAIN = KeyConfig("plain", ("s",))


def answered_tap(usage: dict[str, int] | None, model: str = "gpt-x") -> UsageTap:
    """A tap that watched a JSON chat answer, with ``usage`` reported or not."""
    tap, _ = UsageTap.for_request({**CHAT, "model": model}, 0, False, find_upstream("POST", "/v1/chat/completions"))
    tap.start("application/json")
    answer: dict[str, Any] = {"choices": [{"message": {"role": "assistant", "content": "x" * 40}}]}
    if usage is not None:
        answer["usage"] = usage
    tap.feed(encoded(answer))
    return tap


class Accounting:
    """An Accounts with its metrics and a real memory store, as the gateway builds them."""

    def __init__(self, config: GatewayConfig) -> None:
        self.metrics = Metrics()
        self.store = MemoryStore()
        self.admitter = Admitter(lambda: self.store, self.metrics, fail_open=False, clock=lambda: NOW)
        self.accounts = Accounts(config, self.metrics, self.admitter, lambda: NOW)

    async def account(self, key: KeyConfig, tap: UsageTap, ext: Extensions = NO_EXTENSIONS, status: int = 200) -> None:
        scopes = limit_scopes(key, ext)
        await self.accounts.account("req-1", status, "ok", key, ext, scopes, tap)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_reported_tokens_go_to_the_metrics_per_key() -> None:
    async def test() -> None:
        book = Accounting(GatewayConfig(keys={"plain": PLAIN}))
        await book.account(PLAIN, answered_tap({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}))
        await book.account(PLAIN, answered_tap({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))
        await book.account(PLAIN, answered_tap(None))
        assert book.metrics.tokens[("plain", False)] == [8, 4]
        prompt, completion = book.metrics.tokens[("plain", True)]  # estimated: about 4 characters a token
        assert prompt >= 1 and completion == 10

    run(test)


def test_tokens_are_charged_to_the_budgets_they_count_against() -> None:
    async def test() -> None:
        book = Accounting(GatewayConfig(keys={"app": BUDGETED}))
        ext = Extensions(user="u-1")
        scopes = limit_scopes(BUDGETED, ext)
        await book.admitter.admit(None, scopes)
        await book.account(BUDGETED, answered_tap({"prompt_tokens": 60, "completion_tokens": 40}), ext)
        with pytest.raises(LimitExceeded) as refused:
            await book.admitter.admit(None, scopes)
        assert refused.value.code == "tokens_per_day_exceeded"
        # another user of the key has a budget of its own
        other = await book.admitter.admit(None, limit_scopes(BUDGETED, Extensions(user="u-2")))
        assert other is not None and other.admitted

    run(test)


def test_only_keys_with_budgets_or_usage_sinks_are_accounted() -> None:
    keys = {"app": BUDGETED, "plain": PLAIN}
    book = Accounting(GatewayConfig(keys=keys))
    assert book.accounts.usage_keys == {"app"}
    assert Accounting(GatewayConfig(keys=keys, usage_hook=print)).accounts.usage_keys == {"app", "plain"}
    webhook = GatewayConfig(keys=keys, usage_webhook="http://127.0.0.1:1/usage")
    assert Accounting(webhook).accounts.usage_keys == {"app", "plain"}


def test_the_usage_hook_gets_one_record_per_request() -> None:
    records: list[UsageRecord] = []

    async def test() -> None:
        book = Accounting(GatewayConfig(keys={"app": BUDGETED}, usage_hook=records.append))
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        await book.account(BUDGETED, answered_tap(usage, model="m" * 1000), Extensions(user="u", tenant="t"), 201)

    run(test)
    [record] = records
    assert (record.request_id, record.key_id, record.tenant, record.user) == ("req-1", "app", "t", "u")
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (7, 3, 10)
    assert (record.estimated, record.status, record.code, record.model) == (False, 201, "ok", "m" * 256)


def test_an_async_hook_runs_in_the_background_and_a_failing_hook_fails_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    async def hook(record: UsageRecord) -> None:
        await asyncio.sleep(0)
        seen.append(record.key_id)

    def broken(record: UsageRecord) -> None:
        raise RuntimeError("the billing system is down")

    async def test() -> None:
        book = Accounting(GatewayConfig(keys={"plain": PLAIN}, usage_hook=hook))
        await book.account(PLAIN, answered_tap(None))
        await asyncio.gather(*book.accounts.background)
        failing = Accounting(GatewayConfig(keys={"plain": PLAIN}, usage_hook=broken))
        await failing.account(PLAIN, answered_tap(None))
        assert failing.metrics.tokens[("plain", True)]  # counted all the same

    with caplog.at_level(logging.ERROR, logger="signgate.gateway"):
        run(test)
    assert seen == ["plain"]
    assert "the usage hook failed" in caplog.text


# -- the usage webhook, on a real HTTP server ---------------------------------------------------------


class Webhook:
    """An HTTP server in a thread that records each POSTed JSON body and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.records: list[dict[str, Any]] = []
        received = self.records
        answer = status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/usage"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.close()


@pytest.fixture
def failing_webhook() -> Iterator[Webhook]:
    server = Webhook(status=500)
    yield server
    server.close()


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def test_the_webhook_receives_each_record_in_order(webhook: Webhook) -> None:
    async def test() -> None:
        book = Accounting(GatewayConfig(keys={"app": BUDGETED}, usage_webhook=webhook.url))
        for user in ("u-1", "u-2", "u-3"):
            await book.account(
                BUDGETED, answered_tap({"prompt_tokens": 1, "completion_tokens": 2}), Extensions(user=user)
            )
        await until(lambda: len(webhook.records) == 3)
        await book.accounts.aclose()
        assert book.metrics.webhook_failed == 0

    run(test)
    assert [r["user"] for r in webhook.records] == ["u-1", "u-2", "u-3"]
    assert set(webhook.records[0]) == set(UsageRecord.__dataclass_fields__)
    assert webhook.records[0]["total_tokens"] == 3


def test_a_webhook_that_refuses_or_is_unreachable_is_counted(failing_webhook: Webhook) -> None:
    async def test() -> None:
        refusing = Accounting(GatewayConfig(keys={"plain": PLAIN}, usage_webhook=failing_webhook.url))
        await refusing.account(PLAIN, answered_tap(None))
        await refusing.account(PLAIN, answered_tap(None))
        await until(lambda: refusing.metrics.webhook_failed == 2)
        await refusing.accounts.aclose()
        unreachable = Accounting(
            GatewayConfig(keys={"plain": PLAIN}, usage_webhook=f"http://127.0.0.1:{free_port()}/usage")
        )
        await unreachable.account(PLAIN, answered_tap(None))
        await until(lambda: unreachable.metrics.webhook_failed == 1)
        await unreachable.accounts.aclose()

    run(test)
    assert len(failing_webhook.records) == 2


def test_records_beyond_the_queue_are_dropped_and_counted() -> None:
    """A webhook that cannot keep up must not grow the gateway's memory without bound."""

    async def test() -> None:
        book = Accounting(GatewayConfig(keys={"plain": PLAIN}, usage_webhook=f"http://127.0.0.1:{free_port()}/"))
        tap = answered_tap(None)
        for _ in range(10_003):  # nothing awaits in between: the delivery task has not run yet
            await book.account(PLAIN, tap)
        assert book.metrics.webhook_dropped == 3
        await book.accounts.aclose()

    run(test)
