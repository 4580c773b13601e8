"""Where to dial a peer: a ``PeerUri``'s host resolved to one IP endpoint (bounded, on the node's
resolver pool), and the backoff between attempts to reach a static peer."""

from __future__ import annotations

import ipaddress
import socket

from node.os_errors import os_reason
from node.proto.peer_uri import PeerUri
from node.proto.vocabulary import IpEndpoint, PeerId
from node.services.coordinator.errors import ApiReason, PeerUnreachableError
from node.transports import resolver


async def endpoint_of(peer: PeerId, uri: PeerUri) -> IpEndpoint:
    """``uri``'s address (the first the resolver gives for a name). Run it under a timeout."""
    try:
        return IpEndpoint(ipaddress.ip_address(uri.host), uri.port)
    except ValueError:
        pass  # a name
    try:
        infos = await resolver.getaddrinfo(uri.host, uri.port, socktype=socket.SOCK_DGRAM)
    except OSError as exc:
        raise PeerUnreachableError(
            ApiReason.CONNECT_FAILED, f"{peer} at {uri}: cannot resolve {uri.host}: {os_reason(exc)}"
        ) from exc
    host = str(infos[0][4][0]).split("%", 1)[0]
    return IpEndpoint(ipaddress.ip_address(host), uri.port)


class Backoff:
    """Exponential waits from ``first`` up to ``ceiling``; ``reset`` after a success."""

    def __init__(self, first: float, ceiling: float) -> None:
        self._first = first
        self._ceiling = max(first, ceiling)
        self._next = first

    def next(self) -> float:
        wait = self._next
        self._next = min(self._next * 2, self._ceiling)
        return wait

    def reset(self) -> None:
        self._next = self._first
