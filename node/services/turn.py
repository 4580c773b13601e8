"""The node's TURN relay: the transport built from ``[turn]`` (servers in order, a breaker each
from ``[breaker]``), kept up in the background, and its numbers for ``status``.

A relay is a fallback, so the node does not wait for it: ``async with TurnService(config)``
returns at once and one task (in the service's own TaskGroup) brings the relay up, trying again
after ``breaker.recovery_timeout_s`` while every server fails, then drains its events into logs
until the coordinator consumes them. Once up, the relay re-allocates by itself when a server is
lost (``RelayAllocation``).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from node.config import Config
from node.proto.turn.errors import TurnError
from node.proto.vocabulary import IpEndpoint, MessageReceived, TransportState
from node.services.background import run_in_background
from node.transports.turn.relay import TurnRelayTransport, build_transport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TurnView:
    """What ``status`` shows under ``turn``."""

    state: TransportState
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
            "relayed_address": self.relayed_address,
            "server": self.server,
            "allocations": self.allocations,
            "losses": self.losses,
            "failed_attempts": self.failed_attempts,
            "peers": self.peers,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
        }


class TurnService:
    name = "turn"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.transport: TurnRelayTransport = build_transport(config)
        self.state = TransportState.STOPPED
        self._failures = 0
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        self.state = TransportState.STARTING
        async with AsyncExitStack() as stack:
            await run_in_background(stack, self._keep(), "turn-keeper")
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
        self.state = TransportState.STOPPED

    async def _keep(self) -> None:
        while True:
            try:
                async with self.transport:
                    self.state = TransportState.READY
                    await self._drain()
                return
            except TurnError as exc:
                self._failures += 1
                self.state = TransportState.FAILED
                log.warning("no TURN server usable (%s); trying again later", exc)
            await asyncio.sleep(self.config.breaker.recovery_timeout_s)
            self.transport = build_transport(self.config)  # a fresh one: the last one is closed

    async def _drain(self) -> None:
        async for event in self.transport.events():
            if isinstance(event, MessageReceived):
                log.debug("turn message %d from %s", event.frame.message_id, event.peer)
            else:
                log.info("turn %s", event)

    def view(self) -> TurnView:
        transport = self.transport
        relay = transport.relay
        health = transport.health()
        relayed = transport.relayed
        conn = relay.connection
        state = health.state if self.state is TransportState.READY else self.state
        return TurnView(
            state=state,
            relayed_address=None if relayed is None else str(IpEndpoint(relayed[0], relayed[1])),
            server=None if conn is None else str(conn.server),
            allocations=relay.counters.allocations,
            losses=relay.counters.losses,
            failed_attempts=relay.counters.failed_attempts + self._failures,
            peers=health.connections,
            messages_sent=health.messages_sent,
            messages_received=health.messages_received,
        )
