"""The node's TCP-TLS listener: the transport built from ``[tcp_tls]``, ``[transport]`` and
``[breaker]``, with the node's trust policy (``[trust]``, node.services.trust), and its numbers for
``status``.

``async with TcpTlsService(config, identity, key_file) as tls:`` listens until exit. The
coordinator (node.services.coordinator) consumes the transport's events.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import Config
from node.proto.identity import Identity
from node.proto.vocabulary import TransportState
from node.services.frame_limit import frame_limit
from node.services.service import TransportService
from node.services.trust import trust_policy, trust_settings, warn_if_development
from node.transports.tcp_tls.link import LinkSettings, make_credentials
from node.transports.tcp_tls.slots import Refusal
from node.transports.tcp_tls.transport import TcpTlsSettings, TcpTlsTransport

log = logging.getLogger(__name__)


def build_transport(
    config: Config, identity: Identity, key_file: Path, *, listen: bool = True
) -> TcpTlsTransport:
    """The TCP-TLS transport as configured. Raises TrustConfigError for unusable trust settings."""
    policy = trust_policy(config)
    warn_if_development(policy, "TCP-TLS")
    creds = make_credentials(identity, key_file, policy, trust_settings(config).cert_file)
    t = config.transport
    settings = TcpTlsSettings(
        LinkSettings(
            max_message=frame_limit(config),
            connect_timeout=t.connect_timeout_s,
            handshake_timeout=config.tcp_tls.handshake_timeout_s,
            keepalive=t.keepalive_s,
        ),
        max_connections=t.max_connections,
        max_pending=config.tcp_tls.max_pending,
        max_pending_per_address=config.tcp_tls.max_pending_per_address,
        pool_size=t.pool_size,
        health_check_interval=t.health_check_interval_s,
        performance_samples=t.performance_samples,
    )
    address = (config.node.listen_address, config.tcp_tls.port) if listen else None
    return TcpTlsTransport(creds, settings, config.breaker.new_breaker, address)


@dataclass(frozen=True, slots=True)
class TcpTlsView:
    """What ``status`` shows under ``tcp_tls``."""

    listen: str
    trust: str
    state: TransportState
    connections: int
    pending: int  # inbound connections that have not proven an identity yet
    peers: int
    handshakes: int
    handshake_failures: int
    refused: int
    refusals: dict[Refusal, int]  # refused connections by why (told inside TLS or closed at once)
    bytes_sent: int
    bytes_received: int
    rtt_ms: float | None
    faults: dict[str, int]  # connections ended by a fault the isolation wall contained, by type

    def to_json(self) -> dict[str, Any]:
        return {
            "listen": self.listen,
            "trust": self.trust,
            "state": self.state.value,
            "connections": self.connections,
            "pending": self.pending,
            "peers": self.peers,
            "handshakes": self.handshakes,
            "handshake_failures": self.handshake_failures,
            "refused": self.refused,
            "refusals": {reason.value: n for reason, n in self.refusals.items()},
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "faults": dict(self.faults),
        }


class TcpTlsService(TransportService[TcpTlsView]):
    name = "tcp_tls"

    def __init__(self, config: Config, identity: Identity, key_file: Path) -> None:
        super().__init__()
        self.transport = build_transport(config, identity, key_file)

    async def _start(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self.transport)

    @property
    def state(self) -> TransportState:
        return self.transport.state

    @property
    def listen_url(self) -> str:
        local = self.transport.local
        return f"tls://{local}" if local is not None else "tls://-"

    def status(self) -> TcpTlsView:
        health = self.transport.health()
        metrics = self.transport.metrics()
        return TcpTlsView(
            listen=self.listen_url,
            trust=self.transport.creds.policy.describe(),
            state=health.state,
            connections=health.connections,
            pending=metrics.pending,
            peers=len(self.transport.peers()),
            handshakes=metrics.handshakes,
            handshake_failures=sum(n for _, n in metrics.handshake_failures),
            refused=sum(n for _, n in metrics.refused),
            refusals=dict(metrics.refused),
            bytes_sent=health.bytes_sent,
            bytes_received=health.bytes_received,
            rtt_ms=health.rtt_ms,
            faults=self.transport.isolation.snapshot(),
        )
