"""Address text as configs and command lines give it: ``host:port``, ``ipv4:port``, ``[ipv6]:port``.

Here, below config, so that config, the drivers (NAT discovery's server list) and the CLI parse
it one way.
"""

from __future__ import annotations

import ipaddress


def parse_host_port(text: str) -> tuple[str, int] | None:
    """'host:port', 'ipv4:port' or '[ipv6]:port' -> (host, port); None when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
        return host[1:-1], int(port)
    if ":" in host or "[" in host or "]" in host:
        return None  # an IPv6 address must be bracketed, or its port is ambiguous
    return host, int(port)
