"""The address guard: which upstream addresses the gateway may connect to.

The pool (:mod:`.pool`) resolves a name once, checks every address with :func:`is_public` and
connects to a checked address, so there is no second lookup an attacker's DNS could answer
differently. :func:`check_literal` refuses an IP literal before the request.
"""

from __future__ import annotations

import ipaddress

from ...errors import ForbiddenAddress


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
