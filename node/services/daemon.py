"""The daemon: starts every service, tells systemd when all are listening, stops in order.

Ownership: ``Node`` is an ``async with`` component; its services sit on an AsyncExitStack in the
order they were started and its tasks in one TaskGroup, so a stop (or a failure of any part)
unwinds everything.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import node
from node.config import Config
from node.paths import NodeDirs, ensure_private_dir
from node.proto.identity import Identity
from node.security.keystore import KEY_FILE_NAME
from node.services.control import ControlServer, ControlView
from node.services.nat import NatService, NatView
from node.services.systemd import Notifier
from node.services.tcp_tls import TcpTlsService, TcpTlsView
from node.services.turn import TurnService, TurnView
from node.services.udp import UdpService, UdpView

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    peer_id: str
    version: str
    uptime_s: float
    listen: tuple[str, ...]
    transports: tuple[tuple[str, str], ...]
    udp: UdpView
    nat: NatView
    tcp_tls: TcpTlsView | None
    turn: TurnView | None
    control: ControlView

    def to_json(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "version": self.version,
            "uptime_s": round(self.uptime_s, 3),
            "listen": list(self.listen),
            "transports": dict(self.transports),
            "stun": self.udp.stun_json(),
            "udp": self.udp.udp_json(),
            "nat": self.nat.to_json(),
            "tcp_tls": None if self.tcp_tls is None else self.tcp_tls.to_json(),
            "turn": None if self.turn is None else self.turn.to_json(),
            "control": self.control.to_json(),
        }

    def summary(self) -> str:
        # Peers and paths join this line once the coordinator tracks them; nothing is claimed before.
        return f"peer {self.peer_id[:12]}; listening on {', '.join(self.listen)}"


class Node:
    def __init__(self, config: Config, dirs: NodeDirs, identity: Identity) -> None:
        self.config = config
        self.dirs = dirs
        self.identity = identity
        self.udp = UdpService(config.node.listen_address, config.node.udp_port, config.node.software)
        # NAT discovery at start; the netlink monitor re-runs it with self.nat.rediscover().
        self.nat = NatService(config.stun, config.breaker)
        self.tls = (
            TcpTlsService(config, identity, dirs.state / KEY_FILE_NAME) if config.tcp_tls.enabled else None
        )
        # The TURN relay comes up in the background when [turn] names servers.
        self.turn = TurnService(config) if config.turn.servers else None
        self.control = ControlServer(dirs.control_socket, {"status": lambda: self.status().to_json()})
        self._started = time.monotonic()
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            ensure_private_dir(self.dirs.runtime)
            await stack.enter_async_context(self.udp)
            await stack.enter_async_context(self.nat)
            if self.tls is not None:
                await stack.enter_async_context(self.tls)
            if self.turn is not None:
                await stack.enter_async_context(self.turn)
            await stack.enter_async_context(self.control)
            self._stack = stack.pop_all()
        self._started = time.monotonic()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def status(self) -> NodeStatus:
        udp = self.udp.local
        listen: tuple[str, ...] = (f"udp://{udp}",)
        transports: tuple[tuple[str, str], ...] = ((self.udp.name, self.udp.state.value),)
        if self.tls is not None:
            listen += (self.tls.listen_url,)
            transports += ((self.tls.name, self.tls.transport.state.value),)
        turn = None if self.turn is None else self.turn.view()
        if turn is not None:
            transports += ((TurnService.name, turn.state.value),)
        return NodeStatus(
            peer_id=self.identity.peer_id,
            version=node.__version__,
            uptime_s=time.monotonic() - self._started,
            listen=listen,
            transports=transports,
            udp=self.udp.view(),
            nat=self.nat.view(),
            tcp_tls=None if self.tls is None else self.tls.view(),
            turn=turn,
            control=self.control.view(),
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
                await stop.wait()
                log.info("stopping")
                notifier.stopping()
                watchdog.cancel()
            # Leaving Node closes the control socket and the UDP port: both close at once, no
            # draining, so SIGTERM leads to exit well within systemd's expectations (< 2 s).
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
