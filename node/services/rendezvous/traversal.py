"""One traversal to a peer the introducer put us in touch with: relay first, then upgrade.

1. The relay path, at once (the game never waits for the punch). When both sides have a TURN
   allocation, side A dials B's relayed address through its own relay (relay to relay: both
   sides' path is of kind ``turn`` and works whatever their NATs, UDP-blocked ones included, whose
   relay runs over TCP or TLS); B first installs the permission for A's relayed address (RFC 8656
   §9) and only then lets the introducer send its Accept, so A's first handshake is let in. When
   only one side has a relay, the other dials it from its UDP port (the relay's side installs the
   permission for the other's addresses). Without any relay there is only the punch.
2. The punch (node.transports.punch), when the two NAT profiles allow one (node.proto.punch.plan):
   both sides fire together (A half a measured round trip after its Sync, B when the Sync
   arrives); A dials the secure session on the nominated pair and B waits for it. The UDP path
   then joins the coordinator, which moves traffic to it; the relay path stays as a fallback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

from node.errors import NodeError
from node.proto.coordinator.paths import endpoint_text
from node.proto.punch import wire
from node.proto.punch.agent import PunchSetup
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.events import Method
from node.proto.punch.plan import NatProfile, Role, Technique, choose
from node.proto.vocabulary import IpEndpoint, PeerId
from node.services.coordinator import PathMethod, Traversal, TraversalOutcome
from node.services.rendezvous.candidates import Gathered
from node.transports.base import SocketFactory
from node.transports.punch.connect import punch_and_connect
from node.transports.punch.driver import MAX_SOCKETS, PunchResult
from node.transports.turn.relay import TurnRelayTransport
from node.transports.udp.transport import UdpTransport

log = logging.getLogger(__name__)

# B waits this long for A's Sync (it comes one introducer round trip after the Accept).
FIRE_WAIT_S = 5.0
# B installs the permission for A's relay before it accepts; never longer than this.
PERMISSION_WAIT_S = 2.0

_METHODS = {
    Method.HOST: PathMethod.HOST,
    Method.SRFLX: PathMethod.SRFLX,
    Method.PRFLX: PathMethod.PRFLX,
    Method.PREDICTION: PathMethod.PREDICTION,
    Method.BIRTHDAY: PathMethod.BIRTHDAY,
}


@dataclass(frozen=True, slots=True)
class Introduction:
    """What both sides know once the introducer exchanged their offers."""

    side: wire.Side
    peer: PeerId
    token: bytes
    remote: tuple[Candidate, ...]
    remote_nat: NatProfile
    local: Gathered


@dataclass(frozen=True, slots=True)
class Parts:
    """What a traversal drives; ``turn`` gives the relay transport while it is up."""

    own_id: PeerId
    udp: UdpTransport
    turn: Callable[[], TurnRelayTransport | None]
    record: Callable[[PeerId, Traversal], None]
    punch: bool
    connect_timeout_s: float
    socket_factory: SocketFactory = socket.socket


def _first(candidates: tuple[Candidate, ...], kind: CandidateKind) -> IpEndpoint | None:
    for candidate in candidates:
        if candidate.kind is kind:
            ip, port = candidate.address
            return IpEndpoint(ip, port)
    return None


class TraversalRun:
    def __init__(
        self,
        intro: Introduction,
        parts: Parts,
        started: float,
        clock: Callable[[], float],
        fire_at: float | None = None,  # A's, from the rendezvous timing; B waits for ``fire``
    ) -> None:
        self.intro = intro
        self._fire_at = fire_at
        self.parts = parts
        self.clock = clock
        self.record = Traversal(started)
        self._fired: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        parts.record(intro.peer, self.record)

    @property
    def plan_technique(self) -> Technique:
        return choose(self.intro.local.nat, self.intro.remote_nat).technique

    def fire(self, at: float) -> None:
        """B: the requester's Sync arrived: punch now."""
        if not self._fired.done():
            self._fired.set_result(at)

    def update(self, **changes: object) -> None:
        self.record = replace(self.record, **changes)  # type: ignore[arg-type]
        self.parts.record(self.intro.peer, self.record)

    # -- the relay ----------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Before B accepts: the permission for the requester's relayed address (or for its
        addresses, when only we have a relay), so the first handshake through it is let in."""
        turn = self.parts.turn()
        if turn is None:
            return
        remote_relay = _first(self.intro.remote, CandidateKind.RELAY)
        targets = (
            [remote_relay]
            if remote_relay is not None
            else [IpEndpoint(*c.address) for c in self.intro.remote if c.kind is not CandidateKind.RELAY]
        )
        for target in targets:
            address = (target.ip, target.port)
            turn.relay.open_peer(address)
        if targets:
            try:
                async with asyncio.timeout(PERMISSION_WAIT_S):
                    await turn.relay.peer_ready((targets[0].ip, targets[0].port))
            except (TimeoutError, NodeError) as exc:
                log.info("rendezvous: no TURN permission for %s yet: %s", targets[0], exc)

    async def relay(self) -> None:
        """Dial the relay path when it is this side's to dial."""
        intro, parts = self.intro, self.parts
        turn = parts.turn()
        remote_relay = _first(intro.remote, CandidateKind.RELAY)
        if remote_relay is None:
            return  # the peer dials our relay (prepare), or there is no relay at all
        self.update(relays=self.record.relays | {endpoint_text(remote_relay)})
        try:
            async with asyncio.timeout(parts.connect_timeout_s):
                if turn is not None and intro.side is wire.Side.A:
                    await turn.connect(intro.peer, remote_relay)
                elif turn is None:
                    await parts.udp.connect(intro.peer, remote_relay)
        except (TimeoutError, NodeError) as exc:
            log.info("rendezvous: no relay path to %s via %s: %s", intro.peer, remote_relay, exc)

    # -- the punch ----------------------------------------------------------------------------

    async def punch(self) -> TraversalOutcome:
        intro, parts = self.intro, self.parts
        plan = choose(intro.local.nat, intro.remote_nat)
        if not parts.punch or plan.technique is Technique.RELAY:
            return TraversalOutcome.RELAY
        if self._fire_at is not None:
            fire_at = self._fire_at
        else:
            try:
                async with asyncio.timeout(FIRE_WAIT_S):
                    fire_at = await self._fired
            except TimeoutError:
                log.info("rendezvous: %s never synced; no punch", intro.peer)
                return TraversalOutcome.RELAY
        sockets = MAX_SOCKETS if plan.technique is Technique.BIRTHDAY and plan.role is Role.TARGET else 1
        setup = PunchSetup(
            side=intro.side,
            token=intro.token,
            payload=parts.own_id.encode(),
            plan=plan,
            remote=intro.remote,
            sockets=sockets,
            fire_at=fire_at,
        )
        try:
            result = await punch_and_connect(
                parts.udp,
                setup,
                intro.peer,
                socket_factory=parts.socket_factory,
                rng=random.Random(),
                clock=self.clock,
                on_proven=self._proven,
            )
        except NodeError as exc:
            log.info("rendezvous: punched path to %s not proven: %s", intro.peer, exc)
            return TraversalOutcome.RELAY
        if result.nominated is None or result.remote is None:
            log.info(
                "rendezvous: no direct path to %s (%s, %s; %d checks)",
                intro.peer,
                plan.technique.value,
                result.failure.name.lower() if result.failure else "?",
                result.stats.requests_sent,
            )
            return TraversalOutcome.RELAY
        return TraversalOutcome.DIRECT

    def _proven(self, result: PunchResult) -> None:
        """The secure session on the punched path is proven: record it now (the punch still
        answers late checks for a while)."""
        nominated, remote = result.nominated, result.remote
        assert nominated is not None and remote is not None
        self.update(
            direct=endpoint_text(remote),
            method=_METHODS[nominated.method],
            direct_after_s=self.clock() - self.record.started,
        )
        log.info(
            "rendezvous: direct path to %s at %s (%s) after %.0f ms, %d checks",
            self.intro.peer,
            remote,
            nominated.method.value,
            (self.record.direct_after_s or 0) * 1000,
            result.stats.requests_sent,
        )

    async def run(self) -> TraversalOutcome:
        """The relay path and the punch, side by side; the outcome when both ended."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.relay())
            outcome = await self.punch()
        self.update(outcome=outcome)
        return outcome
