"""Store URLs: every accepted form parses to what the connection needs; every mistake is named."""

from __future__ import annotations

import pytest

from signgate.gateway.config import ConfigError, check_store
from signgate.gateway.storeurl import StoreURL, StoreURLError, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("memory", StoreURL("memory", "memory")),
        ("redis://127.0.0.1:6379/0", StoreURL("redis", "redis://127.0.0.1:6379/0")),
        ("rediss://:pw@redis.internal:6380/1", StoreURL("redis", "rediss://:pw@redis.internal:6380/1")),
        ("unix:///run/redis.sock?db=2", StoreURL("redis", "unix:///run/redis.sock?db=2")),
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002",
            StoreURL(
                "cluster", "redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002",
                ((("10.0.0.1", 7000)), ("10.0.0.2", 6379), ("::1", 7002)),
            ),
        ),
        (
            "redis+cluster://app:p%40ss@node-1:7000/0",
            StoreURL("cluster", "redis+cluster://app:p%40ss@node-1:7000/0", (("node-1", 7000),),
                     username="app", password="p@ss"),
        ),
        (
            "redis+sentinel://s1,s2:26380/mymaster",
            StoreURL("sentinel", "redis+sentinel://s1,s2:26380/mymaster", (("s1", 26379), ("s2", 26380)), "mymaster"),
        ),
        (
            "redis+sentinel://:secret@127.0.0.1:26379/mymaster/3",
            StoreURL("sentinel", "redis+sentinel://:secret@127.0.0.1:26379/mymaster/3", (("127.0.0.1", 26379),),
                     "mymaster", 3, None, "secret"),
        ),
    ],
)  # fmt: skip
def test_accepted_forms(text: str, expected: StoreURL) -> None:
    assert parse(text) == expected
    assert check_store(text, "--store") == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("redis//:hunter2@host", "'redis//***@host' is not a store"),
        ("mysql://db", "is not a store; use 'memory', redis://"),
        ("redis+cluster://a:1,,b:2", "'' is not a node"),
        ("redis+cluster://a:99999", "port 99999 of 'a' is not between 1 and 65535"),
        ("redis+cluster://a:1/3", "a Redis Cluster has only database 0"),
        ("redis+cluster://a:1?timeout=2", "take no query or fragment"),
        ("redis+sentinel://:hunter2@s1:26379", "name the Sentinel service"),
        ("redis+sentinel://s1/mymaster/zero", "name the Sentinel service"),
        ("redis+sentinel://s1/mymaster/0/extra", "name the Sentinel service"),
        ("redis+sentinel://s 1/mymaster", "'s 1' is not a node"),
    ],
)
def test_mistakes_are_named_without_the_password(text: str, fragment: str) -> None:
    with pytest.raises(StoreURLError) as info:
        parse(text)
    assert fragment in str(info.value)
    with pytest.raises(ConfigError) as config_info:
        check_store(text, "gateway.toml: gateway.store")
    assert str(config_info.value).startswith("gateway.toml: gateway.store: ")
    assert "hunter2" not in str(config_info.value)
    assert "hunter2" not in repr(StoreURL("redis", "redis://:hunter2@x"))
