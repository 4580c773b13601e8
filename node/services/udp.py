"""The node's UDP port: the UDP transport (node.transports.udp), which also answers STUN there.

``async with UdpService(config, identity) as udp:`` binds ``node.listen_address`` port
``node.udp_port`` and serves until exit: STUN Binding requests answered (``proto.stun.responder``),
secure sessions with peers under the same trust policy as TCP-TLS (fleet CA, pins, development
mode: the ``[trust]`` section), handshakes above ``udp.handshakes_per_second`` asked for a
cookie first. Nothing received can raise into the event loop: each datagram is handled behind the
service's ``ConnectionIsolation`` wall. The coordinator (node.services.coordinator) consumes the
transport's events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any

from node.config import Config
from node.errors import LocalError
from node.proto.datagram.reassembly import ReassemblyLimits
from node.proto.identity import Identity
from node.proto.session.table_types import DEFAULT_TABLE_CONFIG
from node.proto.session.trust import PeerVerifier
from node.proto.stun.responder import BindingResponder, Outcome
from node.proto.vocabulary import IpEndpoint, TransportState
from node.services.frame_limit import frame_limit
from node.services.service import TransportService
from node.services.trust import session_trust, trust_policy, warn_if_development
from node.transports.isolation import ConnectionIsolation
from node.transports.udp.transport import BindError, StunResponseHook, UdpSettings, UdpTransport

__all__ = ["BindError", "UdpService", "UdpView", "build_transport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UdpView:
    """What ``status`` shows of the UDP port: under ``stun`` every datagram the responder judged,
    by outcome; under ``udp`` the sessions and their counts, and the datagrams whose handling
    failed (a bug the wall contained), by exception type."""

    outcomes: tuple[tuple[Outcome, int], ...]  # every Outcome, zeros included
    faults: dict[str, int]
    trust: str = ""  # the trust policy's description, as under ``tcp_tls``
    sessions: int = 0
    handshakes: int = 0
    cookies_sent: int = 0
    malformed: int = 0
    reassembly_drops: int = 0
    punch_unknown: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "trust": self.trust,
            "sessions": self.sessions,
            "handshakes": self.handshakes,
            "cookies_sent": self.cookies_sent,
            "malformed": self.malformed,
            "reassembly_drops": self.reassembly_drops,
            "punch_unknown": self.punch_unknown,
            "faults": self.faults,
        }

    def stun_json(self) -> dict[str, int]:
        return {outcome.value: count for outcome, count in self.outcomes}


def reassembly_limits(config: Config) -> ReassemblyLimits:
    """Reassembly's caps on a datagram path (UDP, TURN) for ``transport.max_message_bytes`` (and
    the delivery header around it: node.services.frame_limit)."""
    largest = frame_limit(config)
    # A sender may hold two of the largest messages, all senders four (the defaults at 1 MiB).
    return ReassemblyLimits(
        max_message=largest, sender_max_bytes=max(2 << 20, 2 * largest), max_bytes=max(4 << 20, 4 * largest)
    )


def build_transport(
    config: Config,
    identity: Identity,
    *,
    responder: BindingResponder | None = None,
    on_stun_response: StunResponseHook | None = None,
    wall: ConnectionIsolation | None = None,
    wrap_verifier: Callable[[PeerVerifier], PeerVerifier] | None = None,
) -> UdpTransport:
    """The UDP transport as configured. Raises TrustConfigError for unusable trust settings.
    ``wrap_verifier`` wraps the trust policy's verifier (the ping CLI notes the id a key proves)."""
    verifier: PeerVerifier
    verifier, credential = session_trust(config, identity)
    warn_if_development(verifier.policy, "UDP")
    t = config.transport
    settings = UdpSettings(
        max_message=frame_limit(config),
        handshakes_per_second=config.udp.handshakes_per_second,
        connect_timeout=t.connect_timeout_s,
        health_check_interval=t.health_check_interval_s,
        performance_samples=t.performance_samples,
        table=replace(DEFAULT_TABLE_CONFIG, max_sessions=t.max_connections),
        reassembly=reassembly_limits(config),
    )
    return UdpTransport(
        identity,
        verifier if wrap_verifier is None else wrap_verifier(verifier),
        settings,
        listen=(config.node.listen_address, config.node.udp_port),
        credential=credential,
        responder=responder if responder is not None else BindingResponder(config.node.software),
        on_stun_response=on_stun_response,
        wall=wall,
    )


class UdpService(TransportService[UdpView]):
    name = "udp"

    def __init__(
        self, config: Config, identity: Identity, *, responder: BindingResponder | None = None
    ) -> None:
        super().__init__()
        self.wall = ConnectionIsolation("udp")
        self.transport = build_transport(config, identity, responder=responder, wall=self.wall)
        self.trust = trust_policy(config).describe()  # the policy the transport's verifier holds

    @property
    def responder(self) -> BindingResponder:
        return self.transport.responder

    @property
    def state(self) -> TransportState:
        return self.transport.state

    async def _start(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self.transport)

    def status(self) -> UdpView:
        counters = self.responder.counters.copy()
        metrics = self.transport.metrics()
        # Every datagram on the port is counted under ``stun`` as it always was: the session
        # table's and the punch checks are not STUN, whatever became of them (that is under ``udp``).
        counters[Outcome.NOT_STUN] += metrics.session_datagrams + metrics.punch_datagrams
        return UdpView(
            tuple((o, counters[o]) for o in Outcome),
            self.wall.snapshot(),
            trust=self.trust,
            sessions=metrics.sessions,
            handshakes=metrics.handshakes,
            cookies_sent=metrics.cookies_sent,
            malformed=metrics.malformed,
            reassembly_drops=metrics.reassembly_drops,
            punch_unknown=metrics.punch_unknown,
        )

    @property
    def local(self) -> IpEndpoint:
        local = self.transport.local
        if local is None:
            raise LocalError("UDP service is not running")
        return local

    @property
    def listen_url(self) -> str:
        return f"udp://{self.local}"
