"""A test upstream on a real socket, run as its own process: ``python fake_upstream.py PORT``.

It is the LLM side of the gateway tests (we cannot reach a real one): it echoes what it
received, streams SSE with pauses, stalls, breaks mid-stream, redirects, and counts the
streams whose client (the gateway) hung up, at ``GET /stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import AsyncIterator

from aiohttp import web

stats = {"streams_started": 0, "streams_completed": 0, "streams_disconnected": 0, "requests": 0}
sent_at: dict[str, list[float]] = {}


async def echo(request: web.Request) -> web.Response:
    stats["requests"] += 1
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("utf-8", "replace"),
        },
        headers={"Set-Cookie": "upstream=1", "X-Upstream": "yes", "Connection": "keep-alive"},
    )


async def record(request: web.Request) -> web.Response:
    """Like echo, but the Authorization value comes back as its SHA-256, so that tests which
    grep every response for the API key can still check the key arrived upstream."""
    stats["requests"] += 1
    body = await request.read()
    headers = [
        [k, "sha256:" + hashlib.sha256(v.encode()).hexdigest() if k.lower() == "authorization" else v]
        for k, v in request.headers.items()
    ]
    return web.json_response(
        {"method": request.method, "path": request.path_qs, "headers": headers, "body": body.decode("utf-8", "replace")}
    )


async def sse(request: web.Request) -> web.StreamResponse:
    """n events, interval seconds apart, each padded with ?pad= bytes; records when each was sent
    under ?id=."""
    stats["requests"] += 1
    n = int(request.query.get("n", "5"))
    interval = float(request.query.get("interval", "0.01"))
    stream_id = request.query.get("id", "")
    padding = "x" * int(request.query.get("pad", "0"))
    times = sent_at.setdefault(stream_id, [])
    async with counted_stream(request) as response:
        for i in range(n):
            await response.write(f"data: {json.dumps({'i': i, 'pad': padding} if padding else {'i': i})}\n\n".encode())
            times.append(time.time())
            await asyncio.sleep(interval)
    return response


async def sent(request: web.Request) -> web.Response:
    return web.json_response(sent_at.get(request.query.get("id", ""), []))


async def stall(request: web.Request) -> web.StreamResponse:
    """Nothing for ?s= seconds (default 60), before the headers (?where=headers) or after the
    first event."""
    stats["requests"] += 1
    if request.query.get("where") == "headers":
        await asyncio.sleep(float(request.query.get("s", "60")))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: first\n\n")
    await asyncio.sleep(float(request.query.get("s", "60")))
    return response


async def broken(request: web.Request) -> web.StreamResponse:
    stats["requests"] += 1
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"data: partial\n\n")
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.close()  # no final chunk: the stream breaks
    return response


async def redirect(request: web.Request) -> web.Response:
    """302 (or ``?code=``) to ``?to=`` (default a closed port on 127.0.0.2)."""
    stats["requests"] += 1
    code = int(request.query.get("code", "302"))
    location = request.query.get("to", "http://127.0.0.2:1/elsewhere")
    return web.Response(status=code, headers={"Location": location}, text="moved\n")


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.json_response(
        {"error": {"message": "upstream says no", "type": "test", "code": code}},
        status=code,
        headers={"Retry-After": "7"} if code == 429 else {},
    )


async def impostor(request: web.Request) -> web.Response:
    """An answer (status ?status=, default 401) whose headers speak for the gateway or change the
    security of its origin: none of them may reach the browser."""
    stats["requests"] += 1
    headers = {
        "X-Signgate-Error": "expired",
        "X-Signgate-Anything": "1",
        "X-Request-Id": "upstream-request-id",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
        "Alt-Svc": 'h3=":443"; ma=86400',
        "Clear-Site-Data": '"*"',
        "Content-Security-Policy": "default-src 'none'",
        "Cross-Origin-Opener-Policy": "same-origin",
        "WWW-Authenticate": 'Basic realm="gateway"',
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Credentials": "true",
        "Set-Cookie": "session=stolen",
        "NEL": '{"report_to": "x", "max_age": 1}',
        "Report-To": '{"group": "x"}',
        "Permissions-Policy": "camera=*",
        "Server": "not-the-gateway",
        "X-Accel-Redirect": "/internal/metrics",
        "X-Accel-Expires": "86400",
        "X-Sendfile": "/etc/passwd",
        "X-LiteSpeed-Location": "/internal/",
        "Surrogate-Control": "max-age=86400",
        "CDN-Cache-Control": "max-age=86400",
        "X-Content-Type-Options": "sniff-away",
        "X-Upstream": "kept",
    }
    return web.Response(text="<script>alert(document.domain)</script>", content_type="text/html",
                        status=int(request.query.get("status", "401")), headers=headers)  # fmt: skip


async def odd_shapes(request: web.Request) -> web.StreamResponse:
    """An event stream whose events have shapes no chat completion has, and no usage."""
    stats["requests"] += 1
    await request.read()
    async with counted_stream(request) as response:
        for event in ({"choices": 5}, {"choices": [{"delta": "text"}]}, {"output": "x" * 40}, [1, 2], "str"):
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: not json\r\r")
    return response


last_chat: dict[str, object] = {}


@contextlib.asynccontextmanager
async def counted_stream(request: web.Request) -> AsyncIterator[web.StreamResponse]:
    """An SSE response that ends with ``data: [DONE]``; counts it started, completed or cut off."""
    stats["streams_started"] += 1
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    try:
        yield response
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):  # a blocked drain raises a plain ConnectionError
        stats["streams_disconnected"] += 1
        raise
    stats["streams_completed"] += 1


async def chat(request: web.Request) -> web.StreamResponse:
    """An OpenAI-shaped chat completion: ?pieces=N&interval=S; usage when asked, as OpenAI does."""
    stats["requests"] += 1
    body = await request.json()
    last_chat.clear()
    last_chat.update(body)
    pieces = int(request.query.get("pieces", "5"))
    interval = float(request.query.get("interval", "0"))
    prompt_tokens, completion_tokens = 11, 2 * pieces
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body.get("model")}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "ab" * pieces}
        return web.json_response({**base, "object": "chat.completion", "usage": usage,
                                  "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})  # fmt: skip
    async with counted_stream(request) as response:
        for _ in range(pieces):
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": "ab"}, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(interval)
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(done)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
    return response


async def responses(request: web.Request) -> web.StreamResponse:
    """An OpenAI Responses API answer: usage as input_tokens and output_tokens, in the final
    response.completed event when streamed."""
    stats["requests"] += 1
    body = await request.json()
    usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "abc"}]}
    response = {"id": "resp_1", "object": "response", "model": body.get("model"), "status": "completed",
                "output": [message]}  # fmt: skip
    if not body.get("stream"):
        return web.json_response({**response, "usage": usage})
    async with counted_stream(request) as stream:
        events = [
            {
                "type": "response.created",
                "response": {**response, "status": "in_progress", "output": [], "usage": None},
            },
            *({"type": "response.output_text.delta", "delta": letter} for letter in "abc"),
            {"type": "response.completed", "response": {**response, "usage": usage}},
        ]
        for event in events:
            await stream.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    return stream


async def get_last_chat(request: web.Request) -> web.Response:
    return web.json_response(last_chat)


usage_records: list[object] = []


async def usage_sink(request: web.Request) -> web.Response:
    usage_records.append(await request.json())
    return web.json_response({"ok": True})


async def get_usage(request: web.Request) -> web.Response:
    return web.json_response(usage_records)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(stats)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/v1/echo", echo)
    # An echo at a chat-completions path: a body policy applies to the LLM APIs the gateway knows.
    app.router.add_route("*", "/v1/echo/chat/completions", echo)
    app.router.add_route("*", "/v1/record", record)
    app.router.add_route("*", "/v1/sse", sse)
    app.router.add_get("/v1/sent", sent)
    app.router.add_route("*", "/v1/stall", stall)
    app.router.add_route("*", "/v1/broken", broken)
    app.router.add_route("*", "/v1/redirect", redirect)
    app.router.add_route("*", "/v1/status/{code}", status)
    app.router.add_route("*", "/other/echo", echo)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/responses", responses)
    app.router.add_route("*", "/v1/impostor", impostor)
    app.router.add_post("/v1/odd", odd_shapes)
    app.router.add_get("/v1/last-chat", get_last_chat)
    app.router.add_post("/usage", usage_sink)
    app.router.add_get("/usage", get_usage)
    app.router.add_get("/healthz", health)
    app.router.add_get("/stats", get_stats)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
