"""Interop with the live Signway server (v0.4.8, the Rust original), both ways, on real sockets.

One Signway process, one signgate gateway and one upstream (``fake_upstream.py``, which echoes
what it receives), all on loopback, the two gateways holding the same key. Each case sends the
same signed query to both and reads what reached the upstream:

- URLs from our signer, plain and with every extension, are accepted and forwarded by Signway,
  and both gateways forward the same method, path, bound headers and body;
- URLs that Signway accepts (signway-sdk's, and edited ones) are accepted by our gateway, except
  where we are deliberately stricter: there the test names the difference and checks both answers.

Signway is built by ``scripts/build-signway.sh`` (``make signway``; ``make test`` runs it). Without
cargo these tests are skipped with the reason; with cargo a missing binary is a failure.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import random
import shutil
import socket
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sw1_reference as ref
from gateway_client import Reply, call
from servers import Server, free_port, start_gateway
from signway_sdk import sign_url as sdk_sign_url

from signgate import Policy, SignedRequest, Signer, SigningError, scheme

ROOT = Path(__file__).resolve().parents[2]
KEY_ID, SECRET, API_KEY = "interop", "interop-secret-not-for-production", "sk-interop-upstream"
TEXT = 'héllo wörld — 日本語 🚗 "quoted" \\ back'  # multi-byte UTF-8 in every width


def signway_binary() -> Path:
    """The binary scripts/build-signway.sh makes: SIGNWAY_CACHE (relative to the repository) or .cache/signway."""
    cache = Path(os.environ.get("SIGNWAY_CACHE", ".cache/signway"))
    return (cache if cache.is_absolute() else ROOT / cache) / "bin" / "signway-v0.4.8"


def cargo_present() -> bool:
    return shutil.which("cargo") is not None or (Path.home() / ".cargo" / "bin" / "cargo").exists()


@pytest.fixture(scope="module")
def signway() -> Iterator[Server]:
    binary = signway_binary()
    if not binary.exists():
        if cargo_present():
            pytest.fail(f"cargo is here but Signway is not built at {binary}: run `make signway`")
        pytest.skip("cargo not found, so Signway is not built: the tests against the live Signway server are skipped")
    port = free_port()
    argv = [str(binary), KEY_ID, SECRET, "--header", f"Authorization: Bearer {API_KEY}", "--no-bytes-monitor"]
    server = Server("signway", argv, port, env={"PORT": str(port), "SIGNWAY_BIND_ADDR": "127.0.0.1"})
    deadline = time.monotonic() + 20
    while True:  # Signway has no health endpoint; it answers OPTIONS with 200 (a CORS preflight)
        try:
            if call("OPTIONS", server.url + "/", timeout=2).status == 200:
                break
        except OSError:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Signway did not start:\n{server.output()}") from None
            time.sleep(0.05)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Server) -> Iterator[Server]:
    server = start_gateway(
        "--id",
        KEY_ID,
        "--secret-env",
        "INTEROP_SECRET",
        "--header-env",
        "Authorization=Bearer ${INTEROP_KEY}",
        "--allow-upstream",
        f"{upstream.url}/v1/",
        "--allow-private-upstreams",
        env={"INTEROP_SECRET": SECRET, "INTEROP_KEY": API_KEY},
    )
    yield server
    server.stop()


# -- helpers --------------------------------------------------------------------------------------


def query_of(url: str) -> str:
    return url.split("?", 1)[1]


def to(server: Server, query: str, method: str, headers: dict[str, str], body: bytes | str | None) -> Reply:
    """One request to ``server`` with this signed query. The gateway's base URL and the request path
    are not signed in SW1 (the canonical path is always ``/``), so one query fits both servers."""
    return call(method, f"{server.url}/?{query}", headers, body)


def forwarded(reply: Reply) -> dict[str, Any]:
    """What reached the upstream, as its echo reports it: method, path, headers (lower-case names), body."""
    assert reply.status == 200, (reply.status, reply.body[:300])
    echoed = reply.json()
    headers: dict[str, str] = {}
    for name, value in echoed["headers"]:
        assert name.lower() not in headers, f"{name} reached the upstream twice"
        headers[name.lower()] = value
    return {"method": echoed["method"], "path": echoed["path"], "headers": headers, "body": echoed["body"]}


def both(
    signway: Server, gateway: Server, query: str, method: str, headers: dict[str, str], body: bytes | str | None
) -> tuple[Reply, Reply]:
    return to(signway, query, method, headers, body), to(gateway, query, method, headers, body)


def upstream_requests(upstream: Server) -> int:
    return int(call("GET", upstream.url + "/stats").json()["requests"])


def expect_same_forwarding(signway_reply: Reply, gateway_reply: Reply, req: SignedRequest) -> dict[str, Any]:
    """Both gateways forwarded ``req`` to its upstream URL with its bound headers and body, and the key."""
    sw, gw = forwarded(signway_reply), forwarded(gateway_reply)
    target = urlsplit(scheme.normalize_upstream(ref.query_params(req.url)["X-Sw-Proxy"]) or "")
    path = target.path + (f"?{target.query}" if target.query else "")
    for got in (sw, gw):
        assert got["method"] == req.method
        assert got["path"] == path
        assert got["body"] == (req.body or "")
        assert got["headers"]["authorization"] == f"Bearer {API_KEY}"
        for name, value in req.headers.items():
            if name.startswith("x-signgate-") and got is gw:
                # Our extensions are for our gateway: it consumes them, Signway passes them on.
                assert name not in got["headers"]
            else:
                assert got["headers"][name] == value.strip(" \t"), name
        if req.body is not None:
            assert got["headers"]["content-length"] == str(len(req.body.encode()))
    return sw


def sign(upstream: Server, method: str = "GET", path: str = "/v1/echo", **kwargs: Any) -> SignedRequest:
    return Signer(KEY_ID, SECRET, "http://gateway.invalid").sign(method, upstream.url + path, **kwargs)


def send_raw(port: int, head: bytes) -> bytes:
    """Bytes exactly as given (for header bytes http.client would refuse); every byte of the answer
    until the server closes the connection (a server that leaves it open fails with a timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


# -- our signer's URLs: Signway accepts and forwards them ---------------------------------------


OUR_CASES: dict[str, dict[str, Any]] = {
    "plain GET": {},
    "upstream query kept": {"path": "/v1/echo?page=2&sort=-price"},
    "bound JSON body, non-ASCII": {"method": "POST", "json": {"q": TEXT, "n": 3}},
    "bound text body, non-ASCII, bytes in": {"method": "PUT", "body": TEXT.encode()},
    "bound empty body": {"method": "POST", "body": ""},
    "bound headers, padded values, mixed-case names": {
        "method": "PATCH",
        "headers": {"X-Client": "  web 1.2  ", "content-TYPE": "text/plain; charset=utf-8"},
        "body": "x",
    },
    "DELETE": {"method": "DELETE"},
    "single use": {"single_use": True},
    "uses": {"uses": 3},
    "user": {"user": "user-7"},
    "tenant": {"tenant": "acme"},
    # A policy is signed for (and enforced on) an API the gateway knows: an echo at a chat path.
    "policy": {
        "method": "POST",
        "path": "/v1/echo/chat/completions",
        "json": {"model": "m", "messages": [{"role": "user", "content": TEXT}]},
        "policy": Policy(models=["m"]),
    },
    "every extension at once": {
        "method": "POST",
        "path": "/v1/echo/chat/completions",
        "headers": {"X-Trace": "t-1"},
        "json": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        "uses": 2,
        "user": "u-1",
        "tenant": "t-9",
        "policy": Policy(models=["m"]),
    },
    # The signer sends these WHATWG-normalised, as Signway re-serialises X-Sw-Proxy before verifying.
    "upstream needing normalisation: scheme case, dot segments, space and non-ASCII in the query": {
        "path": "/v1/x/../echo?q=a b&city=Zürich&t=%7e~",
        "upper_scheme": True,
    },
    "upstream needing normalisation: fragment and an empty query": {"path": "/v1/./echo?#frag"},
}


@pytest.mark.parametrize("case", list(OUR_CASES))
def test_our_urls_are_accepted_and_forwarded_by_signway(
    case: str, signway: Server, gateway: Server, upstream: Server
) -> None:
    kwargs = dict(OUR_CASES[case])
    method, path = kwargs.pop("method", "GET"), kwargs.pop("path", "/v1/echo")
    upstream_url = upstream.url + path
    if kwargs.pop("upper_scheme", False):
        upstream_url = "HTTP" + upstream_url[4:]
    req = Signer(KEY_ID, SECRET, "http://gateway.invalid").sign(method, upstream_url, **kwargs)
    headers = dict(req.headers)
    sw, gw = both(signway, gateway, query_of(req.url), method, headers, req.body)
    got = expect_same_forwarding(sw, gw, req)
    assert got["path"].startswith("/v1/echo")
    if "upper_scheme" in OUR_CASES[case]:
        assert got["path"] == "/v1/echo?q=a%20b&city=Z%C3%BCrich&t=%7e~"


def test_our_urls_for_random_requests_are_accepted_by_both(signway: Server, gateway: Server, upstream: Server) -> None:
    """Seeded random requests (methods, header names and values, bodies, query strings with odd
    characters): every one is accepted by Signway and by our gateway, and forwarded alike."""
    rng = random.Random(18)
    for _ in range(40):
        req = sign(upstream, **_random_request(rng))
        sw, gw = both(signway, gateway, query_of(req.url), req.method, dict(req.headers), req.body)
        expect_same_forwarding(sw, gw, req)


def _random_request(rng: random.Random) -> dict[str, Any]:
    visible = string.ascii_letters + string.digits + "!#$%&'()*+,-./:;<=>?@[]^_`{|}~ "
    query = "&".join(
        f"{rng.choice(['a', 'b', 'Z', 'ü', 'k k'])}={''.join(rng.choices(visible + 'éß€', k=rng.randint(0, 6)))}"
        for _ in range(rng.randint(0, 3))
    )
    query = query.replace("#", "")  # a '#' would start a fragment and cut the query short
    headers = {
        f"X-{''.join(rng.choices(string.ascii_letters, k=rng.randint(1, 8)))}-{i}": "".join(
            rng.choices(visible, k=rng.randint(0, 20))
        )
        for i in range(rng.randint(0, 3))
    }
    method = rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE"])
    body = None
    if method != "GET" and rng.random() < 0.8:
        body = "".join(rng.choices(visible + '\n\té日🚗"\\', k=rng.randint(0, 200)))
    return {"method": method, "path": "/v1/echo" + (f"?{query}" if query else ""), "headers": headers, "body": body}


# -- URLs Signway accepts: our gateway accepts them too ------------------------------------------


def _sdk_now() -> dt.datetime:
    """Now as the naive UTC datetime signway-sdk expects (it ignores a time zone)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


SDK_CASES = [
    ("GET", "/v1/echo", None, None),
    ("GET", "/v1/echo?page=2&q=a%20b", None, None),
    ("POST", "/v1/echo", {"Content-Type": "application/json"}, '{"model":"m","stream":false}'),
    ("POST", "/v1/echo", {"X-A": "1", "X-B": " padded "}, ""),
    ("PUT", "/v1/echo", None, "plain ascii body\nwith two lines"),
    ("DELETE", "/v1/echo", {"X-Request": "r-1"}, None),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), SDK_CASES)
def test_signway_sdk_urls_are_accepted_by_both(
    method: str,
    path: str,
    headers: dict[str, str] | None,
    body: str | None,
    signway: Server,
    gateway: Server,
    upstream: Server,
) -> None:
    url = sdk_sign_url(
        KEY_ID,
        SECRET,
        "http://gateway.invalid",
        upstream.url + path,
        60,
        method,
        headers and dict(headers),
        body,
        _sdk_now(),
    )
    sent = dict(headers or {})
    sw, gw = both(signway, gateway, query_of(url), method, sent, body)
    req = SignedRequest(url, method, {k.lower(): v for k, v in sent.items()}, body)
    expect_same_forwarding(sw, gw, req)


def test_signway_ignores_the_request_path_and_other_parameters_and_so_do_we(
    signway: Server, gateway: Server, upstream: Server
) -> None:
    req = sign(upstream)
    for server in (signway, gateway):
        reply = call("GET", f"{server.url}/any/path/here?utm=1&{query_of(req.url)}&z=%FF")
        assert forwarded(reply)["path"] == "/v1/echo"


def test_sdk_non_normalised_upstream_we_are_more_lenient(signway: Server, gateway: Server, upstream: Server) -> None:
    """signway-sdk signs the upstream as given; Signway re-serialises it before verifying, so a URL
    that needs normalising never verifies there. Our gateway verifies the string as received and
    forwards its normalised form (docs/protocol.md), so it accepts what the SDK meant."""
    upstream_url = "HTTP" + upstream.url[4:] + "/v1/x/../echo"
    url = sdk_sign_url(KEY_ID, SECRET, "http://gw.invalid", upstream_url, 60, "GET", None, None, _sdk_now())
    sw, gw = both(signway, gateway, query_of(url), "GET", {}, None)
    assert sw.status == 400, "Signway refuses the SDK's non-normalised upstream"
    assert forwarded(gw)["path"] == "/v1/echo", "our gateway accepts it and forwards it normalised"


# -- where we are deliberately stricter than Signway ---------------------------------------------


def _bound_get(upstream: Server) -> SignedRequest:
    return sign(upstream, headers={"X-A": "1"})


def _stricter(
    signway: Server, gateway: Server, upstream: Server, query: str, headers: dict[str, str], code: str
) -> None:
    """Signway accepts and forwards the edited URL; our gateway refuses it with ``code`` and the
    upstream never sees it."""
    assert forwarded(to(signway, query, "GET", headers, None))["path"] == "/v1/echo"
    before = upstream_requests(upstream)
    reply = to(gateway, query, "GET", headers, None)
    assert reply.status == 400, (reply.status, reply.body[:300])
    assert reply.error_code == code
    assert upstream_requests(upstream) == before


def test_stricter_repeated_date(signway: Server, gateway: Server, upstream: Server) -> None:
    """Signway keeps the last of a repeated parameter; a URL whose X-Sw-* parameters could be read
    two ways is refused here, whichever comes first."""
    req = _bound_get(upstream)
    query = "X-Sw-Date=20000101T000000Z&" + query_of(req.url)
    _stricter(signway, gateway, upstream, query, req.headers, "malformed")


def test_stricter_unknown_algorithm(signway: Server, gateway: Server, upstream: Server) -> None:
    """Signway only checks that X-Sw-Algorithm is present and verifies as SW1-HMAC-SHA256 whatever it
    says; we refuse a name we do not implement, so a future scheme can never be downgraded to this one."""
    req = _bound_get(upstream)
    query = query_of(req.url).replace("X-Sw-Algorithm=SW1-HMAC-SHA256", "X-Sw-Algorithm=SW2-HMAC-SHA512")
    _stricter(signway, gateway, upstream, query, req.headers, "unsupported_algorithm")


def test_stricter_upper_cased_signed_headers(signway: Server, gateway: Server, upstream: Server) -> None:
    """Signway lower-cases X-Sw-SignedHeaders while rebuilding the canonical request, so an edited
    case still verifies there; we read the parameter as signed, lower-case only."""
    req = _bound_get(upstream)
    query = query_of(req.url).replace("X-Sw-SignedHeaders=x-a", "X-Sw-SignedHeaders=X-A")
    _stricter(signway, gateway, upstream, query, req.headers, "malformed")


def test_stricter_signed_header_named_twice(signway: Server, gateway: Server, upstream: Server) -> None:
    """Signway collects the named headers in a map, so a name listed twice collapses into one."""
    req = _bound_get(upstream)
    query = query_of(req.url).replace("X-Sw-SignedHeaders=x-a", "X-Sw-SignedHeaders=x-a%3Bx-a")
    _stricter(signway, gateway, upstream, query, req.headers, "malformed")


def test_stricter_signed_header_sent_twice(signway: Server, gateway: Server, upstream: Server) -> None:
    """Signway verifies the first of two lines of a bound header and forwards both; which one an
    upstream reads is up to it, so we refuse a bound header sent more than once (the two lines
    read as their join, ``1, 2``, which is not what was signed)."""
    req = _bound_get(upstream)
    lines = [("X-A", "1"), ("X-A", "2")]
    replies = []
    before = upstream_requests(upstream)
    for server in (signway, gateway):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.putrequest("GET", "/?" + query_of(req.url), skip_accept_encoding=True)
            for name, value in lines:
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            replies.append(Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()))
        finally:
            conn.close()
    echoed = replies[0].json()
    assert replies[0].status == 200 and ["x-a", "1"] in echoed["headers"], "Signway verified the first line"
    assert replies[1].status in {400, 401} and replies[1].error_code in {"malformed", "bad_signature"}
    assert upstream_requests(upstream) == before + 1, "only Signway's request reached the upstream"


def test_stricter_extensions_limit_uses_which_signway_ignores(
    signway: Server, gateway: Server, upstream: Server
) -> None:
    """A single-use URL is a bound header to Signway, which accepts it as often as it comes; our
    gateway accepts it once."""
    req = sign(upstream, single_use=True)
    for _ in range(2):
        assert to(signway, query_of(req.url), "GET", req.headers, None).status == 200
    assert to(gateway, query_of(req.url), "GET", req.headers, None).status == 200
    again = to(gateway, query_of(req.url), "GET", req.headers, None)
    assert again.status == 409 and again.error_code == "replayed"


# -- the two edges issue 13 aligned with Signway -------------------------------------------------


def _at_start_of_a_second() -> int:
    """Wait until early in a fresh wall-clock second; return that second."""
    while (now := time.time()) % 1 > 0.3:
        time.sleep(1.02 - now % 1)
    return int(now)


def test_a_url_is_refused_from_the_instant_it_expires_by_both(
    signway: Server, gateway: Server, upstream: Server
) -> None:
    """Signway refuses when now > date + expires, with now to the nanosecond; our gateway refuses
    from the instant date + expires (now >= date + expires in whole seconds), so no URL lives the
    rest of its last second. One second earlier both accept."""
    for expires, accepted in ((5, False), (6, True)):
        for _ in range(5):  # both requests must go out within the second the URL expires in
            second = _at_start_of_a_second()
            signer = Signer(KEY_ID, SECRET, "http://gw.invalid", clock=lambda s=second: s - 5)
            req = signer.sign("GET", f"{upstream.url}/v1/echo", expires_in=expires)
            assert req.expires_at == second + expires - 5
            sw, gw = both(signway, gateway, query_of(req.url), "GET", {}, None)
            if int(time.time()) == second:
                break
        else:
            pytest.fail("five times the machine was too slow to send two requests within one second")
        if accepted:
            assert forwarded(sw) and forwarded(gw)
        else:
            assert sw.status == 400, "Signway: expired"
            assert gw.status == 401 and gw.error_code == "expired", (gw.status, gw.body[:200])


def test_a_non_ascii_bound_header_value_is_refused_by_our_signer(upstream: Server) -> None:
    """Signway crashes the connection on a bound header value that is not visible ASCII (it unwraps
    HeaderValue::to_str), and HTTP gives no agreed encoding for such bytes: our signer refuses it."""
    with pytest.raises(SigningError) as info:
        sign(upstream, headers={"X-Name": "Zoë"})
    assert info.value.field == "headers" and "X-Name" in str(info.value)


def test_signway_drops_the_connection_on_a_non_ascii_bound_header_value(signway: Server, upstream: Server) -> None:
    """Why the signer refuses such values: signed anyway (by the naive transcription of the scheme)
    and sent as UTF-8, Signway answers nothing at all, though it keeps serving others."""
    normalized = scheme.normalize_upstream(f"{upstream.url}/v1/echo")
    assert normalized is not None
    long = scheme.long_date(int(time.time()))
    url = ref.sign(KEY_ID, SECRET, "http://gw", normalized, 60, "GET", [("x-name", "Zoë")], None, long).url
    head = f"GET /?{query_of(url)} HTTP/1.1\r\nHost: gw\r\nX-Name: ".encode() + "Zoë".encode() + b"\r\n\r\n"
    assert send_raw(signway.port, head) == b"", "Signway closed the connection without a word"
    assert call("OPTIONS", signway.url + "/").status == 200


def test_signway_forwards_a_body_bound_by_our_signer_byte_for_byte(
    signway: Server, gateway: Server, upstream: Server
) -> None:
    """The bound body's content-length is its UTF-8 length (signway-sdk counts characters, so its
    non-ASCII bodies never verify anywhere); both gateways forward the exact bytes."""
    payload = json.dumps({"text": TEXT * 20}, ensure_ascii=False)
    req = sign(upstream, "POST", body=payload, headers={"Content-Type": "application/json"})
    sw, gw = both(signway, gateway, query_of(req.url), "POST", dict(req.headers), req.body)
    assert expect_same_forwarding(sw, gw, req)["body"] == payload
