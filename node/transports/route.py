"""Which local address the kernel sends from to reach a remote address (its route lookup).

A datagram path on a wildcard-bound socket does not know its own source address; the kernel picks
it per datagram from the routing table (RFC 6724 source selection for IPv6). Connecting a
throwaway UDP socket runs that same lookup without sending anything, and ``getsockname`` reads
its answer. The link monitor needs it: a session whose source address is gone is dead at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from ipaddress import IPv4Address, IPv6Address

from node.proto.vocabulary import IpEndpoint

IPAddress = IPv4Address | IPv6Address


def endpoint_source(remote: IpEndpoint) -> IPAddress | None:
    """``source_address`` for an endpoint."""
    return source_address((str(remote.ip), remote.port))


def source_address(remote: tuple[str, int] | tuple[str, int, int, int]) -> IPAddress | None:
    """The local address the kernel would use for ``remote`` now; None when no route reaches it
    (or the address is not one a UDP socket can be connected to)."""
    host = str(remote[0]).split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_DGRAM)) as probe:
        try:
            # A route lookup only: UDP connect sends nothing (udp(7)). Port 0 is no valid
            # destination for connect(); any port routes the same.
            probe.connect((remote[0], remote[1] or 9, *remote[2:]))
            local = ipaddress.ip_address(str(probe.getsockname()[0]).split("%", 1)[0])
        except (OSError, ValueError):
            return None
    if isinstance(local, IPv6Address) and local.ipv4_mapped is not None:
        return local.ipv4_mapped
    return local
