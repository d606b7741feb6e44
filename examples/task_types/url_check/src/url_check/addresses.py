"""Which addresses a URL check may connect to: public unicast addresses only.

The rules are data, applied in order to every address a host name resolves to (and to the
IPv4 address inside an IPv6 one that carries it), so a URL can never reach the instance
metadata service (169.254.169.254, fd00:ec2::254), the Lambda runtime API on loopback, or
anything inside a VPC.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 ranges that carry an IPv4 address a router or the kernel would reach instead:
# IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d, RFC 6052) and 6to4 (2002:aabb:ccdd::).
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))

# (name, test, why): the first rule an address meets refuses it.
RULES: tuple[tuple[str, Callable[[IPAddress], bool], str], ...] = (
    ("loopback", lambda a: a.is_loopback, "a loopback address"),
    (
        "link_local",
        lambda a: a.is_link_local,
        "a link-local address (where the instance metadata service answers)",
    ),
    ("multicast", lambda a: a.is_multicast, "a multicast address"),
    (
        "not_public",
        lambda a: not a.is_global,
        "not a public address (private, shared, reserved or documentation range)",
    ),
)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is of a kind that carries one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """``allow_loopback`` opens 127.0.0.0/8 and ::1 for local tests, never anything else."""

    allow_loopback: bool = False

    def refusal(self, address: IPAddress) -> str | None:
        """Why the address is refused, or None when a check may connect to it."""
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = self.refusal(inner)
            return f"{address} carries {inner}: {reason}" if reason else None
        for name, applies, why in RULES:
            if name == "loopback" and self.allow_loopback and address.is_loopback:
                return None
            if applies(address):
                return f"{address} is {why}"
        return None
