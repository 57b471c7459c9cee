"""A real OpenAI-compatible server that nobody here wrote: llama.cpp's (llama_server.py), with a
small real model, behind the gateway, read by the browser helper in Node.

The backend (a sign endpoint served here) signs a streamed chat completion whose answer must
match a JSON schema, under a policy; the helper's askJSON sends it through the gateway, which
adds the key llama.cpp requires, and parses the answer as it streams. The gateway charges the
user's budget from llama.cpp's usage chunk: passed on when the client asked for it, asked for
and kept from the client when it did not.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gateway_client import call
from servers import HERE, Server, free_port, start_gateway

from signgate import Policy, Signer

pytestmark = pytest.mark.slow

REPO = HERE.parent.parent
API_KEY = secrets.token_urlsafe(24)
SECRET = secrets.token_urlsafe(24)
ENV = {"GW_SECRET": SECRET, "LLAMA_API_KEY": API_KEY}
SYSTEM = "You turn a shopper's words into search filters. Answer with JSON only."
SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "blue", "green", "black", "white"]},
        "body": {"type": "string", "enum": ["suv", "sedan", "wagon", "hatchback"]},
    },
    "required": ["color", "body"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "filters", "strict": True, "schema": SCHEMA}}
#: A few dozen tokens at most: two busy CPUs answer that in seconds.
MAX_TOKENS = 48

# askJSON through the sign endpoint, the raw stream kept through the fetch option.
NODE_CLIENT = """
import {askJSON} from %(helper)s;
const partials = [];
let raw = '';
const answer = await askJSON(%(sign)s, {ask_usage: %(ask)s}, {
    timeout: 120000,
    onPartial: partial => partials.push(structuredClone(partial)),
    fetch: async (url, init) => {
        const response = await fetch(url, init);
        if (!String(url).startsWith(%(sign)s) && response.body) {
            const [mine, theirs] = response.body.tee();
            (async () => { for await (const chunk of mine) raw += new TextDecoder().decode(chunk); })();
            return new Response(theirs, {status: response.status, headers: response.headers});
        }
        return response;
    },
});
await new Promise(resolve => setTimeout(resolve, 100));
console.log(JSON.stringify({answer, partials, raw}));
"""


@pytest.fixture(scope="module")
def llama() -> Iterator[Server]:
    pytest.importorskip("xllamacpp", reason="xllamacpp is in the test group: run make venv")
    port = free_port()
    server = Server("llama.cpp", [sys.executable, str(HERE / "llama_server.py"), str(port)], port, env=ENV)
    server.wait_healthy("/health", timeout=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(llama: Server, upstream: Server) -> Iterator[Server]:
    server = start_gateway(
        "--id", "app", "--secret-env", "GW_SECRET", "--header-env", "Authorization=Bearer ${LLAMA_API_KEY}",
        "--allow-upstream", f"{llama.url}/v1/", "--allow-private-upstreams", "--read-timeout", "120",
        "--limit", "user.tokens_per_day=100000", "--usage-webhook", f"{upstream.url}/usage",
        env=ENV,
    )  # fmt: skip
    yield server
    server.stop()
    assert API_KEY not in server.output() and SECRET not in server.output()


@pytest.fixture(scope="module")
def sign_endpoint(gateway: Server, llama: Server) -> Iterator[tuple[str, list[str]]]:
    """The backend: signs a streamed, schema-bound chat completion for the question it is sent,
    attributed to a new user each time (their ids are listed)."""
    signer = Signer("app", SECRET, gateway.url)
    users: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            asked = json.loads(self.rfile.read(int(self.headers["content-length"])))
            body: dict[str, Any] = {
                "model": "smollm2",
                "stream": True,
                "temperature": 0,
                "max_tokens": MAX_TOKENS,
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "I want a red SUV."},
                ],
                "response_format": FORMAT,
            }
            if asked["ask_usage"]:
                body["stream_options"] = {"include_usage": True}
            policy = Policy(
                models=["smollm2"], max_tokens=MAX_TOKENS, system_prompt=SYSTEM, response_format=FORMAT,
                require_stream=True, max_user_chars=200, fields=[*body],
            )  # fmt: skip
            users.append(f"llama-{time.time_ns()}")
            signed = signer.sign("POST", f"{llama.url}/v1/chat/completions", json=body, user=users[-1], policy=policy)
            data = json.dumps(signed.to_dict()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sign", users
    server.shutdown()
    server.server_close()


def ask_in_node(sign_url: str, ask_usage: bool) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "Node is needed for the browser helper's tests"
    script = NODE_CLIENT % {
        "helper": json.dumps((REPO / "js" / "index.js").as_uri()),
        "sign": json.dumps(sign_url),
        "ask": json.dumps(ask_usage),
    }
    done = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def usage_of(upstream: Server, user: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [r for r in call("GET", upstream.url + "/usage").json() if r["user"] == user]
        if records:
            return dict(records[0])
        time.sleep(0.05)
    raise AssertionError(f"no usage record for {user}")


def usage_chunks(raw: str) -> list[dict[str, Any]]:
    events = [json.loads(line[5:]) for line in raw.splitlines() if line.startswith("data:") and "[DONE]" not in line]
    return [e["usage"] for e in events if e.get("usage")]


@pytest.mark.parametrize("ask_usage", [True, False], ids=["client-asks-usage", "gateway-asks-usage"])
def test_a_streamed_json_schema_answer_from_llama_cpp_reaches_the_helper_and_is_charged(
    sign_endpoint: tuple[str, list[str]], upstream: Server, ask_usage: bool
) -> None:
    sign_url, users = sign_endpoint
    got = ask_in_node(sign_url, ask_usage)
    # The model's own JSON, constrained by llama.cpp to the schema, parsed as it streamed.
    jsonschema.validate(got["answer"], SCHEMA)
    assert got["partials"] and got["partials"][-1] == got["answer"]
    assert len(got["partials"]) > 1, got["partials"]
    assert any(len(p) < len(got["answer"]) for p in got["partials"]), "no partial object before the whole one"
    record = usage_of(upstream, users[-1])
    assert record["estimated"] is False and record["completion_tokens"] > 0 and record["prompt_tokens"] > 0
    chunks = usage_chunks(got["raw"])
    if ask_usage:
        # llama.cpp's usage chunk went through to the helper, and is what the gateway charged.
        assert len(chunks) == 1, got["raw"][-600:]
        assert (record["prompt_tokens"], record["completion_tokens"]) == (
            chunks[0]["prompt_tokens"], chunks[0]["completion_tokens"],
        )  # fmt: skip
        assert chunks[0]["completion_tokens"] <= MAX_TOKENS
    else:
        # The gateway asked for it, read it and kept it from the client, which had not asked.
        assert chunks == [], got["raw"][-600:]
        assert record["completion_tokens"] <= MAX_TOKENS


def test_llama_cpp_is_the_server_it_says(llama: Server) -> None:
    # Without the key the gateway adds, llama.cpp itself refuses: the key check is its own.
    assert call("GET", llama.url + "/v1/models").status == 401
    props = call("GET", llama.url + "/v1/models", {"Authorization": f"Bearer {API_KEY}"}).json()
    assert Path(props["data"][0]["id"]).name.startswith("SmolLM2-135M-Instruct")
