"""The local address the kernel would send from to reach a remote: the ``local`` of a UDP path
(a path leaves from one address, and the link monitor fails paths by that address).

A UDP socket bound to the wildcard does not know its source until the kernel routes a datagram.
``connect()`` on a throwaway UDP socket runs the same route lookup without sending anything
(UDP's connect only sets the default destination, udp(7)), and ``getsockname`` then reports the
source address the route picked.
"""

from __future__ import annotations

import ipaddress
import socket

from node.proto.vocabulary import IpEndpoint

__all__ = ["source_address"]


def source_address(remote: IpEndpoint) -> str | None:
    """The source IP (as text) the kernel picks for datagrams to ``remote``; None when no route."""
    family = socket.AF_INET6 if remote.ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            # Port 0 is not a valid destination for connect(); any port routes the same.
            probe.connect((str(remote.ip), remote.port or 9))
            host = str(probe.getsockname()[0]).split("%", 1)[0]  # drop an IPv6 zone
    except OSError:
        return None  # no route to it (ENETUNREACH) or no address family support
    return str(ipaddress.ip_address(host))
