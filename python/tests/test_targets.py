"""The target step (signgate.gateway.targets): where a key may send a request, checked before the
signature, so a refusal must tell a client only what it sent."""

from __future__ import annotations

import pytest

from signgate.errors import MalformedRequest, UpstreamNotAllowed
from signgate.gateway.config import GatewayConfig, KeyConfig, UpstreamPrefix
from signgate.gateway.targets import Targets, plain_path
from signgate.gateway.upstream import Target

OPENAI = "https://api.openai.com/v1/"
INTERNAL = "https://internal.example/admin/"
ALLOWLISTED = KeyConfig(
    "app", ("s",), allow_upstreams=(UpstreamPrefix.parse(OPENAI, "test"), UpstreamPrefix.parse(INTERNAL, "test"))
)
ANYWHERE = KeyConfig("any", ("s",))


def targets(*, allow_private: bool = False) -> Targets:
    return Targets(GatewayConfig(allow_private_upstreams=allow_private))


def test_an_allowed_url_becomes_its_target() -> None:
    target = targets().check(ALLOWLISTED, "https://api.openai.com/v1/chat/completions?x=1")
    assert target == Target("https", "api.openai.com", 443, "/v1/chat/completions?x=1")


def test_the_url_is_normalised_before_it_is_checked() -> None:
    """The target is the URL's WHATWG form (what the verifier vouches for): case, default port
    and dot segments do not slip past a prefix."""
    target = targets().check(ALLOWLISTED, "HTTPS://API.OpenAI.com:443/v1/./chat/../models")
    assert target == Target("https", "api.openai.com", 443, "/v1/models")
    for escape in ("/v1/../admin", "/v1/%2e%2e/admin", "/v1/.%2E/admin"):  # WHATWG reads %2e as a dot
        with pytest.raises(UpstreamNotAllowed):
            targets().check(ALLOWLISTED, "https://api.openai.com" + escape)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.openai.com/v1/chat",  # another scheme
        "https://api.openai.com:8443/v1/chat",  # another port
        "https://api.openai.com.evil.example/v1/chat",  # another host that starts alike
        "https://evil.example/v1/chat",
        "https://api.openai.com/v2/chat",  # outside the path prefix
        "https://api.openai.com/v1",  # the prefix's parent, without its slash
    ],
)
def test_urls_outside_the_keys_allowlist_are_refused(url: str) -> None:
    with pytest.raises(UpstreamNotAllowed) as refused:
        targets().check(ALLOWLISTED, url)
    assert (refused.value.status, refused.value.code) == (403, "upstream_not_allowed")
    assert "--allow-upstream" in refused.value.message
    assert "internal.example" not in refused.value.message  # never what the key may reach


def test_a_prefix_without_a_trailing_slash_ends_at_a_segment_boundary() -> None:
    key = KeyConfig("k", ("s",), allow_upstreams=(UpstreamPrefix.parse("https://api.example/v1", "test"),))
    for url in ("https://api.example/v1", "https://api.example/v1/x", "https://api.example/v1?q=1"):
        targets().check(key, url)
    with pytest.raises(UpstreamNotAllowed):
        targets().check(key, "https://api.example/v1x")


@pytest.mark.parametrize("url", ["ftp://api.openai.com/v1/", "/v1/chat", "api.openai.com/v1/", "", "http://"])
def test_a_url_that_is_not_absolute_http_is_malformed(url: str) -> None:
    with pytest.raises(MalformedRequest) as refused:
        targets().check(ANYWHERE, url)
    assert (refused.value.status, refused.value.param) == (400, "X-Sw-Proxy")


def test_a_user_name_or_password_in_the_url_is_refused() -> None:
    with pytest.raises(UpstreamNotAllowed) as refused:
        targets().check(ANYWHERE, "https://user:pw@api.example/v1/")
    assert "user name or password" in refused.value.message
    assert "pw" not in refused.value.message.replace("password", "")


# The paths test_bypasses sends through a real gateway; here the step itself, for both kinds of key.
ENCODED = [
    "/v1/x%2F..%2F..%2Fadmin", "/v1/x%2f..%2fadmin", "/v1/..;/admin", "/v1/x;jsessionid=1/echo",
    "/v1/%252e%252e/admin", "/v1/x%5c..%5cadmin", "/v1/echo%00", "/v1/x%3b/echo", "/v1/a%2e/b",
    "/v1/%u002e%u002e/admin", "/v1/%%32%65%%32%65/admin", "/v1/%c0%ae%c0%ae/admin", "/v1/echo%", "/v1/%ff",
]  # fmt: skip


@pytest.mark.parametrize("path", ENCODED)
def test_encoded_separators_and_semicolons_are_refused_for_an_allowlisted_key(path: str) -> None:
    with pytest.raises(UpstreamNotAllowed) as refused:
        targets().check(ALLOWLISTED, "https://api.openai.com" + path)
    assert "plain paths only" in refused.value.message


@pytest.mark.parametrize("path", ["/v1/%2F", "/v1/a;b"])
def test_a_key_without_an_allowlist_has_no_prefix_to_escape(path: str) -> None:
    """Such a key may reach any public upstream already: an encoded path gives it nothing more."""
    assert targets().check(ANYWHERE, "https://api.example" + path).host == "api.example"


def test_escapes_in_the_query_are_not_path_escapes() -> None:
    target = targets().check(ALLOWLISTED, "https://api.openai.com/v1/files?name=a%2Fb%3Bc")
    assert target.path == "/v1/files?name=a%2Fb%3Bc"


@pytest.mark.parametrize(
    ("path", "plain"),
    [
        ("/v1/chat/completions", True),
        ("/v1/caf%C3%A9", True),  # UTF-8, escaped
        ("/v1/%41", True),  # an escape of a letter cannot change the path's shape
        ("/v1/a%2fb", False),
        ("/v1/a%2Eb", False),
        ("/v1/a%255", False),
        ("/v1/a%5Cb", False),
        ("/v1/a%3B", False),
        ("/v1/a%00", False),
        ("/v1/a;b", False),
        ("/v1/a%", False),
        ("/v1/a%4", False),
        ("/v1/a%zz", False),
        ("/v1/%c0%af", False),  # overlong '/'
        ("/v1/%80", False),  # not UTF-8
    ],
)
def test_plain_path(path: str, plain: bool) -> None:
    assert plain_path(path) is plain


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]", "0x7f.1", "2130706433", "[fe80::1]"],
)
def test_a_literal_private_address_is_refused_unless_allowed(host: str) -> None:
    url = f"http://{host}:8080/v1/chat"
    with pytest.raises(UpstreamNotAllowed) as refused:
        targets().check(ANYWHERE, url)
    assert "--allow-private-upstreams" in refused.value.message
    assert targets(allow_private=True).check(ANYWHERE, url).port == 8080


def test_a_name_is_not_resolved_here() -> None:
    """Names are resolved, and every address checked, when the pool connects (upstream/guard.py)."""
    assert targets().check(ANYWHERE, "http://localhost:8080/v1/").host == "localhost"


def test_a_check_cached_for_one_key_is_not_another_keys() -> None:
    checks = targets()
    url = "https://evil.example/v1/chat"
    assert checks.check(ANYWHERE, url).host == "evil.example"
    assert checks.check(ANYWHERE, url).host == "evil.example"
    with pytest.raises(UpstreamNotAllowed):
        checks.check(ALLOWLISTED, url)
    other = KeyConfig("any", ("s",), allow_upstreams=ALLOWLISTED.allow_upstreams)  # same id, new rules
    with pytest.raises(UpstreamNotAllowed):
        targets().check(other, url)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("https://api.openai.com:8443/v1/chat", "https://api.openai.com:8443/v1/chat"),
        ("http://[2001:db8::1]:8080/v1/chat?q=1", "http://[2001:db8::1]:8080/v1/chat"),
        ("https://evil.example:443/x", "https://evil.example/x"),
    ],
)
def test_a_refusal_names_the_url_as_sent_with_its_port_and_without_its_query(url: str, named: str) -> None:
    """A port the allowlist does not hold must show in the message: without it, the message named
    a URL the key may reach."""
    with pytest.raises(UpstreamNotAllowed) as refused:
        targets(allow_private=True).check(ALLOWLISTED, url)
    assert f"may not reach {named};" in refused.value.message
