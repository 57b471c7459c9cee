"""Every way once found around an abuse control, tried again against real gateway processes.

Each test is one class of bypass: the bytes a hostile browser (or a hostile upstream) sends, and
what must happen instead: a JSON refusal with a code before anything reaches the upstream, or a
charge in the usage record. Answers and gateway logs are checked for the API key and the secret.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from gateway_client import Reply, call, send, usage_of
from raw_http import Response, exchange, parse_responses, request_bytes
from servers import HERE, Server, free_port, start_gateway
from stores import unique

from signgate import Policy, SignedRequest, Signer
from signgate.gateway.admission import Extensions, limit_scopes
from signgate.gateway.config import KeyConfig
from signgate.gateway.store import Limits

SECRET = "bypass-test-secret"
API_KEY = "sk-bypass-test-key"
ENV = {"GW_SECRET": SECRET, "UPSTREAM_KEY": API_KEY}
KEY = ["--id", "app", "--secret-env", "GW_SECRET", "--header-env", "Authorization=Bearer ${UPSTREAM_KEY}"]


def start(upstream: Server, *extra: str) -> Server:
    return start_gateway(
        *KEY, "--allow-upstream", f"{upstream.url}/v1/", "--allow-private-upstreams", *extra, env=ENV
    )  # fmt: skip


def stop(server: Server) -> str:
    server.stop()
    log = server.output()
    assert API_KEY not in log and SECRET not in log
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    return log


@pytest.fixture(scope="module")
def billed(upstream: Server) -> Iterator[Server]:
    """A gateway with a budget per user and a usage webhook on the test upstream."""
    server = start(upstream, "--limit", "user.tokens_per_day=1000000", "--usage-webhook", f"{upstream.url}/usage")
    yield server
    stop(server)


@pytest.fixture(scope="module")
def plain(upstream: Server) -> Iterator[Server]:
    server = start(upstream, "--max-body", "64k", "--client-timeout", "20")
    yield server
    stop(server)


def signer(gateway: Server) -> Signer:
    return Signer("app", SECRET, gateway.url)


def requests_upstream(upstream: Server) -> int:
    return int(call("GET", upstream.url + "/stats").json()["requests"])


def chat_body(**extra: object) -> dict[str, object]:
    return {"model": "m", "stream": True, "messages": [{"role": "user", "content": "count to ten"}], **extra}


# -- budgets: every body, every answer shape is charged --------------------------------------------


@pytest.mark.parametrize("prefix", [b"\t", b"\r\n", b"\n \t\r"])
def test_a_body_after_any_json_whitespace_is_charged_from_the_upstreams_usage(
    billed: Server, upstream: Server, prefix: bytes
) -> None:
    user = unique("ws")
    # Signed without its body (as a policy URL is): the browser chooses the bytes.
    req = signer(billed).sign("POST", f"{upstream.url}/v1/chat/completions?pieces=20", user=user)
    reply = send(req, {"Content-Type": "application/json"}, prefix + json.dumps(chat_body()).encode())
    assert reply.status == 200 and b'"usage"' not in reply.body
    assert call("GET", upstream.url + "/v1/last-chat").json()["stream_options"] == {"include_usage": True}
    record = usage_of(upstream.url, user)
    assert (record["total_tokens"], record["estimated"], record["model"]) == (51, False, "m")


def test_a_body_without_a_model_is_charged(billed: Server, upstream: Server) -> None:
    user = unique("no-model")
    req = signer(billed).sign("POST", f"{upstream.url}/v1/chat/completions?pieces=20", user=user)
    body = chat_body()
    del body["model"]
    assert send(req, {"Content-Type": "application/json"}, json.dumps(body)).status == 200
    assert usage_of(upstream.url, user)["total_tokens"] == 51


def test_a_body_that_is_not_json_is_charged_by_its_size(billed: Server, upstream: Server) -> None:
    user = unique("opaque")
    req = signer(billed).sign("POST", f"{upstream.url}/v1/echo", user=user)
    reply = send(req, {"Content-Type": "text/plain"}, "\x0c" + "w" * 400)  # form feed: not JSON whitespace
    assert reply.status == 200
    record = usage_of(upstream.url, user)
    assert record["estimated"] is True and record["prompt_tokens"] == 101


def test_a_body_that_claims_json_but_is_not_strict_json_is_refused(billed: Server, upstream: Server) -> None:
    req = signer(billed).sign("POST", f"{upstream.url}/v1/chat/completions", user=unique("bad"))
    before = requests_upstream(upstream)
    for body in (b"\x0c" + json.dumps(chat_body()).encode(), b'{"model": "m", "model": "n"}', b'{"n": NaN}'):
        reply = send(req, {"Content-Type": "application/json"}, body)
        assert (reply.status, reply.error_code) == (400, "invalid_json"), body
    assert requests_upstream(upstream) == before


def test_a_compressed_body_is_refused_where_a_control_reads_it(billed: Server, plain: Server, upstream: Server) -> None:
    prompt = "x" * 100_000
    body = gzip.compress(json.dumps(chat_body(messages=[{"role": "user", "content": prompt}])).encode())
    # The test upstream, as any aiohttp server, inflates the body: it reads the 100,000-character
    # prompt that a gateway counting the body by its size would charge as a few hundred bytes.
    unbilled = signer(plain).sign("POST", f"{upstream.url}/v1/chat/completions")
    assert send(unbilled, {"Content-Encoding": "gzip"}, body).status == 200
    assert call("GET", upstream.url + "/v1/last-chat").json()["messages"][0]["content"] == prompt
    req = signer(billed).sign("POST", f"{upstream.url}/v1/chat/completions", user=unique("gzip"))
    before = requests_upstream(upstream)
    for content_type in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/json"}):
        reply = send(req, {"Content-Encoding": "gzip", **content_type}, body)
        assert (reply.status, reply.error_code) == (415, "unsupported_encoding"), content_type
    assert requests_upstream(upstream) == before


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_body_that_lenient_decoders_read_as_json_is_read_strictly(
    billed: Server, upstream: Server, encoding: str
) -> None:
    text = json.dumps(chat_body())
    body = text.encode(encoding)
    # What Starlette's Request.json (json.loads of the bytes) reads from this body without a
    # Content-Type, as FastAPI servers do (a UTF-8 byte-order mark, also llama.cpp's server).
    assert json.loads(body) == chat_body()
    req = signer(billed).sign("POST", f"{upstream.url}/v1/chat/completions", user=unique("bom"))
    before = requests_upstream(upstream)
    reply = send(req, {}, body)
    assert (reply.status, reply.error_code) == (400, "invalid_json")
    assert requests_upstream(upstream) == before


@pytest.mark.parametrize("stream", ['"true"', "1", '"yes"'])
def test_a_stream_flag_that_lax_decoders_read_as_true_is_refused(billed: Server, upstream: Server, stream: str) -> None:
    # pydantic (vLLM, most Python servers) reads these as true and streams, without the usage the
    # gateway asks for only when stream is true: the request would be charged by estimate alone.
    body = json.dumps(chat_body()).replace('"stream": true', f'"stream": {stream}')
    req = signer(billed).sign("POST", f"{upstream.url}/v1/chat/completions", user=unique("lax"))
    before = requests_upstream(upstream)
    reply = send(req, {"Content-Type": "application/json"}, body)
    assert (reply.status, reply.error_code) == (400, "invalid_json") and "stream" in reply.json()["error"]["message"]
    assert requests_upstream(upstream) == before


def test_a_usage_record_keeps_a_bounded_model_name(billed: Server, upstream: Server) -> None:
    # Records queue (10,000 of them) while the webhook is slow: the client's model name must not
    # make each one as large as a body.
    user = unique("long-model")
    req = signer(billed).sign("POST", f"{upstream.url}/v1/chat/completions", user=user)
    assert send(req, {"Content-Type": "application/json"}, json.dumps(chat_body(model="m" * 50_000))).status == 200
    assert usage_of(upstream.url, user)["model"] == "m" * 256


@pytest.mark.parametrize("stream", [True, False])
def test_usage_named_as_the_responses_api_names_it_is_read(billed: Server, upstream: Server, stream: bool) -> None:
    # input_tokens and output_tokens, streamed inside the final response.completed event: an
    # answer whose usage is ignored is charged by estimate, which the client's text can steer.
    user = unique("responses")
    req = signer(billed).sign("POST", f"{upstream.url}/v1/responses", user=user)
    reply = send(req, {"Content-Type": "application/json"}, json.dumps({"model": "m", "input": "hi", "stream": stream}))
    assert reply.status == 200
    record = usage_of(upstream.url, user)
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"], record["estimated"]) == (
        7, 3, 10, False,
    )  # fmt: skip


def test_an_answer_of_unexpected_shape_is_relayed_and_charged(billed: Server, upstream: Server) -> None:
    user = unique("odd")
    req = signer(billed).sign("POST", f"{upstream.url}/v1/odd", json=chat_body(), user=user)
    reply = send(req)
    assert reply.status == 200 and reply.body.endswith(b"data: [DONE]\n\n")
    record = usage_of(upstream.url, user)
    assert record["estimated"] is True and record["completion_tokens"] >= 10  # the 40 x's at least


# -- policies: one reading, every spelling, every type, all prompt text ----------------------------


def test_a_policy_holds_against_other_spellings_types_and_roles(plain: Server, upstream: Server) -> None:
    policy = Policy(models=["m"], max_tokens=50, max_user_chars=30)
    req = signer(plain).sign("POST", f"{upstream.url}/v1/chat/completions", policy=policy)
    ok = chat_body()
    assert send(req, {"Content-Type": "application/json"}, json.dumps(ok)).status == 200
    before = requests_upstream(upstream)
    cases: list[tuple[bytes, int, str]] = [
        (json.dumps({**ok, "MODEL": "gpt-4o"}).encode(), 400, "invalid_json"),
        (json.dumps({**ok, "\u017ftream": False}).encode(), 400, "invalid_json"),
        (json.dumps(ok).replace('"model": "m"', '"model": "m", "model": "gpt-4o"').encode(), 400, "invalid_json"),
        (json.dumps({**ok, "n": True}).encode(), 403, "n"),
        (json.dumps({**ok, "max_tokens": True}).encode(), 403, "max_tokens"),
        (json.dumps({**ok, "messages": [{"role": "assistant", "content": "x" * 31}]}).encode(), 403, "max_user_chars"),
        (json.dumps({**ok, "tools": [{"type": "function", "function": {"name": "f", "description": "x" * 31}}]})
         .encode(), 403, "max_user_chars"),
        # prompt material without text: numbers a chat template writes out, messages with no text
        (json.dumps({**ok, "tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer", "enum": list(range(10**8, 10**8 + 2000))}}}}}]})
         .encode(), 403, "max_user_chars"),
        (json.dumps({**ok, "messages": [{"role": "user", "content": ""}] * 1000}).encode(), 403, "max_user_chars"),
        # the names llama.cpp's server reads for max_tokens and n
        (json.dumps({**ok, "max_tokens": 50, "n_predict": -1}).encode(), 403, "max_tokens"),
        (json.dumps({**ok, "n_cmpl": 8}).encode(), 403, "n"),
    ]  # fmt: skip
    for body, status, code in cases:
        reply = send(req, {"Content-Type": "application/json"}, body)
        error = reply.json()["error"]
        assert (reply.status, error.get("rule", error["code"])) == (status, code), body
    assert requests_upstream(upstream) == before


def test_a_policy_field_allowlist_refuses_cost_fields(plain: Server, upstream: Server) -> None:
    policy = Policy(models=["m"], fields=["model", "messages", "stream"])
    req = signer(plain).sign("POST", f"{upstream.url}/v1/chat/completions", policy=policy)
    assert send(req, {"Content-Type": "application/json"}, json.dumps(chat_body())).status == 200
    for cost in ({"service_tier": "priority"}, {"reasoning_effort": "high"}, {"modalities": ["text", "audio"]}):
        reply = send(req, {"Content-Type": "application/json"}, json.dumps(chat_body(**cost)))
        assert (reply.status, reply.json()["error"]["rule"]) == (403, "fields")


# -- bound headers: forwarded exactly as verified, never dropped -----------------------------------


def record_headers(reply: Reply) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in reply.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def test_a_bound_header_named_in_connection_is_still_forwarded(plain: Server, upstream: Server) -> None:
    req = signer(plain).sign("GET", f"{upstream.url}/v1/record", headers={"OpenAI-Organization": "org-bound"})
    reply = send(req, {"Connection": "keep-alive, openai-organization, x-unbound", "X-Unbound": "1"})
    assert reply.status == 200
    headers = record_headers(reply)
    assert headers["openai-organization"] == ["org-bound"] and "x-unbound" not in headers


def _raw_signed(req: SignedRequest, *lines: bytes) -> bytes:
    target = "/?" + req.url.split("?", 1)[1]
    head = f"{req.method} {target} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n".encode()
    return head + b"".join(lines) + b"\r\n"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"OpenAI-Organization: \xa0org-bound\xa0\r\n", "bad_signature"),  # no-break spaces are not whitespace
        (b"OpenAI-Organization: org-bound\x85\r\n", "bad_signature"),
        (b"OpenAI-Organization: org-bound\r\nOpenAI-Organization: org-bound\r\n", "malformed"),
    ],
)
def test_a_bound_header_with_other_bytes_around_it_or_twice_is_refused(
    plain: Server, upstream: Server, line: bytes, code: str
) -> None:
    req = signer(plain).sign("GET", f"{upstream.url}/v1/record", headers={"OpenAI-Organization": "org-bound"})
    before = requests_upstream(upstream)
    [response] = parse_responses(exchange(plain.port, _raw_signed(req, line)))
    assert response.error_code == code
    assert requests_upstream(upstream) == before


def test_space_and_tab_around_a_bound_value_are_whitespace(plain: Server, upstream: Server) -> None:
    req = signer(plain).sign("GET", f"{upstream.url}/v1/record", headers={"OpenAI-Organization": "org-bound"})
    [response] = parse_responses(exchange(plain.port, _raw_signed(req, b"OpenAI-Organization: \t org-bound \t\r\n")))
    assert response.status == 200
    forwarded = [v for k, v in json.loads(response.body)["headers"] if k.lower() == "openai-organization"]
    assert forwarded == ["org-bound"]


# -- request and answer headers ---------------------------------------------------------------------


def test_routing_and_override_headers_never_reach_the_upstream(plain: Server, upstream: Server) -> None:
    req = signer(plain).sign("POST", f"{upstream.url}/v1/record", body="x")
    sent = {
        "X-Forwarded-Prefix": "/admin", "X-Forwarded-Uri": "/admin", "X-Forwarded-Path": "/admin",
        "X-Forwarded-Port": "1", "X-Forwarded-Server": "evil", "X-HTTP-Method-Override": "DELETE",
        "X-HTTP-Method": "DELETE", "X-Method-Override": "DELETE", "X-Original-URL": "/admin",
        "X-Rewrite-URL": "/admin", "X-Original-URI": "/admin", "Forwarded": "for=1.2.3.4", "Via": "1.1 evil",
        "X-Real-IP": "1.2.3.4", "True-Client-IP": "1.2.3.4", "CF-Connecting-IP": "1.2.3.4",
        "X-Signgate-Anything": "1", "X-Original-Host": "evil", "X-Forwarded": "for=1.2.3.4",
        "X-Envoy-Original-Path": "/admin", "X-Envoy-Retry-On": "5xx", "X-Middleware-Subrequest": "middleware",
        "X-Remote-User": "admin", "Remote-User": "admin", "X-Auth-Request-User": "admin", "X-Webauth-User": "admin",
        # CGI-style servers read '_' as '-'
        "X_Forwarded_For": "1.2.3.4", "X_HTTP_Method_Override": "DELETE", "X_Original_URL": "/admin",
        "X-Kept": "yes",
    }  # fmt: skip
    headers = record_headers(send(req, sent))
    assert [name for name in headers if name.lower() in {k.lower() for k in sent}] == ["x-kept"]


def test_a_bound_or_key_header_has_no_second_spelling_upstream(upstream: Server) -> None:
    # A WSGI, Rack or PHP upstream reads X_User_Id as X-User-Id: beside the bound value, or
    # instead of it where the server keeps the last one.
    gateway = start(upstream, "--header", "X_Org_Id: org-of-the-key")
    try:
        req = signer(gateway).sign("GET", f"{upstream.url}/v1/record", headers={"X-User-Id": "42", "X_Team": "t1"})
        reply = send(req, {"X_User_Id": "1", "x_user-id": "2", "X-Team": "t2", "X-Org-Id": "org-evil"})
    finally:
        stop(gateway)
    spellings = {name: values for name, values in record_headers(reply).items()
                 if name.replace("_", "-") in ("x-user-id", "x-team", "x-org-id")}  # fmt: skip
    assert spellings == {"x-user-id": ["42"], "x_team": ["t1"], "x_org_id": ["org-of-the-key"]}


STRIPPED = [
    "strict-transport-security", "alt-svc", "clear-site-data", "cross-origin-opener-policy", "www-authenticate",
    "access-control-allow-credentials", "set-cookie", "nel", "report-to", "permissions-policy", "x-accel-redirect",
    "x-accel-expires", "x-sendfile", "x-litespeed-location", "surrogate-control", "cdn-cache-control",
]  # fmt: skip
#: Set by the gateway on every relayed answer, once, whatever the upstream says.
OWN = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "access-control-allow-origin": "*",
}


def test_an_upstream_cannot_speak_for_the_gateway_or_its_origin(upstream: Server) -> None:
    gateway = start(upstream, "--cors-origin", "*")
    try:
        req = signer(gateway).sign("GET", f"{upstream.url}/v1/impostor")
        [reply] = parse_responses(exchange(gateway.port, _raw_signed(req, b"Origin: https://app.example\r\n")))
    finally:
        stop(gateway)
    assert reply.status == 401
    names = [name.lower() for name, _ in reply.headers]
    assert "x-signgate-error" not in names and "x-signgate-anything" not in names
    assert reply.header("x-request-id") != "upstream-request-id" and len(reply.header("x-request-id") or "") == 16
    for name in STRIPPED:
        assert name not in names, name
    assert reply.header("x-upstream") == "kept" and reply.header("server") != "not-the-gateway"
    # The upstream's page is never sniffed or run as a page of the gateway's origin.
    assert (reply.header("content-type") or "").startswith("text/html")
    for name, value in OWN.items():
        assert [v for k, v in reply.headers if k.lower() == name] == [value], name


# -- nothing is read for a client without a valid URL ----------------------------------------------


def _declared_body_then_silence(target: str, length: int) -> bytes:
    return f"POST {target} HTTP/1.1\r\nHost: g\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize("case", ["unknown key", "upstream not allowed", "bad signature, body not bound"])
def test_cheap_checks_answer_before_the_body_arrives(plain: Server, upstream: Server, case: str) -> None:
    if case == "unknown key":
        req = Signer("nobody", SECRET, plain.url).sign("POST", f"{upstream.url}/v1/record")
        expected = (401, "unknown_key")
    elif case == "upstream not allowed":
        req = signer(plain).sign("POST", f"{upstream.url}/elsewhere")
        expected = (403, "upstream_not_allowed")
    else:
        req = Signer("app", "not-the-secret", plain.url).sign("POST", f"{upstream.url}/v1/record")
        expected = (401, "bad_signature")
    started = time.monotonic()
    # 60,000 bytes announced, none sent: the answer must not wait for them (the client timeout is 20 s).
    [response] = parse_responses(
        exchange(plain.port, _declared_body_then_silence("/?" + req.url.split("?")[1], 60_000))
    )
    assert (response.status, response.error_code) == expected
    assert time.monotonic() - started < 10


def test_a_worker_holds_at_most_max_buffered_bytes_of_bodies(upstream: Server) -> None:
    gateway = start(upstream, "--max-buffered", "100k", "--max-body", "64k", "--client-timeout", "20")
    try:
        body = "y" * 60_000
        first, second = (signer(gateway).sign("POST", f"{upstream.url}/v1/record", body=body) for _ in range(2))
        with socket.create_connection(("127.0.0.1", gateway.port)) as held:
            head = _declared_body_then_silence("/?" + first.url.split("?")[1], 60_000)
            held.sendall(head + b"y" * 59_999)  # all but one byte: the worker holds them
            time.sleep(0.5)
            refused = send(second)
            assert (refused.status, refused.error_code) == (503, "at_capacity")
            assert refused.headers["retry-after"] == "1"
        deadline = time.monotonic() + 10
        while (reply := send(second)).status == 503 and time.monotonic() < deadline:  # the first let go
            time.sleep(0.1)
        assert reply.status == 200
    finally:
        stop(gateway)


def test_a_body_written_back_longer_counts_against_max_buffered(upstream: Server) -> None:
    gateway = start(upstream, "--max-buffered", "100k", "--max-body", "64k")
    try:
        # 60 KB that the policy writes back (it inserts max_tokens) as 230 KB: 1e15 is written in full.
        body = json.dumps({**chat_body(), "x": [1e15] * 12_000}, separators=(",", ":")).replace(
            "1000000000000000.0", "1e15"
        )
        assert len(body) < 64 * 1024
        req = signer(gateway).sign("POST", f"{upstream.url}/v1/chat/completions", policy=Policy(max_tokens=10))
        before = requests_upstream(upstream)
        reply = send(req, {"Content-Type": "application/json"}, body)
        assert (reply.status, reply.error_code) == (503, "at_capacity")
        assert requests_upstream(upstream) == before
    finally:
        stop(gateway)


def test_a_length_announced_but_not_sent_holds_no_buffer(upstream: Server) -> None:
    # Announcing a length costs nothing: connections that announced whole bodies under forged
    # signatures (a bound body is read before its signature can be checked), and sent none, once
    # held the worker's entire budget, and every body request was refused 503 until they timed out.
    gateway = start(upstream, "--max-buffered", "100k", "--max-body", "64k", "--client-timeout", "20")
    forger = Signer("app", "not-the-secret", gateway.url)
    socks = []
    try:
        for _ in range(4):
            forged = forger.sign("POST", f"{upstream.url}/v1/record", body="y" * 60_000)
            sock = socket.create_connection(("127.0.0.1", gateway.port))
            sock.sendall(_declared_body_then_silence("/?" + forged.url.split("?")[1], 60_000))
            socks.append(sock)
        time.sleep(0.5)
        reply = send(signer(gateway).sign("POST", f"{upstream.url}/v1/record", body="y" * 60_000))
        assert reply.status == 200
    finally:
        for sock in socks:
            sock.close()
        stop(gateway)


# -- local routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/x/metrics", "/metrics/", "/metrics/x", "/x/healthz", "/healthz/"])
def test_metrics_and_health_answer_at_their_exact_paths_only(plain: Server, path: str) -> None:
    reply = call("GET", plain.url + path)
    assert (reply.status, reply.error_code) == (404, "not_found")


def test_metrics_hold_no_tenant_or_user_ids(billed: Server, upstream: Server) -> None:
    user, tenant = unique("secret-user"), unique("secret-tenant")
    req = signer(billed).sign("POST", f"{upstream.url}/v1/chat/completions", json=chat_body(), user=user, tenant=tenant)
    assert send(req).status == 200
    usage_of(upstream.url, user)
    metrics = call("GET", billed.url + "/metrics").body.decode()
    assert "signgate_tokens_total" in metrics and user not in metrics and tenant not in metrics


# -- workers, paths, scopes, upgrades ---------------------------------------------------------------


def test_several_workers_with_limits_and_the_memory_store_refuse_to_start(upstream: Server) -> None:
    argv = [sys.executable, "-m", "signgate", "serve", "--port", str(free_port()), *KEY, "--workers", "2",
            "--limit", "user.requests_per_minute=5"]  # fmt: skip
    done = subprocess.run(argv, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--store redis://" in done.stderr and "each would count on its own" in done.stderr


def test_single_use_urls_are_refused_by_several_workers_without_a_shared_store(upstream: Server) -> None:
    gateway = start(upstream, "--workers", "2")
    try:
        once = signer(gateway).sign("GET", f"{upstream.url}/v1/echo", single_use=True)
        replies = [send(once) for _ in range(4)]
        assert {(r.status, r.error_code) for r in replies} == {(503, "store_unavailable")}
        assert "--store redis://" in replies[0].json()["error"]["message"]
        assert send(signer(gateway).sign("GET", f"{upstream.url}/v1/echo")).status == 200
    finally:
        log = stop(gateway)
    assert "single-use URLs are refused" in log


@pytest.mark.parametrize(
    "path", ["/v1/x%2F..%2F..%2Fadmin", "/v1/x%2f..%2fadmin", "/v1/..;/admin", "/v1/x;jsessionid=1/echo",
             "/v1/%252e%252e/admin", "/v1/x%5c..%5cadmin", "/v1/echo%00", "/v1/x%3b/echo",
             "/v1/%u002e%u002e/admin", "/v1/%%32%65%%32%65/admin", "/v1/%c0%ae%c0%ae/admin", "/v1/echo%"],
)  # fmt: skip
def test_encoded_separators_dots_and_semicolons_are_refused_for_allowlisted_keys(
    plain: Server, upstream: Server, path: str
) -> None:
    before = requests_upstream(upstream)
    reply = send(signer(plain).sign("GET", upstream.url + path))
    assert (reply.status, reply.error_code) == (403, "upstream_not_allowed")
    assert requests_upstream(upstream) == before


def test_limit_scopes_of_different_tenant_and_user_pairs_never_share_a_counter(upstream: Server) -> None:
    gateway = start(upstream, "--limit", "user.requests_per_minute=1")
    try:
        run = unique("r")
        first = signer(gateway).sign("GET", f"{upstream.url}/v1/echo", tenant=f"{run}:a", user="b")
        second = signer(gateway).sign("GET", f"{upstream.url}/v1/echo", tenant=run, user="a:b")
        assert [send(first).status, send(second).status] == [200, 200]
        assert send(first).status == 429  # the same pair again: its own counter is spent
    finally:
        stop(gateway)


def test_a_user_of_no_tenant_and_of_an_empty_tenant_have_their_own_counters() -> None:
    key = KeyConfig("app", ("s",), user_limits=Limits(requests_per_minute=1))
    alone = limit_scopes(key, Extensions(user="u"))
    empty_tenant = limit_scopes(key, Extensions(user="u", tenant=""))
    assert alone[0].id != empty_tenant[0].id


WEBSOCKET = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
             ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]  # fmt: skip


def _upgrade(port: int, target: str) -> Response:
    [response] = parse_responses(exchange(port, request_bytes("GET", target, WEBSOCKET)))
    return response


def test_a_websocket_upgrade_is_refused_in_json(plain: Server, upstream: Server) -> None:
    req = signer(plain).sign("GET", f"{upstream.url}/v1/echo")
    before = requests_upstream(upstream)
    for target in ("/?" + req.url.split("?")[1], "/healthz", "/"):
        response = _upgrade(plain.port, target)
        assert (response.status, response.error_code) == (400, "upgrade_not_supported")
        assert json.loads(response.body)["error"]["code"] == "upgrade_not_supported"
    assert requests_upstream(upstream) == before


def test_a_websocket_upgrade_under_a_server_that_upgrades_is_refused_in_json(upstream: Server) -> None:
    port = free_port()
    argv = [sys.executable, str(HERE / "embedded_gateway.py"), str(port), "httptools", "--", *KEY]
    server = Server("embedded", argv, port, env=ENV).wait_healthy()
    try:
        response = _upgrade(port, "/")
        assert (response.status, response.error_code) == (400, "upgrade_not_supported")
    finally:
        server.stop()
    assert "Traceback" not in server.output() and "ERROR" not in server.output()
