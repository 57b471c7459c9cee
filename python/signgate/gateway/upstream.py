"""The upstream client: one pooled aiohttp connector per process, and an address guard.

The guard sits in aiohttp's resolver, so the addresses aiohttp connects to are exactly the
addresses that were checked (no second lookup an attacker's DNS could answer differently).
IP literals never reach a resolver, so :func:`check_literal` checks them before the request.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult


class ForbiddenAddress(Exception):
    """The upstream resolves to an address this gateway must not reach (not an OSError, so
    aiohttp does not treat it as a connection failure and try the next address)."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, a non-public address")
        self.host = host
        self.address = address


def is_public(address: str) -> bool:
    """True for globally routable unicast addresses; IPv4-mapped IPv6 is judged as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif any(ip in net for net in _NEVER_PUBLIC):
            return False
    return ip.is_global and not ip.is_multicast


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 forms that carry an IPv4 address a translator or tunnel may deliver to, and that no
# public host uses; some Python versions call them global. IPv4-compatible (::a.b.c.d,
# deprecated by RFC 4291), IPv4-translated (::ffff:0:a.b.c.d, RFC 2765) and the local-use
# NAT64 prefix (RFC 8215), where 64:ff9b:1::a9fe:a9fe may reach 169.254.169.254.
_NEVER_PUBLIC = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b:1::/48"))


def check_literal(host: str) -> None:
    """Raise ForbiddenAddress when ``host`` is an IP literal that is not public."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    if not is_public(host):
        raise ForbiddenAddress(host, host)


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then refuses if any address is not public."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for result in results:
                if not is_public(result["host"]):
                    raise ForbiddenAddress(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


def create_session(*, allow_private: bool, limit: int, connect_timeout: float) -> aiohttp.ClientSession:
    """The process-wide upstream session: pooled keep-alive connections, no redirects, no
    decompression (bytes are relayed as they come), no cookies."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_private),
        limit=limit,
        limit_per_host=0,
        ttl_dns_cache=10,
        keepalive_timeout=30,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout),
        read_bufsize=2**16,
    )


def client_timeout(connect: float, read: float) -> Any:
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)
