"""Store URLs: where the gateway's shared state lives, in the forms operators run Redis.

- ``memory``: in this process only.
- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) and
  ``unix:///path/to/redis.sock[?db=N]``: one Redis server, handed to redis-py as written.
- ``redis+cluster://[[user]:password@]host[:port][,host[:port]...]``: a Redis Cluster; the nodes
  given are where discovery starts, any reachable one is enough.
- ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``: the master
  that the Sentinels (default port 26379) name for ``service``; the password is the master's.

:func:`parse` checks a URL once, at start-up, and :func:`shown` is the form safe for messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import StoreURLError

__all__ = ["StoreURL", "StoreURLError", "parse", "shown"]

_SINGLE = re.compile(r"(redis|rediss|unix)://\S+")
_MULTI = re.compile(r"(redis\+cluster|redis\+sentinel)://(?:([^@/?#]*)@)?([^/?#]*)([^?#]*)(.*)", re.S)
_NODE = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^\s\[\]:,]+)(?::(\d+))?")
_DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}
EXAMPLES = (
    "'memory', redis://127.0.0.1:6379/0, redis+cluster://10.0.0.1:6379,10.0.0.2:6379 "
    "or redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0"
)


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A checked store URL. ``kind`` is memory, redis (one server), cluster or sentinel."""

    kind: str
    text: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never show the password
        return f"StoreURL({shown(self.text)!r})"


def shown(text: str) -> str:
    """The URL without what precedes an '@' in its authority: a Redis URL may hold a password."""
    return re.sub(r"//[^/@]*@", "//***@", text)


def parse(text: str) -> StoreURL:
    """Check a store URL; raises StoreURLError naming what is wrong and showing a correct form."""
    if text == "memory":
        return StoreURL("memory", text)
    if _SINGLE.fullmatch(text):
        return StoreURL("redis", text)
    match = _MULTI.fullmatch(text)
    if match is None:
        raise StoreURLError(f"{shown(text)!r} is not a store; use {EXAMPLES}")
    scheme, userinfo, hosts, path, rest = match.groups()
    kind = scheme.removeprefix("redis+")
    if rest:
        raise StoreURLError(f"{shown(text)!r}: {scheme} URLs take no query or fragment; use {EXAMPLES}")
    nodes = tuple(_node(part, _DEFAULT_PORTS[kind], text) for part in hosts.split(","))
    username = password = None
    if userinfo is not None:
        user, sep, secret = userinfo.partition(":")
        username, password = unquote(user) or None, (unquote(secret) or None) if sep else None
    segments = path.split("/")[1:] if path else []
    if kind == "cluster":
        if segments not in ([], [""], ["0"]):
            raise StoreURLError(f"{shown(text)!r}: a Redis Cluster has only database 0; end the URL after the nodes")
        return StoreURL(kind, text, nodes, username=username, password=password)
    if not segments or not segments[0] or len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise StoreURLError(
            f"{shown(text)!r}: name the Sentinel service (and optionally the database) after the nodes, "
            "e.g. redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0"
        )
    db = int(segments[1]) if len(segments) == 2 else 0
    return StoreURL(kind, text, nodes, unquote(segments[0]), db, username, password)


def _node(part: str, default_port: int, text: str) -> tuple[str, int]:
    match = _NODE.fullmatch(part)
    if match is None:
        raise StoreURLError(f"{shown(text)!r}: {part!r} is not a node; use host:port or [ipv6]:port, comma-separated")
    host = match.group(1) or match.group(3)
    port_text = match.group(2) or match.group(4)
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise StoreURLError(f"{shown(text)!r}: port {port} of {host!r} is not between 1 and 65535")
    return host, port
