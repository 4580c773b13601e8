"""The node's TURN relay: the transport built from ``[turn]`` (servers in order, a breaker each
from ``[breaker]``), kept up in the background, and its numbers for ``status``.

A relay is a fallback, so the node does not wait for it: ``async with TurnService(config, identity)``
returns at once and one task (in the service's own TaskGroup) brings the relay up, trying again
after ``breaker.recovery_timeout_s`` while every server fails, then holds it until the node stops;
``up`` is set while ``transport`` is up (the coordinator reads its events and sends on it). Once
up, the relay re-allocates by itself when a server is lost (``RelayAllocation``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import Config, TurnSection
from node.proto.identity import Identity
from node.proto.turn.credentials import Credentials, rest_credentials
from node.proto.turn.errors import TurnError
from node.proto.turn.uri import TurnServerAddress, TurnTransport, parse_turn_uri
from node.proto.vocabulary import IpEndpoint, TransportState
from node.services.background import run_in_background
from node.services.frame_limit import frame_limit
from node.services.service import TransportService
from node.services.trust import session_trust, trust_policy, warn_if_development
from node.services.udp import reassembly_limits
from node.transports.turn.connection import tls_context
from node.transports.turn.relay import RelaySettings, TurnRelayTransport

log = logging.getLogger(__name__)


def server_addresses(section: TurnSection) -> tuple[TurnServerAddress, ...]:
    # node.config has checked every URI: none is dropped here.
    return tuple(a for a in (parse_turn_uri(text) for text in section.servers) if a is not None)


def credentials_source(section: TurnSection, clock: Callable[[], float]) -> Callable[[], Credentials]:
    """Static credentials, or fresh TURN REST API ones (``clock`` is the wall clock) per use."""
    if not section.shared_secret:
        static = Credentials(section.username, section.password)
        return lambda: static

    def ephemeral() -> Credentials:
        expiry = int(clock()) + section.credential_ttl_s
        return rest_credentials(section.shared_secret, section.username, expiry)

    return ephemeral


def build_transport(config: Config, identity: Identity, **options: Any) -> TurnRelayTransport:
    """The relay transport as ``[turn]``, ``[transport]``, ``[trust]`` and ``[breaker]`` describe
    it: peers through the relay prove their ids by the same trust as on UDP and TCP-TLS. Raises
    TrustConfigError for unusable trust settings."""
    section = config.turn
    servers = server_addresses(section)
    if any(s.transport is TurnTransport.TLS for s in servers):
        options.setdefault("ssl_context", tls_context(Path(section.ca_file) if section.ca_file else None))
        if section.server_name:
            options.setdefault("server_hostname", section.server_name)
    options.setdefault("connect_timeout", config.transport.connect_timeout_s)
    verifier, credential = session_trust(config, identity)
    t = config.transport
    return TurnRelayTransport(
        servers,
        credentials_source(section, time.time),
        identity,
        verifier,
        credential=credential,
        breaker=config.breaker.new_breaker,
        settings=RelaySettings(
            max_connections=t.max_connections,
            connect_timeout=t.connect_timeout_s,
            max_message=frame_limit(config),
            health_check_interval=t.health_check_interval_s,
            reassembly=reassembly_limits(config),
        ),
        **options,
    )


@dataclass(frozen=True, slots=True)
class TurnView:
    """What ``status`` shows under ``turn``."""

    state: TransportState
    trust: str  # the trust policy's description, as under ``tcp_tls``
    relayed_address: str | None
    server: str | None
    allocations: int
    losses: int
    failed_attempts: int
    peers: int
    messages_sent: int
    messages_received: int

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "trust": self.trust,
            "relayed_address": self.relayed_address,
            "server": self.server,
            "allocations": self.allocations,
            "losses": self.losses,
            "failed_attempts": self.failed_attempts,
            "peers": self.peers,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
        }


class TurnService(TransportService[TurnView]):
    name = "turn"

    def __init__(self, config: Config, identity: Identity) -> None:
        super().__init__()
        self.config = config
        self.identity = identity
        self.transport: TurnRelayTransport = build_transport(config, identity)
        # Warned here, not in build_transport: the keeper builds a transport again after each
        # failed attempt, and the policy is the same every time.
        policy = trust_policy(config)
        warn_if_development(policy, "TURN")
        self.trust = policy.describe()
        self._phase = TransportState.STOPPED  # the keeper's: READY once the relay is up
        self.up = asyncio.Event()  # set while ``transport`` is up
        self._failures = 0

    async def _start(self, stack: AsyncExitStack) -> None:
        self._phase = TransportState.STARTING
        stack.callback(self._stopped)  # the first in, so the last out: after the keeper ended
        await run_in_background(stack, self._keep(), "turn-keeper")

    def _stopped(self) -> None:
        self._phase = TransportState.STOPPED

    @property
    def state(self) -> TransportState:
        # Once up, the relay's own: DEGRADED between a lost allocation and the next.
        return self.transport.health().state if self._phase is TransportState.READY else self._phase

    async def _keep(self) -> None:
        while True:
            try:
                async with self.transport:
                    self._phase = TransportState.READY
                    self.up.set()
                    try:
                        await asyncio.get_running_loop().create_future()  # held until the node stops
                    finally:
                        self.up.clear()
            except TurnError as exc:
                self._failures += 1
                self._phase = TransportState.FAILED
                log.warning("no TURN server usable (%s); trying again later", exc)
            await asyncio.sleep(self.config.breaker.recovery_timeout_s)
            # A fresh one: the last one is closed.
            self.transport = build_transport(self.config, self.identity)

    def status(self) -> TurnView:
        transport = self.transport
        relay = transport.relay
        health = transport.health()
        relayed = transport.relayed
        conn = relay.connection
        return TurnView(
            state=self.state,
            trust=self.trust,
            relayed_address=None if relayed is None else str(IpEndpoint(relayed[0], relayed[1])),
            server=None if conn is None else str(conn.server),
            allocations=relay.counters.allocations,
            losses=relay.counters.losses,
            failed_attempts=relay.counters.failed_attempts + self._failures,
            peers=health.connections,
            messages_sent=health.messages_sent,
            messages_received=health.messages_received,
        )
