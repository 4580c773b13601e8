"""``bitcraps-node ping udp://HOST:PORT``: the datagram secure session's handshake, then probes.

The client is the node's own UDP transport (node.services.udp.build_transport: the same settings
and ``[trust]`` policy as the daemon's port) bound to an ephemeral port, so a ping proves exactly
what the daemon would accept. RTTs are the transport's probes (a PING sealed like data, answered
by a PONG), one per ``--count``.

The datagram handshake is bound to the peer id it dials (SIGMA-I: the initiator checks the id the
responder proves against the one it expected, node.proto.session.handshake). Without ``--peer``
a first handshake learns the id: ``_Learner`` asks the trust policy about the key the peer proved
(no expected id), notes the id the policy accepts, and the handshake then stops as a mismatch
against a placeholder no peer id can equal. A second handshake dials that id and is the proof
reported. A key the policy refuses fails the first handshake with its typed reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Any

from node.config import Config
from node.os_errors import os_reason
from node.proto.identity import Identity
from node.proto.session.trust import PeerVerifier
from node.proto.vocabulary import IpEndpoint, PeerId, TransportReason
from node.services.trust import trust_policy
from node.services.udp import build_transport
from node.transports.base import TransportPeerError
from node.transports.udp.transport import UdpTransport

# Not base32: no peer id (node.proto.peer_uri.PEER_ID_CHARS) can equal it.
_UNKNOWN = "?"


class _Learner:
    """The trust policy, also noting the id of a key it accepted; ``_UNKNOWN`` expects nobody."""

    def __init__(self, inner: PeerVerifier) -> None:
        self.inner = inner
        self.proven: str | None = None

    def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
        expected = None if expected_peer_id == _UNKNOWN else expected_peer_id
        peer = self.inner.verify(public_key, credential, expected)
        if expected_peer_id == _UNKNOWN:
            self.proven = peer
        return peer


async def ping_udp(
    cfg: Config, ident: Identity, endpoint: IpEndpoint, expected: str | None, count: int
) -> dict[str, Any]:
    """One handshake with ``endpoint`` (two without ``expected``) and ``count`` probe round trips.

    Raises TransportPeerError (refused, or no answer: CONNECT_TIMEOUT), TrustConfigError, BindError.
    """
    # An ephemeral port (the daemon's own port is its to use) on the address the kernel routes
    # from towards the peer.
    local = _source_address(endpoint)
    client = dataclasses.replace(cfg, node=dataclasses.replace(cfg.node, listen_address=local, udp_port=0))
    mode = trust_policy(cfg).mode
    learners: list[_Learner] = []

    def learn(verifier: PeerVerifier) -> PeerVerifier:
        learners.append(_Learner(verifier))
        return learners[0]

    async with build_transport(client, ident, wrap_verifier=learn) as transport:
        learner = learners[0]
        peer = expected if expected is not None else await _learn(transport, learner, endpoint)
        await _connect(transport, peer, endpoint)
        rtts = [await transport.ping(peer) * 1000 for _ in range(count)]
    return {
        "peer_id": peer,
        "address": str(endpoint),
        "transport": "udp",
        "trust": mode.value,
        "rtt_ms": [round(r, 3) for r in rtts],
        "rtt_ms_min": round(min(rtts), 3),
    }


def _source_address(endpoint: IpEndpoint) -> str:
    """The local address the route to ``endpoint`` uses (connecting a UDP socket sends nothing)."""
    family = socket.AF_INET6 if endpoint.ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((str(endpoint.ip), endpoint.port))
            return str(probe.getsockname()[0]).split("%", 1)[0]
    except OSError as exc:
        raise TransportPeerError(TransportReason.CONNECT_FAILED, f"no route to it: {os_reason(exc)}") from exc


async def _learn(transport: UdpTransport, learner: _Learner, endpoint: IpEndpoint) -> PeerId:
    try:
        await _connect(transport, _UNKNOWN, endpoint)
    except TransportPeerError as exc:
        if exc.reason is not TransportReason.PEER_MISMATCH or learner.proven is None:
            raise
        return learner.proven
    raise AssertionError("a handshake expecting no peer id completed")


async def _connect(transport: UdpTransport, peer: PeerId, endpoint: IpEndpoint) -> None:
    """``connect``, its timeout said as such: the dialled id means nothing to the operator when
    it is the placeholder."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await transport.connect(peer, endpoint)
    except TransportPeerError as exc:
        if exc.reason is not TransportReason.CONNECT_TIMEOUT:
            raise
        raise TransportPeerError(
            TransportReason.CONNECT_TIMEOUT,
            f"no answer to the UDP handshake within {loop.time() - started:.1f} s",
        ) from exc
