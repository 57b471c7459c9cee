"""Fuzz ``parse_query`` and ``Verifier.verify_request``: every refusal must be a typed error.

The oracle: a request either verifies (and then names the fuzz key, an http(s) upstream and an
unexpired window), or raises a :class:`signgate.VerificationError` subclass with a known ``code``,
an HTTP ``status`` and a message holding no secret and no signature. Anything else is a failure.

Three generators, all seeded from genuine URLs made with :class:`signgate.Signer`:

- a fast mutation loop (byte flips, insertions, truncation, repeated, dropped and swapped
  parameters, percent-encoding tricks, invalid UTF-8, huge values, random methods, headers and
  bodies, splices of two URLs), where a quarter of the cases are re-signed after mutating, so
  the verifier runs past the signature check into the time and upstream checks;
- hypothesis, for structured queries and shrinking;
- atheris (coverage-guided), when it is installed.

Run as a script::

    python python/tests/fuzz_verifier.py --cases 1000000 --hypothesis 20000
    python python/tests/fuzz_verifier.py --cases 0 --atheris 200000

It prints progress and a summary (cases, codes seen with counts, failures) and exits 1 on any
failure. ``test_fuzz.py`` runs a CI-sized share of it.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from signgate import Signer, VerificationError, Verifier, parse_query, scheme

NOW = 1_795_000_000
KEY_ID = "fuzz-key"
SECRET = "fuzz-secret-9f2c61d0-never-in-a-message"
OLD_SECRET = "fuzz-old-secret-3b8e77a2"
SKEW = 60
CODES = {
    "malformed",
    "unsupported_algorithm",
    "expiry_too_long",
    "unknown_key",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "missing_header",
    "body_mismatch",
}
_HEX_RUN = re.compile(r"[0-9a-f]{64,}")
ARTIFACTS = os.path.join(tempfile.gettempdir(), "signgate-atheris-")


@dataclass
class Case:
    method: str
    query: str
    headers: dict[str, str]
    body: bytes | None
    path: str = "/"
    steps: list[str] = field(default_factory=list)

    def describe(self, limit: int = 400) -> str:
        def cut(value: object) -> str:
            text = repr(value)
            return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"

        return (
            f"steps={self.steps} method={cut(self.method)} path={cut(self.path)}\n"
            f"  query={cut(self.query)}\n  headers={cut(self.headers)}\n  body={cut(self.body)}"
        )


def make_verifier() -> Verifier:
    keys = {KEY_ID: (SECRET, OLD_SECRET), "other-key": ("other-secret",)}
    return Verifier(keys, skew=SKEW, max_expires=3600, clock=lambda: NOW)


def _case(signed_url: str, method: str, headers: dict[str, str], body: str | None, path: str = "/") -> Case:
    query = signed_url.split("?", 1)[1]
    bound = {k.lower(): v for k, v in headers.items()}
    data = None if body is None else body.encode()
    if data is not None:
        bound["content-length"] = str(len(data))
    return Case(method, query, bound, data, path)


def seeds() -> list[Case]:
    """Genuine requests, each of which verifies; the fuzzers start from these."""
    out: list[Case] = []
    upstreams = [
        "https://api.openai.com/v1/chat/completions",
        "https://API.Example.COM:443/Path/../v1/x?q=1&r=%20s#frag",
        "http://[2001:db8::1]:8080/v1/models",
        "https://bücher.example/v1/ä ö?x=ü",
        "https://api.anthropic.com/v1/messages?beta=true",
    ]
    for i, upstream in enumerate(upstreams):
        signer = Signer(KEY_ID, SECRET if i % 2 == 0 else OLD_SECRET, "https://gw.example", clock=lambda i=i: NOW - i)
        req = signer.sign("GET", upstream, expires_in=30)
        out.append(_case(req.url, req.method, req.headers, req.body))
        req = signer.sign(
            "POST", upstream, json={"model": "m", "messages": [{"role": "user", "content": "héllo ✓"}]}, expires_in=600
        )
        out.append(_case(req.url, req.method, req.headers, req.body))
    signer = Signer(KEY_ID, SECRET, "https://gw.example/llm/prefix/", clock=lambda: NOW)
    req = signer.sign(
        "PUT", upstreams[0], headers={"X-User": " u1 ", "Content-Type": "text/plain"}, body="", expires_in=1
    )
    out.append(_case(req.url, req.method, req.headers, req.body, path="/llm/prefix/"))
    req = signer.sign("DELETE", upstreams[1], headers={"Accept": "*/*"}, body="x" * 3000, expires_in=3600)
    out.append(_case(req.url, req.method, req.headers, req.body, path="/llm/prefix/"))
    try:  # signway-sdk's own URLs exercise the verifier's legacy forms
        from signway_sdk import sign_url as sdk_sign_url  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        now = NOW - 5
        import datetime

        when = datetime.datetime.fromtimestamp(now, datetime.UTC)
        url = sdk_sign_url(KEY_ID, SECRET, "https://gw.example/sdk", upstreams[0], 120, "POST", None, '{"a": 1}', when)
        out.append(_case(url, "POST", {}, '{"a": 1}', path="/sdk/"))
    verifier = make_verifier()
    for case in out:
        verifier.verify_request(case.method, case.query, case.headers, case.body, path=case.path)
    return out


# -- the oracle --------------------------------------------------------------------------------------


class Failure(Exception):
    """A case broke the oracle; ``case`` reproduces it."""

    def __init__(self, case: Case, problem: str) -> None:
        super().__init__(problem)
        self.case = case
        self.problem = problem


def check(verifier: Verifier, case: Case, signatures: set[str]) -> str:
    """Run one case; return its outcome ("accepted" or the refusal code) or raise Failure."""
    try:
        verified = verifier.verify_request(case.method, case.query, case.headers, case.body, path=case.path)
    except VerificationError as exc:
        code = getattr(exc, "code", None)
        if code not in CODES or type(exc) is VerificationError:
            raise Failure(case, f"{type(exc).__name__} has no known code: {code!r}") from None
        if exc.status not in (400, 401):
            raise Failure(case, f"{code} has status {exc.status}") from None
        message = str(exc)
        if not message or SECRET in message or OLD_SECRET in message:
            raise Failure(case, f"{code}: empty message, or it holds a secret") from None
        for run in _HEX_RUN.findall(message):
            if any(run[i : i + 64] in signatures for i in range(len(run) - 63)):
                raise Failure(case, f"{code}: the message holds a signature") from None
        return str(code)
    except Exception as exc:  # the point: nothing else may escape
        raise Failure(case, f"unhandled {type(exc).__name__}: {exc!r}\n{traceback.format_exc(limit=6)}") from None
    if verified.key_id != KEY_ID or not verified.forward_url.startswith(("http://", "https://")):
        raise Failure(case, f"accepted with key {verified.key_id!r} and upstream {verified.forward_url[:80]!r}")
    if not verified.signed_at - SKEW <= NOW <= verified.expires_at:
        raise Failure(case, "accepted outside its validity window")
    return "accepted"


# -- mutations ------------------------------------------------------------------------------------------

INTERESTING = {
    scheme.X_ALGORITHM: ["", "SW1-HMAC-SHA256 ", "sw1-hmac-sha256", "SW1-HMAC-SHA512", "%00", "A" * 300],
    scheme.X_CREDENTIAL: [
        "",
        "/",
        "fuzz-key",
        "fuzz-key/",
        "/20261111",
        "other-key%2F20261111",
        "nobody%2F20261111",
        "fuzz-key%2F2026111",
        "fuzz-key%2F20261111%2Fx",
    ],
    scheme.X_DATE: [
        "",
        "20261111T000000Z",
        "00000000T000000Z",
        "99991231T235959Z",
        "20261301T000000Z",
        "20260230T000000Z",
        "20261111T246060Z",
        "20261111T000000z",
        "2026-11-11T00:00:00Z",
        "%D9%A2%D9%A0%D9%A2%D9%A6%D9%A1%D9%A1%D9%A1%D9%A1T000000Z",
        "１２３４５６７８T000000Z",
    ],
    scheme.X_EXPIRES: [
        "",
        "0",
        "-1",
        "+5",
        " 5",
        "1",
        "3600",
        "3601",
        "4294967295",
        "4294967296",
        "99999999999999999999",
        "1e3",
        "0x10",
        "٣",
        "5.0",
    ],
    scheme.X_PROXY: [
        "",
        "http%3A%2F%2F",
        "ftp%3A%2F%2Fx%2F",
        "javascript%3Aalert(1)",
        "http%3A%2F%2Fu%3Ap%40h%2F",
        "http%3A%2F%2F%5B%3A%3A1%5D%2F",
        "http%3A%2F%2F169.254.169.254%2F",
        "%2F%2Fh%2F",
        "http%3A%2F%2Fh%2F%0D%0AX-I%3A1",
        "http%3A%2F%2F" + "a" * 2000 + "%2F",
    ],
    scheme.X_SIGNED_HEADERS: [
        "",
        ";",
        "content-length",
        "Content-Length",
        "a;;b",
        "a;a",
        "x-user;content-length",
        "%0D%0A",
        "a" * 500,
    ],
    scheme.X_BODY: ["", "TRUE", "1", "yes", "true%00", "false ", "true"],
    scheme.X_SIGNATURE: ["", "0" * 64, "G" * 64, "0" * 63, "0" * 65, "%30" * 64, "Ａ" * 64],
}
NAMES = list(INTERESTING)
CHARS = "%&=+;/?# \t\r\n\x00\x7f\x80\xa0\xc3\xe9\xff-._~aZ09" + "é✓\ud800\U0001f600"
INVALID_UTF8 = ["%FF", "%C0%AF", "%ED%A0%80", "%F4%90%80%80", "%E2%82", "%80", "%", "%Z", "%%", "%2", "%u0041"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "POST ", "", "G\x00T", "ÉTÉ", "M" * 200]


def _split(query: str) -> list[str]:
    return query.split("&")


def _param_index(parts: list[str], rng: random.Random) -> int:
    indexes = [i for i, p in enumerate(parts) if p.startswith("X-Sw-")]
    return rng.choice(indexes) if indexes else rng.randrange(len(parts))


def m_flip(c: Case, rng: random.Random) -> Case:
    q = c.query
    if not q:
        return replace(c, query=rng.choice(CHARS))
    i = rng.randrange(len(q))
    return replace(c, query=q[:i] + rng.choice(CHARS) + q[i + 1 :])


def m_insert(c: Case, rng: random.Random) -> Case:
    i = rng.randrange(len(c.query) + 1)
    chunk = "".join(rng.choice(CHARS) for _ in range(rng.randint(1, 8)))
    return replace(c, query=c.query[:i] + chunk + c.query[i:])


def m_delete(c: Case, rng: random.Random) -> Case:
    if not c.query:
        return c
    i = rng.randrange(len(c.query))
    return replace(c, query=c.query[:i] + c.query[i + rng.randint(1, 20) :])


def m_truncate(c: Case, rng: random.Random) -> Case:
    return replace(c, query=c.query[: rng.randrange(len(c.query) + 1)])


def m_duplicate(c: Case, rng: random.Random) -> Case:
    parts = _split(c.query)
    part = parts[_param_index(parts, rng)]
    if rng.random() < 0.5:
        name = part.split("=", 1)[0]
        part = f"{name}={rng.choice(INTERESTING.get(name, ['x']))}"
    parts.insert(rng.randrange(len(parts) + 1), part)
    return replace(c, query="&".join(parts))


def m_drop(c: Case, rng: random.Random) -> Case:
    parts = _split(c.query)
    del parts[_param_index(parts, rng)]
    return replace(c, query="&".join(parts))


def m_swap(c: Case, rng: random.Random) -> Case:
    parts = _split(c.query)
    i, j = _param_index(parts, rng), _param_index(parts, rng)
    (ni, _, vi), (nj, _, vj) = parts[i].partition("="), parts[j].partition("=")
    parts[i], parts[j] = f"{ni}={vj}", f"{nj}={vi}"
    return replace(c, query="&".join(parts))


def m_encode_name(c: Case, rng: random.Random) -> Case:
    parts = _split(c.query)
    i = _param_index(parts, rng)
    name, eq, value = parts[i].partition("=")
    how = rng.randrange(4)
    if how == 0 and name:
        k = rng.randrange(len(name))
        name = name[:k] + f"%{ord(name[k]):02X}" + name[k + 1 :]
    elif how == 1:
        name = name.lower()
    elif how == 2:
        name = name.replace("-", "%2d")
    else:
        name = name + rng.choice(["", " ", "+", "%20", "[]", "%00"])
    parts[i] = name + eq + value
    return replace(c, query="&".join(parts))


def m_percent(c: Case, rng: random.Random) -> Case:
    parts = _split(c.query)
    i = _param_index(parts, rng)
    name, _, value = parts[i].partition("=")
    how = rng.randrange(6)
    if how == 0:
        value = "".join(f"%{b:02X}" for b in value.encode("utf-8", "surrogatepass"))
    elif how == 1:
        value = value.replace("%", "%25")
    elif how == 2:
        k = rng.randrange(len(value) + 1)
        value = value[:k] + rng.choice(INVALID_UTF8) + value[k:]
    elif how == 3:
        value = value.replace("%20", "+").replace("%2F", "/").replace("%3A", ":")
    elif how == 4:
        value = quote(value.encode("latin-1", "replace"), safe="")
    else:
        value = value.lower()
    parts[i] = f"{name}={value}"
    return replace(c, query="&".join(parts))


def m_interesting(c: Case, rng: random.Random) -> Case:
    parts = _split(c.query)
    i = _param_index(parts, rng)
    name = parts[i].split("=", 1)[0]
    parts[i] = f"{name}={rng.choice(INTERESTING.get(name) or INTERESTING[rng.choice(NAMES)])}"
    return replace(c, query="&".join(parts))


def m_huge(c: Case, rng: random.Random) -> Case:
    parts = _split(c.query)
    i = _param_index(parts, rng)
    name, _, value = parts[i].partition("=")
    size = rng.choices([300, 2000, 10_000, 100_000], weights=[50, 30, 15, 5])[0]
    filler = rng.choice(["a", "%41", "%FF", "&", "/", value or "x"])
    parts[i] = f"{name}={(filler * (size // max(1, len(filler)) + 1))[:size]}"
    return replace(c, query="&".join(parts))


def m_redate(c: Case, rng: random.Random) -> Case:
    """Move X-Sw-Date (and the credential's day with it) by up to a few days either way, so that
    re-signed cases land before, inside and after their validity window."""
    offset = rng.choice([-86400 * 3, -7200, -3600, -61, -60, -31, -1, 0, 1, 59, 60, 61, 3600, 86400 * 3])
    long = scheme.long_date(NOW - offset + rng.randint(-2, 2))
    parts = []
    for part in _split(c.query):
        if part.startswith(scheme.X_DATE + "="):
            part = f"{scheme.X_DATE}={long}"
        elif part.startswith(scheme.X_CREDENTIAL + "="):
            part = f"{scheme.X_CREDENTIAL}={quote(KEY_ID, safe='')}%2F{long[:8]}"
        parts.append(part)
    return replace(c, query="&".join(parts))


def m_method(c: Case, rng: random.Random) -> Case:
    if rng.random() < 0.7:
        return replace(c, method=rng.choice(METHODS))
    return replace(c, method="".join(rng.choice(CHARS) for _ in range(rng.randint(0, 12))))


def m_headers(c: Case, rng: random.Random) -> Case:
    headers = dict(c.headers)
    how = rng.randrange(5)
    if how == 0 and headers:
        del headers[rng.choice(list(headers))]
    elif how == 1 and headers:
        name = rng.choice(list(headers))
        headers[name] = rng.choice(["", " ", "x", headers[name] + "x", "é", "\xff", "a\r\nb", "v" * 20_000])
    elif how == 2:
        headers["content-length"] = rng.choice(["", "-1", "1e3", "٣", " 5 ", "0x10", "99999999999999999999", "5, 5"])
    elif how == 3:
        headers["".join(rng.choice(CHARS) for _ in range(rng.randint(0, 10)))] = rng.choice(["x", "\x00", "é" * 9])
    else:
        headers = {}
    return replace(c, headers=headers)


def m_body(c: Case, rng: random.Random) -> Case:
    body = c.body or b""
    how = rng.randrange(6)
    if how == 0:
        return replace(c, body=None)
    if how == 1 and body:
        i = rng.randrange(len(body))
        body = body[:i] + bytes([rng.randrange(256)]) + body[i + 1 :]
    elif how == 2:
        body = body[: rng.randrange(len(body) + 1)]
    elif how == 3:
        body += rng.choice([b"x", b"\xff", b"\xc3", b"\xed\xa0\x80", "é".encode()])
    elif how == 4:
        body = rng.randbytes(rng.randint(0, 64))
    else:
        body = b"b" * rng.choices([2000, 20_000, 200_000], weights=[70, 25, 5])[0]
    return replace(c, body=body)


def m_path(c: Case, rng: random.Random) -> Case:
    return replace(c, path=rng.choice(["", "/", "/x", "/llm/prefix/", "//", "/%2F", "/é", "/" + "p" * 5000, "/\x00"]))


MUTATIONS: list[Callable[[Case, random.Random], Case]] = [
    m_flip, m_insert, m_delete, m_truncate, m_duplicate, m_drop, m_swap, m_encode_name,
    m_percent, m_interesting, m_huge, m_redate, m_redate, m_method, m_headers, m_body, m_path,
]  # fmt: skip


def splice(a: Case, b: Case, rng: random.Random) -> Case:
    pa, pb = _split(a.query), _split(b.query)
    mixed = [rng.choice([x, y]) for x, y in zip(pa, pb, strict=False)]
    return replace(a, query="&".join(mixed), steps=[*a.steps, "splice"])


def resign(c: Case, rng: random.Random) -> Case:
    """Give the case a genuine signature over what it now says, so verification goes past the
    signature check. Cases the verifier could never sign (unparsable, missing a bound header,
    a body that is not UTF-8) are left as they are."""
    try:
        params = parse_query(c.query)
    except Exception:  # check() reports anything but a VerificationError
        return c
    bound = {}
    for name in params.signed_headers:
        if name not in c.headers:
            return c
        bound[name] = c.headers[name].strip()
    try:
        text = (c.body or b"").decode() if params.body_bound else ""
    except UnicodeDecodeError:
        return c
    secret = SECRET if rng.random() < 0.8 else OLD_SECRET
    try:
        canonical = scheme.canonical_request(
            c.method,
            scheme.canonical_query(params.pairs()),
            scheme.canonical_headers(bound.items()),
            scheme.signed_headers_sorted(params.signed_headers),
            text,
        )
        signature = scheme.signature(secret, params.date[:8], scheme.string_to_sign(params.date, canonical))
    except UnicodeError:  # text no signer could sign (lone surrogates)
        return c
    parts = [
        f"{scheme.X_SIGNATURE}={signature}" if p.startswith(scheme.X_SIGNATURE + "=") else p for p in _split(c.query)
    ]
    return replace(c, query="&".join(parts), steps=[*c.steps, "resign"])


def generate(rng: random.Random, pool: list[Case]) -> Case:
    case = rng.choice(pool)
    if rng.random() < 0.05:
        case = splice(case, rng.choice(pool), rng)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        mutation = rng.choice(MUTATIONS)
        case = mutation(case, rng)
        case.steps = [*case.steps, mutation.__name__[2:]]
    if rng.random() < 0.25:
        case = resign(case, rng)
    return case


def random_query(rng: random.Random) -> str:
    """A query string from nothing: random parameters, names and bytes."""
    parts = []
    for _ in range(rng.randint(0, 12)):
        name = rng.choice([*NAMES, "x", "", "X-Sw-", "x-sw-date"])
        value = "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 30)))
        parts.append(f"{name}={value}" if rng.random() < 0.9 else name)
    return "&".join(parts)


# -- the mutation loop ------------------------------------------------------------------------------


@dataclass
class Report:
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"{self.cases:,} cases in {self.seconds:.1f} s ({self.cases / max(self.seconds, 1e-9):,.0f}/s); "
            f"{len(self.failures)} failures",
            "outcomes: " + ", ".join(f"{code} {n:,}" for code, n in self.outcomes.most_common()),
        ]
        for failure in self.failures[:5]:
            lines.append(f"FAILURE: {failure.problem}\n  {failure.case.describe()}")
        return "\n".join(lines)


def mutation_loop(
    cases: int, seed: int = 0, progress: Callable[[Report], None] | None = None, max_failures: int = 20
) -> Report:
    """Run ``cases`` generated cases (about one in ten from nothing, the rest mutated seeds)."""
    rng = random.Random(seed)
    verifier = make_verifier()
    pool = seeds()
    signatures = {c.query.rsplit("=", 1)[1] for c in pool}
    report = Report()
    started = last = time.monotonic()
    for n in range(cases):
        if n % 10 == 9:
            case = Case(rng.choice(METHODS), random_query(rng), {}, None, steps=["random"])
        else:
            case = generate(rng, pool)
        try:
            report.outcomes[check(verifier, case, signatures)] += 1
        except Failure as failure:
            report.failures.append(failure)
            if len(report.failures) >= max_failures:
                break
        report.cases += 1
        if progress is not None and time.monotonic() - last >= 5:
            last = time.monotonic()
            report.seconds = last - started
            progress(report)
    report.seconds = time.monotonic() - started
    return report


# -- hypothesis ----------------------------------------------------------------------------------------


def hypothesis_run(examples: int) -> Report:
    """Structured queries from hypothesis; raises (with the shrunk example) on a failure."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    verifier = make_verifier()
    pool = seeds()
    signatures = {c.query.rsplit("=", 1)[1] for c in pool}
    report = Report()
    text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
    raw = st.binary(max_size=40).map(lambda b: "".join(f"%{x:02X}" for x in b))
    latin = st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
    values = text | raw | latin | st.sampled_from(sorted({v for vs in INTERESTING.values() for v in vs}))
    names = st.sampled_from(NAMES) | st.sampled_from(["x", "", "x-sw-body", "X%2DSw%2DDate"]) | text
    params = st.lists(st.tuples(names, values), max_size=12).map(lambda ps: "&".join(f"{n}={v}" for n, v in ps))

    @st.composite
    def from_seed(draw: st.DrawFn) -> Case:
        case = draw(st.sampled_from(pool))
        parts = _split(case.query)
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(parts) - 1))
            name = parts[i].split("=", 1)[0]
            action = draw(st.sampled_from(["value", "drop", "dup", "name"]))
            if action == "value":
                parts[i] = f"{name}={draw(values)}"
            elif action == "drop" and len(parts) > 1:
                del parts[i]
            elif action == "dup":
                parts.append(f"{name}={draw(values)}")
            else:
                parts[i] = f"{draw(names)}={parts[i].partition('=')[2]}"
        return replace(case, query="&".join(parts), steps=["hypothesis"])

    cases = st.one_of(
        from_seed(),  # twice: most examples should start from a genuine URL
        from_seed(),
        st.builds(
            Case,
            method=st.sampled_from(METHODS) | text,
            query=params | text | latin,
            headers=st.dictionaries(text, text | latin, max_size=4),
            body=st.none() | st.binary(max_size=64),
            path=st.sampled_from(["/", "/x"]) | text,
        ),
    )
    started = time.monotonic()

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(cases, st.booleans(), st.randoms(use_true_random=False))
    def one(case: Case, signed: bool, rng: random.Random) -> None:
        if signed:
            case = resign(case, rng)
        try:
            report.outcomes[check(verifier, case, signatures)] += 1
        except Failure as failure:
            raise AssertionError(f"{failure.problem}\n  {failure.case.describe()}") from None
        report.cases += 1

    one()
    report.seconds = time.monotonic() - started
    return report


# -- atheris -------------------------------------------------------------------------------------------


def atheris_run(runs: int) -> None:
    """Coverage-guided fuzzing with atheris; exits the process when done (libFuzzer's way)."""
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()
    verifier = make_verifier()
    pool = seeds()
    signatures = {c.query.rsplit("=", 1)[1] for c in pool}

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        case = pool[fdp.ConsumeIntInRange(0, len(pool) - 1)]
        mode = fdp.ConsumeIntInRange(0, 3)
        if mode == 0:  # splice fuzzer bytes (as the gateway sees them: Latin-1) into the query
            at = fdp.ConsumeIntInRange(0, len(case.query))
            cut = fdp.ConsumeIntInRange(0, 64)
            chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256)).decode("latin-1")
            case = replace(case, query=case.query[:at] + chunk + case.query[at + cut :])
        elif mode == 1:  # a whole query from the fuzzer
            case = replace(case, query=fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 2048)))  # surrogates too
        elif mode == 2:  # one parameter's value from the fuzzer
            parts = _split(case.query)
            i = fdp.ConsumeIntInRange(0, len(parts) - 1)
            parts[i] = parts[i].split("=", 1)[0] + "=" + fdp.ConsumeUnicodeNoSurrogates(256)
            case = replace(case, query="&".join(parts))
        else:  # method, headers and body from the fuzzer
            headers = dict(case.headers)
            for name in list(headers):
                if fdp.ConsumeBool():
                    headers[name] = fdp.ConsumeUnicodeNoSurrogates(32)
            case = replace(case, method=fdp.ConsumeUnicodeNoSurrogates(8), headers=headers, body=fdp.ConsumeBytes(128))
        if fdp.ConsumeBool():
            case = resign(case, random.Random(len(data)))
        try:
            check(verifier, case, signatures)
        except Failure as failure:
            raise AssertionError(f"{failure.problem}\n  {failure.case.describe()}") from None

    print(f"atheris: {runs:,} runs, coverage-guided; crash inputs go to {ARTIFACTS}*", flush=True)
    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=4096", f"-artifact_prefix={ARTIFACTS}"], one)
    atheris.Fuzz()  # libFuzzer exits the process: 0 when every run passed, 1 with the crashing input


# -- command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--cases", type=int, default=1_000_000, help="mutation-loop cases (default: 1,000,000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    parser.add_argument("--hypothesis", type=int, default=0, metavar="N", help="hypothesis examples (default: 0)")
    parser.add_argument("--atheris", type=int, default=0, metavar="N", help="atheris runs, last (default: 0)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    failed = False
    total: Counter[str] = Counter()
    cases = 0
    if args.cases:
        print(f"mutation loop: {args.cases:,} cases, seed {seed}", flush=True)

        def progress(report: Report) -> None:
            top = ", ".join(f"{c} {n:,}" for c, n in report.outcomes.most_common(4))
            print(f"  {report.cases:,} cases, {report.cases / report.seconds:,.0f}/s, "
                  f"{len(report.failures)} failures; {top}", flush=True)  # fmt: skip

        report = mutation_loop(args.cases, seed, progress)
        print(report.summary(), flush=True)
        failed |= bool(report.failures)
        total += report.outcomes
        cases += report.cases
    if args.hypothesis:
        print(f"hypothesis: {args.hypothesis:,} examples", flush=True)
        try:
            report = hypothesis_run(args.hypothesis)
        except AssertionError as exc:
            print(f"FAILURE (hypothesis, shrunk): {exc}", flush=True)
            failed = True
        else:
            print(report.summary(), flush=True)
            total += report.outcomes
            cases += report.cases
    if cases:
        print(f"\nSUMMARY: {cases:,} cases, {'FAILURES' if failed else 'no failures'}", flush=True)
        print("codes: " + ", ".join(f"{c} {n:,}" for c, n in total.most_common()), flush=True)
    if args.atheris and not failed:
        try:
            import atheris  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            print("atheris is not installed (pip install atheris); skipped", flush=True)
        else:
            atheris_run(args.atheris)  # exits the process
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
