"""A peer's address as configs and command lines give it: ``udp://HOST:PORT`` or ``tls://HOST:PORT``
(``[ipv6]`` in brackets), and ``<peer id>@<uri>`` for a static peer (``[peers] static``).

Pure text parsing, here below config so that ``[peers] static`` and ``connect PEER_ID URI`` read
addresses one way. A peer is named by its id, never by an address (DESIGN.md): the address is only
where to try; the transport proves the id there.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from node.errors import LocalError, ReasonError
from node.proto.addresses import parse_host_port
from node.proto.vocabulary import PeerId, TransportKind

PEER_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")
PEER_ID_LENGTH = 52  # base32 of SHA-256 without padding (node.proto.identity.peer_id_of)

# The URI scheme of each path kind a peer can be dialled on by address (TURN and BLE are not).
SCHEMES = {"udp": TransportKind.UDP, "tls": TransportKind.TCP_TLS}


def is_peer_id(text: str) -> bool:
    return len(text) == PEER_ID_LENGTH and set(text) <= PEER_ID_CHARS


class PeerUriProblem(Enum):
    NO_PEER_ID = "no peer id"
    BAD_PEER_ID = "not a peer id"
    BAD_SCHEME = "unknown scheme"
    BAD_ADDRESS = "bad address"


class PeerUriError(ReasonError[PeerUriProblem], LocalError):
    """Text that is not a peer address; ``reason`` says which part is wrong."""


@dataclass(frozen=True, slots=True)
class PeerUri:
    """Where to try a peer: a path kind and a host (an IP literal, normalised, or a lower-case name)."""

    kind: TransportKind
    host: str
    port: int

    def __str__(self) -> str:
        scheme = next(s for s, k in SCHEMES.items() if k is self.kind)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class StaticPeer:
    peer_id: PeerId
    uri: PeerUri

    def __str__(self) -> str:
        return f"{self.peer_id}@{self.uri}"


def parse_peer_uri(text: str) -> PeerUri:
    """``udp://HOST:PORT`` or ``tls://HOST:PORT``. Raises PeerUriError."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        raise PeerUriError(
            PeerUriProblem.BAD_SCHEME, f"{text!r} must start with {' or '.join(s + '://' for s in SCHEMES)}"
        )
    parsed = parse_host_port(rest)
    if parsed is None:
        raise PeerUriError(
            PeerUriProblem.BAD_ADDRESS,
            f"{rest!r} is not 'host:port' or '[ipv6]:port' with a port from 1 to 65535",
        )
    host, port = parsed
    return PeerUri(SCHEMES[scheme], _normal_host(host), port)


def parse_static_peer(text: str) -> StaticPeer:
    """``<peer id>@udp://HOST:PORT`` or ``<peer id>@tls://HOST:PORT``. Raises PeerUriError."""
    peer_id, sep, uri = text.partition("@")
    if not sep:
        raise PeerUriError(PeerUriProblem.NO_PEER_ID, f"{text!r} must be '<peer id>@udp://host:port'")
    if not is_peer_id(peer_id):
        raise PeerUriError(PeerUriProblem.BAD_PEER_ID, f"{peer_id!r} is not 52 lowercase base32 characters")
    return StaticPeer(peer_id, parse_peer_uri(uri))


@dataclass(frozen=True, slots=True)
class IntroducerUri:
    """An introducer (``[rendezvous] introducers``): ``tls://HOST:PORT``, optionally pinned as
    ``<peer id>@tls://HOST:PORT`` (then the link is refused unless TLS proves that id)."""

    peer_id: PeerId | None
    uri: PeerUri

    def __str__(self) -> str:
        return str(self.uri) if self.peer_id is None else f"{self.peer_id}@{self.uri}"


def parse_introducer(text: str) -> IntroducerUri:
    """``tls://HOST:PORT`` or ``<peer id>@tls://HOST:PORT``. Raises PeerUriError."""
    head, sep, tail = text.partition("@")
    peer_id: PeerId | None = None
    uri_text = text
    if sep and "://" not in head:
        if not is_peer_id(head):
            raise PeerUriError(PeerUriProblem.BAD_PEER_ID, f"{head!r} is not 52 lowercase base32 characters")
        peer_id, uri_text = head, tail
    uri = parse_peer_uri(uri_text)
    if uri.kind is not TransportKind.TCP_TLS:
        raise PeerUriError(PeerUriProblem.BAD_SCHEME, f"{text!r}: an introducer is reached over tls://")
    return IntroducerUri(peer_id, uri)


def _normal_host(host: str) -> str:
    """One spelling per address, so that duplicates are found: ``0:0::1`` is ``::1``, names are
    case-insensitive (RFC 4343)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()
