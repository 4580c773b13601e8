"""The daemon: starts every service, tells systemd when all are listening, stops in order.

Ownership: ``Node`` is a ``Service`` (``node.services.service``) whose services, each a
``Service`` too, are entered one after the other from one list onto its exit stack, the control
socket last, so a stop (or a failure of any part) unwinds everything in reverse. ``status`` is
built from the services' ``status()`` views.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import node
from node.config import Config
from node.paths import NodeDirs, ensure_private_dir
from node.proto.identity import Identity
from node.proto.vocabulary import PeerId, TransportHealth, TransportState
from node.security.keystore import KEY_FILE_NAME
from node.services.app_control import AppControl
from node.services.ble import BleService, BleView
from node.services.control import MAX_REQUEST_BYTES, Command, ControlServer, ControlView
from node.services.control_args import ArgumentError
from node.services.coordinator import CoordinatorService, CoordinatorView, NodeApi
from node.services.metrics import MetricsServer, MetricsView
from node.services.nat import NatService, NatView
from node.services.network import NetworkService, NetworkView
from node.services.node_metrics import NodeMetrics
from node.services.rendezvous import RendezvousService, RendezvousView
from node.services.service import Service, ServiceView, TransportService
from node.services.systemd import Notifier
from node.services.tcp_tls import TcpTlsService, TcpTlsView
from node.services.turn import TurnService, TurnView
from node.services.udp import UdpService, UdpView
from node.transports.route import IPAddress

log = logging.getLogger(__name__)

WATCH_MIN_INTERVAL_S = 0.02
STATUS_PEERS = 4  # peers named on systemd's STATUS= line (one line: systemctl status shows it)
STATUS_INTERVAL_S = 1.0  # how often STATUS= is looked at (sent only when it changed)
# ``send``'s request line carries a whole message in base64 (4/3 of it): 2 MiB for the default
# 1 MiB message, more when transport.max_message_bytes allows more; every other command keeps
# MAX_REQUEST_BYTES.
SEND_REQUEST_BYTES = 2 << 20


def send_request_bytes(max_message_bytes: int) -> int:
    return max(SEND_REQUEST_BYTES, (max_message_bytes + 2) // 3 * 4 + MAX_REQUEST_BYTES)


@dataclass(frozen=True, slots=True)
class WatchArgs:
    """``watch_status``: a status line every ``interval_s``, ``count`` times (None: until closed)."""

    interval_s: float = 1.0
    count: int | None = None

    def __post_init__(self) -> None:
        if not WATCH_MIN_INTERVAL_S <= self.interval_s <= 3600:
            raise ArgumentError("interval_s", f"must be between {WATCH_MIN_INTERVAL_S:g} and 3600 seconds")
        if self.count is not None and self.count < 1:
            raise ArgumentError("count", "must be at least 1")


@dataclass(frozen=True, slots=True)
class NodeStatus:
    peer_id: str
    version: str
    uptime_s: float
    listen: tuple[str, ...]
    transports: tuple[tuple[str, TransportState], ...]
    udp: UdpView
    nat: NatView
    tcp_tls: TcpTlsView | None
    turn: TurnView | None
    ble: BleView
    network: NetworkView
    metrics: MetricsView
    coordinator: CoordinatorView
    rendezvous: RendezvousView
    control: ControlView

    def to_json(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "version": self.version,
            "uptime_s": round(self.uptime_s, 3),
            "listen": list(self.listen),
            "transports": {name: state.value for name, state in self.transports},
            "stun": self.udp.stun_json(),
            "udp": self.udp.to_json(),
            "nat": self.nat.to_json(),
            "tcp_tls": None if self.tcp_tls is None else self.tcp_tls.to_json(),
            "turn": None if self.turn is None else self.turn.to_json(),
            "ble": self.ble.to_json(),
            "network": self.network.to_json(),
            "metrics": self.metrics.to_json(),
            "coordinator": self.coordinator.to_json(),
            "rendezvous": self.rendezvous.to_json(),
            "control": self.control.to_json(),
        }

    def summary(self) -> str:
        """systemd's STATUS= line: who, where, and each peer's active path (the first few)."""
        peers = self.coordinator.peers
        active = [row for row in peers if row.active is not None]
        paths = ", ".join(
            f"{row.peer[:8]} {row.active.kind.value} {row.active.remote}"
            for row in active[:STATUS_PEERS]
            if row.active is not None
        )
        more = f" +{len(active) - STATUS_PEERS} more" if len(active) > STATUS_PEERS else ""
        return (
            f"peer {self.peer_id[:12]}; listening on {', '.join(self.listen)};"
            f" {len(peers)} peers, {len(active)} with an active path" + (f": {paths}{more}" if paths else "")
        )


class Node(Service[NodeStatus]):
    """The services of one node, itself shaped like one: ``async with Node(...)`` runs them all."""

    name = "node"

    def __init__(self, config: Config, dirs: NodeDirs, identity: Identity) -> None:
        super().__init__()
        self.config = config
        self.dirs = dirs
        self.identity = identity
        self.udp = UdpService(config, identity)
        # NAT discovery at start, from the UDP port (started first, so it is open by then); the
        # netlink monitor re-runs it with self.nat.rediscover().
        self.nat = NatService(config, port=self.udp.transport)
        self.tls = (
            TcpTlsService(config, identity, dirs.state / KEY_FILE_NAME) if config.tcp_tls.enabled else None
        )
        # The TURN relay comes up in the background when [turn] names servers.
        self.turn = TurnService(config, identity) if config.turn.servers else None
        # Every transport's events, the path for every message, and the application API.
        self.ble = BleService(config, identity)
        self.coordinator = CoordinatorService(
            config, identity.peer_id, self.udp, self.tls, self.turn, ble=self.ble
        )
        self.api = NodeApi(self.coordinator)
        self.nat.on_report.append(lambda report: self.coordinator.set_nat_type(report.nat_type))
        # Introducer links, the introducer ([rendezvous] serve) and traversals to introduced peers.
        self.node_metrics = NodeMetrics(self._health)
        self.rendezvous = RendezvousService(
            config,
            identity.peer_id,
            coordinator=self.coordinator,
            udp=self.udp,
            nat=self.nat,
            tls=self.tls,
            turn=self.turn,
            on_outcome=self.node_metrics.nat_traversal,
        )
        # The link monitor: a lost address closes what left from it at once, any change reruns
        # NAT discovery (node.services.network).
        self.network = NetworkService(rediscover=self.nat.rediscover)
        self.network.lost_handlers.append(self._network_down)
        # What the coordinator reports to, and GET /metrics ([metrics] listen; '' disables it).
        self.coordinator.observer = self.node_metrics
        self.metrics = MetricsServer(config, self.node_metrics)
        # The application API's control commands (connect, send, listen, peers).
        self.app = AppControl(
            self.api,
            window=config.coordinator.window_max_messages,
            max_payload=self.coordinator.max_payload,
            max_request_bytes=send_request_bytes(config.transport.max_message_bytes),
        )
        # The control socket last: `status` answers only once every service runs.
        self.control = ControlServer(
            dirs.control_socket,
            {
                "status": lambda: self.status().to_json(),
                "watch_status": Command(self._watch_status, args=WatchArgs),
                **self.app.commands(),
            },
        )
        # In start order; stopped in reverse.
        self.services: tuple[Service[ServiceView], ...] = tuple(
            s
            for s in (
                self.udp,
                self.nat,
                self.tls,
                self.turn,
                self.ble,
                self.coordinator,
                self.rendezvous,
                self.network,
                self.metrics,
                self.app,
                self.control,
            )
            if s is not None
        )
        self._started = time.monotonic()

    async def _start(self, stack: AsyncExitStack) -> None:
        ensure_private_dir(self.dirs.runtime)
        for service in self.services:
            await stack.enter_async_context(service)
        self._started = time.monotonic()

    def _network_down(self, lost: frozenset[IPAddress]) -> tuple[PeerId, ...]:
        """Close every link and session leaving from a lost address; remake the TURN allocation
        if its connection left from one. Returns the peers disconnected."""
        self.coordinator.network_down(lost)  # paths fail (and traffic moves) before the closes
        closed = self.udp.transport.network_down(lost)
        if self.tls is not None:
            closed += self.tls.transport.network_down(lost)
        if self.turn is not None and self.turn.transport.network_down(lost):
            log.info("TURN allocation remade: its local address is gone")
        if closed:
            log.info("closed %d links and sessions whose local address is gone", len(closed))
        return closed

    async def _watch_status(self, args: WatchArgs) -> AsyncIterator[dict[str, Any]]:
        sent = 0
        while args.count is None or sent < args.count:
            if sent:
                await asyncio.sleep(args.interval_s)
            yield self.status().to_json()
            sent += 1

    def _health(self) -> list[TransportHealth]:
        """Every transport's health now (read at each scrape)."""
        carriers = (self.udp, self.tls, self.turn)
        healths = [s.transport.health() for s in carriers if s is not None]
        if self.ble.ready:
            healths.append(self.ble.transport.health())
        return healths

    def status(self) -> NodeStatus:
        carriers = [s for s in self.services if isinstance(s, TransportService)]
        return NodeStatus(
            peer_id=self.identity.peer_id,
            version=node.__version__,
            uptime_s=time.monotonic() - self._started,
            listen=tuple(url for s in carriers if (url := s.listen_url) is not None),
            transports=(
                *((s.name, s.state) for s in carriers),
                *(() if (ble := self.ble.state) is None else (("ble", ble),)),
            ),
            udp=self.udp.status(),
            nat=self.nat.status(),
            tcp_tls=None if self.tls is None else self.tls.status(),
            turn=None if self.turn is None else self.turn.status(),
            ble=self.ble.status(),
            network=self.network.status(),
            metrics=self.metrics.status(),
            coordinator=self.coordinator.status(),
            rendezvous=self.rendezvous.status(),
            control=self.control.status(),
        )


async def serve(config: Config, dirs: NodeDirs, identity: Identity, notifier: Notifier) -> None:
    """Run the node until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Node(config, dirs, identity) as running:
            status = running.status()
            # The result of `run` on stdout: who we are and where we listen (logs go to stderr).
            print(f"peer_id={status.peer_id} listen={','.join(status.listen)}", flush=True)
            log.info("node ready: %s", status.summary())
            notifier.ready(status.summary())
            async with asyncio.TaskGroup() as tasks:
                watchdog = tasks.create_task(notifier.run_watchdog())
                statuses = tasks.create_task(_report_status(running, notifier, status.summary()))
                await stop.wait()
                log.info("stopping")
                notifier.stopping()
                watchdog.cancel()
                statuses.cancel()
            # Leaving Node closes the control socket and the UDP port: both close at once, no
            # draining, so SIGTERM leads to exit well within systemd's expectations (< 2 s).
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _report_status(running: Node, notifier: Notifier, last: str) -> None:
    """STATUS= for systemd whenever the summary (peers and active paths) changes."""
    if not notifier.enabled:
        return
    while True:
        await asyncio.sleep(STATUS_INTERVAL_S)
        summary = running.status().summary()
        if summary != last:
            notifier.status(summary)
            last = summary
