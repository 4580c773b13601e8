"""The rendezvous service: introducer links, the introducer itself, and traversals.

- Every ``[rendezvous] introducers`` entry gets a TCP-TLS link, kept dialled with backoff (a
  pinned peer id is checked by TLS); over it the node registers its candidates and NAT profile,
  again whenever they change (NAT discovery, the TURN allocation, the link monitor).
- With ``serve`` the node is an introducer (node.proto.rendezvous.introducer): registrations and
  introductions of the peers linked to it; a peer's registration ends with its link.
- ``introduce(peer, wait)`` (``connect PEER_ID`` without addresses) asks the registered
  introducers in turn until one knows the peer or ``wait`` runs out; each accepted introduction
  starts a traversal (relay first, then the punch: node.services.rendezvous.traversal), owned by
  this service's TaskGroup, at most one per peer.

Rendezvous frames ride the coordinator's TCP-TLS paths (type byte 3, node.proto.rendezvous.wire):
the coordinator hands them here; a bad one is counted and dropped, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections import Counter
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from node.config import Config
from node.errors import NodeError
from node.proto.peer_uri import IntroducerUri
from node.proto.punch import wire as punch_wire
from node.proto.rendezvous import (
    TYPE_RENDEZVOUS,
    Accepted,
    Event,
    Fire,
    Introduce,
    Introduced,
    Introducer,
    IntroduceRefused,
    Message,
    PunchAsA,
    PunchAsB,
    Refusal,
    Refused,
    Registered,
    RegistrationRefused,
    RendezvousClient,
    RendezvousWireError,
    Synced,
    decode,
)
from node.proto.vocabulary import IpEndpoint, PeerId, TransportKind
from node.services.coordinator import CoordinatorService, PathMethod, PeerState, TraversalOutcome
from node.services.coordinator.dialing import Backoff, endpoint_of
from node.services.nat import NatService
from node.services.node_metrics import NatOutcome
from node.services.rendezvous.candidates import Gathered, gather
from node.services.rendezvous.errors import RendezvousProblem, RendezvousUnavailable
from node.services.rendezvous.outbox import Outbox
from node.services.rendezvous.traversal import Introduction, Parts, TraversalRun
from node.services.rendezvous.view import (
    IntroducerCounts,
    IntroducerView,
    LinkState,
    RendezvousView,
    TraversalCounts,
)
from node.services.service import Service
from node.services.tcp_tls import TcpTlsService
from node.services.turn import TurnService
from node.services.udp import UdpService
from node.transports.base import SocketFactory
from node.transports.isolation import ConnectionIsolation
from node.transports.turn.relay import TurnRelayTransport

log = logging.getLogger(__name__)

REFRESH_S = 1.0  # candidates looked at again this often (and at once on a link event)
RETRY_S = 0.25  # an introducer that does not know the peer yet is asked again after this
ANSWER_MARGIN_S = 0.25  # introduce() answers this much before connect() gives up
MAX_RUNNING = 64  # traversals under way at once; beyond, introductions are declined
# Messages an introducer sends (to a client); the others are a client's (to an introducer).
_TO_CLIENT = (Registered, Introduced, Accepted, Refused, Synced)
# Refusals worth asking again about until the deadline: the peer may register soon.
_RETRY = (Refusal.UNKNOWN_PEER, Refusal.NOT_REGISTERED, Refusal.TIMED_OUT, Refusal.TOO_MANY_REQUESTS)


@dataclass(eq=False)
class _Link:
    uri: IntroducerUri
    client: RendezvousClient = field(default_factory=RendezvousClient)
    state: LinkState = LinkState.CONNECTING
    peer: PeerId | None = None
    detail: str | None = None
    sent: Gathered | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    asking: dict[int, asyncio.Future[Event]] = field(default_factory=dict)

    def view(self) -> IntroducerView:
        return IntroducerView(str(self.uri), self.state, self.peer, self.detail)


class RendezvousService(Service[RendezvousView]):
    name = "rendezvous"

    def __init__(
        self,
        config: Config,
        own_id: PeerId,
        *,
        coordinator: CoordinatorService,
        udp: UdpService,
        nat: NatService,
        tls: TcpTlsService | None,
        turn: TurnService | None,
        on_outcome: Callable[[NatOutcome], None] | None = None,
        socket_factory: SocketFactory | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.own_id = own_id
        self.coordinator = coordinator
        self.udp = udp
        self.nat = nat
        self.tls = tls
        self.turn = turn
        self._on_outcome = on_outcome
        section = config.rendezvous
        self.introducer = Introducer() if section.serve and tls is not None else None
        self.links = [_Link(uri) for uri in section.introducer_uris] if tls is not None else []
        self._by_peer: dict[PeerId, _Link] = {}
        self._running: dict[PeerId, TraversalRun] = {}
        self._by_token: dict[bytes, TraversalRun] = {}
        self._counts: Counter[TraversalOutcome] = Counter()
        self._attempts = 0
        self._drops: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self.wall = ConnectionIsolation("rendezvous")
        self._outbox = Outbox(coordinator.send_side)
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The candidates each outstanding request offered (A punches from what it offered).
        self._locals: dict[tuple[int, PeerId], Gathered] = {}
        self._turn_robin = itertools.count()
        self._parts = Parts(
            own_id=own_id,
            udp=udp.transport,
            turn=self._relay,
            record=coordinator.record_traversal,
            punch=section.punch,
            connect_timeout_s=config.transport.connect_timeout_s,
            **({} if socket_factory is None else {"socket_factory": socket_factory}),
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def _start(self, stack: AsyncExitStack) -> None:
        if self.introducer is None and not self.links:
            return
        self.coordinator.side_handlers[TYPE_RENDEZVOUS] = self._on_frame
        stack.callback(self.coordinator.side_handlers.pop, TYPE_RENDEZVOUS, None)
        self._group = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._stop)  # before the TaskGroup waits for its tasks
        self._spawn(self._outbox.run(), "rendezvous-outbox")
        self._spawn(self._timers(), "rendezvous-timers")
        self._spawn(self._watch_links(), "rendezvous-links")
        for link in self.links:
            self._spawn(self._keep(link), f"rendezvous-{link.uri.uri}")
        if self.links:
            self.coordinator.introduce = self.introduce
            stack.callback(setattr, self.coordinator, "introduce", None)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._group is None:
            coro.close()
            return
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stop(self) -> None:
        self._group = None
        for task in list(self._tasks):
            task.cancel()

    def _relay(self) -> TurnRelayTransport | None:
        turn = self.turn
        return turn.transport if turn is not None and turn.up.is_set() else None

    def _gather(self, link: _Link | None) -> Gathered:
        udp = self.udp.transport
        relayed = None
        relay = self._relay()
        if relay is not None:
            relayed = relay.relayed
        toward = None
        if link is not None and link.peer is not None and self.tls is not None:
            ip = self.tls.transport.local_ip(link.peer)
            if ip is not None:
                toward = IpEndpoint(ip, 0)  # the address the introducer link leaves from
        return gather(udp.local, self.nat.status().report, relayed, toward)

    # -- introducer links (client side) ---------------------------------------------------------

    async def _keep(self, link: _Link) -> None:
        """One introducer link, for the node's life; a bug in one round is contained, and the
        link dialled again after the backoff."""
        while True:
            await self.wall.run(self._keep_link(link), f"introducer link {link.uri}")
            link.state, link.detail = LinkState.FAILED, "internal error; see the log"
            await asyncio.sleep(self.config.breaker.recovery_timeout_s)

    async def _keep_link(self, link: _Link) -> None:
        assert self.tls is not None
        t = self.config.transport
        backoff = Backoff(t.retry_backoff_s, self.config.breaker.recovery_timeout_s)
        while True:
            link.state, link.client, link.sent = LinkState.CONNECTING, RendezvousClient(), None
            try:
                async with asyncio.timeout(t.connect_timeout_s):
                    endpoint = await endpoint_of(link.uri.peer_id or "introducer", link.uri.uri)
                    peer = await self.tls.transport.dial(endpoint, link.uri.peer_id)
            except (NodeError, TimeoutError) as exc:
                link.state, link.detail = LinkState.FAILED, str(exc) or "no answer in time"
                log.info("rendezvous: introducer %s unreachable: %s", link.uri, link.detail)
                await asyncio.sleep(backoff.after(exc))
                continue
            if peer == self.own_id:
                link.state, link.detail = LinkState.FAILED, "that introducer is this node"
                await asyncio.sleep(backoff.next())
                continue
            link.peer, link.detail = peer, None
            self._by_peer[peer] = link
            backoff.reset()
            try:
                while peer in self.tls.transport.peers():
                    gathered = self._gather(link)
                    if gathered != link.sent:
                        link.sent = gathered
                        self._outbox.put(peer, link.client.register(gathered.candidates, gathered.nat))
                    link.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(REFRESH_S):
                            await link.changed.wait()
            finally:
                self._by_peer.pop(peer, None)
                for future in link.asking.values():
                    if not future.done():
                        future.set_exception(
                            RendezvousUnavailable(RendezvousProblem.LINK_LOST, f"introducer {link.uri}")
                        )
                link.asking.clear()
            link.state, link.detail = LinkState.FAILED, "link closed"
            log.info("rendezvous: link to introducer %s closed; dialling again", link.uri)
            await asyncio.sleep(backoff.next())

    async def _watch_links(self) -> None:
        """TCP-TLS links that close: a client's introducer link is redialled at once, and an
        introducer forgets the peer's registration."""
        async for event in self.coordinator.events.subscribe():
            if event.state is not PeerState.DISCONNECTED or event.path.kind is not TransportKind.TCP_TLS:
                continue
            link = self._by_peer.get(event.peer)
            if link is not None:
                link.changed.set()
            gone = self.tls is not None and event.peer not in self.tls.transport.peers()
            if self.introducer is not None and gone:
                self._send_all(self.introducer.link_down(event.peer))

    async def introduce(self, peer: PeerId, wait: float) -> None:
        """Ask the introducers for ``peer`` until one introduces us or ``wait`` runs out; the
        traversal then runs in the background (its relay path answers ``connect``)."""
        if peer in self._running:
            return  # one is under way: its paths answer
        loop = asyncio.get_running_loop()
        # Give up a little before ``connect``'s own timeout, so that its failure carries why
        # (the introducer's refusal, no introducer) instead of only "no path came up".
        deadline = loop.time() + wait - min(ANSWER_MARGIN_S, wait / 4)
        last: NodeError | None = None
        while loop.time() < deadline:
            links = [link for link in self.links if link.state is LinkState.REGISTERED]
            if not links:
                await self._until(deadline, RETRY_S)
                continue
            link = links[next(self._turn_robin) % len(links)]
            try:
                event = await self._ask(link, peer, deadline)
            except RendezvousUnavailable as exc:
                last = exc
                continue
            if isinstance(event, IntroduceRefused):
                last = RendezvousUnavailable(
                    RendezvousProblem.REFUSED, f"introducer {link.uri}: {event.reason.value}"
                )
                if event.reason not in _RETRY:
                    raise last
                await self._until(deadline, RETRY_S)
                continue
            return
        if last is not None:
            raise last
        raise RendezvousUnavailable(
            RendezvousProblem.NO_INTRODUCER, f"no introducer registered within {wait:g} s"
        )

    async def _until(self, deadline: float, pause: float) -> None:
        await asyncio.sleep(max(0.0, min(pause, deadline - asyncio.get_running_loop().time())))

    async def _ask(self, link: _Link, peer: PeerId, deadline: float) -> Event:
        assert link.peer is not None
        loop = asyncio.get_running_loop()
        gathered = self._gather(link)
        request, message = link.client.introduce(
            peer, gathered.candidates, gathered.nat, os.urandom(punch_wire.TOKEN_SIZE), loop.time()
        )
        future: asyncio.Future[Event] = loop.create_future()
        link.asking[request] = future
        self._locals[request, link.peer] = gathered
        self._outbox.put(link.peer, message)
        self._wake.set()
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                return await future
        except TimeoutError:
            raise RendezvousUnavailable(RendezvousProblem.REFUSED, f"{link.uri}: no answer in time") from None
        finally:
            link.asking.pop(request, None)
            self._locals.pop((request, link.peer), None)

    # -- frames ---------------------------------------------------------------------------------

    def _on_frame(self, peer: PeerId, kind: TransportKind, payload: bytes) -> None:
        if kind is not TransportKind.TCP_TLS:
            self._drop("not on a TCP-TLS link")
            return
        try:
            message = decode(payload)
        except RendezvousWireError as exc:
            self._drop(exc.reason.name.lower())
            return
        now = asyncio.get_running_loop().time()
        link = self._by_peer.get(peer)
        if isinstance(message, _TO_CLIENT):
            if link is None:
                self._drop("introducer message from a peer that is no introducer of ours")
                return
            self._client_events(link, link.client.receive(message, now), now)
            if isinstance(message, Registered):
                link.state = LinkState.REGISTERED
        elif self.introducer is not None:
            self._send_all(self.introducer.handle(peer, message, now))
            self._wake.set()
        elif isinstance(message, Introduce):
            self._outbox.put(peer, Refused(message.request, Refusal.NOT_SERVING))
        else:
            self._drop("client message and this node introduces no one")

    def _drop(self, why: str) -> None:
        self._drops[why] += 1
        n = sum(self._drops.values())
        if n & (n - 1) == 0:
            log.warning("rendezvous: dropped a frame (%d so far): %s", n, why)

    def _send_all(self, out: list[tuple[PeerId, Message]]) -> None:
        for peer, message in out:
            self._outbox.put(peer, message)

    def _client_events(self, link: _Link, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, PunchAsA):
                assert link.peer is not None
                self._outbox.put(link.peer, event.sync)
                local = self._locals.get((event.request, link.peer)) or self._gather(link)
                intro = Introduction(
                    punch_wire.Side.A, event.peer, event.token, event.candidates, event.nat, local
                )
                self._begin(intro, event.fire_at, link, None)
                future = link.asking.get(event.request)
                if future is not None and not future.done():
                    future.set_result(event)
            elif isinstance(event, IntroduceRefused):
                future = link.asking.get(event.request)
                if future is not None and not future.done():
                    future.set_result(event)
            elif isinstance(event, PunchAsB):
                assert link.peer is not None
                if len(self._running) >= MAX_RUNNING and event.peer not in self._running:
                    self._outbox.put(link.peer, link.client.decline(event.token, Refusal.TOO_MANY_PENDING))
                    continue
                intro = Introduction(
                    punch_wire.Side.B,
                    event.peer,
                    event.token,
                    event.candidates,
                    event.nat,
                    link.sent or self._gather(link),
                )
                self._begin(intro, None, link, event.accept)
            elif isinstance(event, Fire):
                run = self._by_token.get(event.token)
                if run is not None:
                    run.fire(event.at)
            elif isinstance(event, RegistrationRefused):
                link.state, link.detail = LinkState.FAILED, f"registration refused: {event.reason.value}"
                log.warning(
                    "rendezvous: introducer %s refused our registration: %s", link.uri, event.reason.value
                )
        self._wake.set()

    # -- traversals -----------------------------------------------------------------------------

    def _begin(self, intro: Introduction, fire_at: float | None, link: _Link, accept: Message | None) -> None:
        if self._group is None:
            return
        loop = asyncio.get_running_loop()
        old = self._running.get(intro.peer)
        if old is not None:
            self._by_token.pop(old.intro.token, None)
        run = TraversalRun(intro, self._parts, loop.time(), loop.time, fire_at)
        self._running[intro.peer] = run
        self._by_token[intro.token] = run
        self._attempts += 1
        self._spawn(self._traverse(run, link, accept), f"rendezvous-traversal-{intro.peer}")

    async def _traverse(self, run: TraversalRun, link: _Link, accept: Message | None) -> None:
        peer = run.intro.peer
        outcome = TraversalOutcome.FAILED
        try:
            if accept is not None:
                await run.prepare()
                if link.peer is not None:
                    self._outbox.put(link.peer, accept)
            outcome = await run.run()
            if outcome is TraversalOutcome.RELAY and not self.coordinator.has_path(peer):
                outcome = TraversalOutcome.FAILED
        except NodeError as exc:
            log.warning("rendezvous: traversal to %s failed: %s", peer, exc)
        except Exception as exc:  # the wall: one traversal's bug never stops the service
            self.wall.contain(exc, f"traversal to {peer}")
        finally:
            if self._running.get(peer) is run:
                del self._running[peer]
            self._by_token.pop(run.intro.token, None)
            self._counts[outcome] += 1
            run.update(outcome=outcome)
            if self._on_outcome is not None:
                self._on_outcome(_nat_outcome(outcome, run))

    # -- timers ---------------------------------------------------------------------------------

    async def _timers(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = [t for t in self._deadlines() if t is not None]
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if not due else max(0.0, min(due) - loop.time())):
                    await self._wake.wait()
            now = loop.time()
            if self.introducer is not None:
                timer = self.introducer.get_timer()
                if timer is not None and timer <= now:
                    self._send_all(self.introducer.handle_timer(now))
            for link in self.links:
                timer = link.client.get_timer()
                if timer is not None and timer <= now:
                    self._client_events(link, link.client.handle_timer(now), now)

    def _deadlines(self) -> list[float | None]:
        deadlines = [link.client.get_timer() for link in self.links]
        if self.introducer is not None:
            deadlines.append(self.introducer.get_timer())
        return deadlines

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> RendezvousView:
        counts = self._counts
        served = None if self.introducer is None else IntroducerCounts.of(self.introducer.stats())
        return RendezvousView(
            serve=served is not None,
            registered_peers=0 if served is None else served.registered_peers,
            introducers=tuple(link.view() for link in self.links),
            traversals=TraversalCounts(
                attempts=self._attempts,
                direct=counts[TraversalOutcome.DIRECT],
                relay=counts[TraversalOutcome.RELAY],
                failed=counts[TraversalOutcome.FAILED],
                running=len(self._running),
            ),
            dropped=sum(self._drops.values()) + self._outbox.dropped,
            faults=dict(self.wall.faults),
            introducer=served,
        )


def _nat_outcome(outcome: TraversalOutcome, run: TraversalRun) -> NatOutcome:
    if outcome is TraversalOutcome.DIRECT:
        return NatOutcome.DIRECT if run.record.method is PathMethod.HOST else NatOutcome.PUNCHED
    if outcome is TraversalOutcome.RELAY:
        return NatOutcome.RELAYED
    return NatOutcome.FAILED
