"""The node's BLE: the transport built from ``[ble]``, and BlueZ under it kept up in the background.

``async with BleService(config, identity)`` starts the transport at once (the coordinator reads
its events from the start) and returns; one keeper task opens the process's ``ObjectCache`` on
the system bus and, while it holds, the peripheral (serves and advertises), the scanner and the
connector on the adapter. Without a system bus, without bluetoothd on it or without the adapter,
the service is ``unavailable`` with the reason (logged once per reason), and tries again every
RETRY_S, at once when the cache sees bluetoothd or an adapter come; the peripheral, scanner and
connector follow an adapter or bluetoothd that leaves and comes back by themselves
(bluez/objects.py events), so only a lost bus makes the keeper start over. Nothing here ever
stops another transport: every error of BlueZ is contained in the keeper.

Every node it finds by scan (up to ``max_links``) is linked: the node with the smaller peer-id
prefix dials, so two nodes make one link, and the HELLO exchange plus the session handshake on it
make the other a proven peer (bluez/transport.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from bluez.central import Connector
from bluez.errors import BluezError
from bluez.objects import AdapterAdded, AdapterChanged, BluezBack, BusLost, ObjectCache, ObjectEvent
from bluez.peripheral import NodePeripheral
from bluez.proto.linkframes import peer_prefix
from bluez.scanner import FoundNode, NodeScanner
from bluez.transport import BleSettings, BleTransport
from node.config import Config
from node.proto.identity import Identity
from node.proto.vocabulary import TransportState
from node.services.background import run_in_background
from node.services.frame_limit import frame_limit
from node.services.service import Service
from node.services.trust import session_trust
from node.transports.base import TransportError

log = logging.getLogger(__name__)

RETRY_S = 10.0  # BlueZ looked for again this often while it is missing
REDIAL_S = 10.0  # a found node whose link failed is dialled again after this


class BleState(enum.Enum):
    DISABLED = "disabled"
    UNAVAILABLE = "unavailable"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class BleView:
    """What ``status`` shows under ``ble``."""

    state: BleState
    reason: str | None = None
    adapter: str | None = None
    links: int = 0
    peers: int = 0
    found: int = 0
    counters: tuple[tuple[str, int], ...] = ()
    mesh_peers: tuple[tuple[str, int], ...] = ()  # peers through relays, with their hop counts

    def to_json(self) -> dict[str, Any]:
        if self.state is BleState.DISABLED:
            return {"state": self.state.value}
        if self.state is BleState.UNAVAILABLE:
            return {"state": self.state.value, "reason": self.reason}
        return {
            "state": self.state.value,
            "adapter": self.adapter,
            "links": self.links,
            "peers": self.peers,
            "found": self.found,
            "relay": dict(self.counters),
            "mesh_peers": dict(self.mesh_peers),
        }


def build_transport(config: Config, identity: Identity) -> BleTransport:
    verifier, credential = session_trust(config, identity)
    t = config.transport
    return BleTransport(
        identity,
        verifier,
        credential=credential,
        settings=BleSettings(
            max_links=config.ble.max_links,
            max_message=frame_limit(config),
            connect_timeout=t.connect_timeout_s,
            health_check_interval=t.health_check_interval_s,
            auto_handshake=True,
        ),
    )


class BleService(Service[BleView]):
    name = "ble"

    def __init__(self, config: Config, identity: Identity) -> None:
        super().__init__()
        self.config = config
        self.section = config.ble
        self.identity = identity
        self.prefix = peer_prefix(identity.peer_id)
        self.transport = build_transport(config, identity)
        self._cache: ObjectCache | None = None
        self._adapter: str | None = None
        self._connector: Connector | None = None
        self._problem: str | None = "starting"
        self._logged: str | None = None
        self._wake = asyncio.Event()
        self._found: dict[str, FoundNode] = {}
        self._failed: dict[str, float] = {}  # address -> when its last dial failed
        self.dials = self.dial_failures = 0

    async def _start(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self.transport)
        if self.section.enabled:
            await run_in_background(stack, self._keep(), "ble-keeper")

    # -- state ----------------------------------------------------------------------------------

    def status(self) -> BleView:
        if not self.section.enabled:
            return BleView(BleState.DISABLED)
        problem = self._why_not()
        if problem is not None:
            return BleView(BleState.UNAVAILABLE, reason=problem)
        transport = self.transport
        counts = transport.counters()
        counts.update({f"dropped_{d.name.lower()}": n for d, n in transport.drops.items()})
        counts.update(
            {f"chunks_dropped_{d.name.lower()}": n for d, n in transport.pool.stats().drops.items()}
        )
        counts.update(dials=self.dials, dial_failures=self.dial_failures, links_lost=transport.links_lost)
        mesh = transport.relay.router.stats()
        counts.update({f"mesh_dropped_{d.name.lower()}": n for d, n in mesh.drops.items()})
        counts.update(
            mesh_originated=mesh.originated,
            mesh_delivered=mesh.delivered,
            mesh_relayed=mesh.relayed,
            mesh_routes=mesh.routes,
            mesh_bad_announces=transport.relay.bad_announces,
        )
        return BleView(
            BleState.READY,
            adapter=self._adapter,
            links=len(transport.links),
            peers=len(transport.peers()),
            found=len(self._found),
            counters=tuple(sorted(counts.items())),
            mesh_peers=tuple(sorted(transport.mesh_hops().items())),
        )

    @property
    def state(self) -> TransportState | None:
        """Its entry in status ``transports``: ready, or degraded while BlueZ or the adapter is
        missing (the node runs on without it and keeps looking); None when disabled (no entry)."""
        if not self.section.enabled:
            return None
        return TransportState.READY if self._why_not() is None else TransportState.DEGRADED

    @property
    def ready(self) -> bool:
        return self.section.enabled and self._why_not() is None

    def _why_not(self) -> str | None:
        cache = self._cache
        if cache is None or self._connector is None:
            return self._problem or "starting"
        error = cache.unavailable(self._adapter)
        return None if error is None else str(error)

    def _unavailable(self, why: str) -> None:
        self._problem = why
        if why != self._logged:  # once per reason, not once per retry
            self._logged = why
            log.warning("ble unavailable (retrying every %g s): %s", RETRY_S, why)

    # -- keeper ---------------------------------------------------------------------------------

    async def _keep(self) -> None:
        while True:
            try:
                async with ObjectCache() as cache:
                    await self._run(cache)
            except BluezError as error:
                self._unavailable(str(error))
            except (OSError, EOFError) as error:
                self._unavailable(f"the system bus failed: {error!r}")
            except Exception as error:
                # A bug or an unforeseen failure below must not stop the node: BLE goes
                # unavailable and the keeper tries again (logged with its traceback, once).
                if self._logged != repr(error):
                    log.exception("ble: the BLE stack failed")
                self._unavailable(repr(error))
            finally:
                self._cache = self._connector = None
                self.transport.dialer = None
            await self._nap(RETRY_S)

    async def _nap(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _on_event(self, event: ObjectEvent) -> None:
        if isinstance(event, AdapterAdded | AdapterChanged | BluezBack | BusLost):
            self._wake.set()

    async def _run(self, cache: ObjectCache) -> None:
        """Until the bus is lost: wait for an adapter, then run the stack on it."""
        lost = asyncio.Event()
        unsubscribe = cache.subscribe(self._on_event)
        stop_lost = cache.subscribe(lambda event: lost.set() if isinstance(event, BusLost) else None)
        try:
            self._cache = cache
            wanted = self.section.adapter or None
            while (error := cache.unavailable(wanted)) is not None:
                self._unavailable(str(error))
                await self._nap(RETRY_S)
                if lost.is_set():
                    return
            adapter = cache.adapter(wanted).name
            self._adapter = adapter
            transport = self.transport
            async with (
                NodePeripheral(cache, adapter, self.prefix, transport),
                NodeScanner(cache, adapter, self._on_found) as scanner,
                Connector(
                    cache, adapter, transport, slots=self.section.max_links, quiet_radio=scanner.paused
                ) as connector,
            ):
                self._connector = connector
                transport.dialer = connector.connect
                self._logged = None
                log.info("ble ready on %s", adapter)
                while not lost.is_set():
                    if cache.unavailable(adapter) is None:  # not while it is gone or off
                        await self._dial_found(connector)
                    await self._nap(1.0 if self._found else RETRY_S)
            self._unavailable("the system bus connection was lost")
        finally:
            unsubscribe()
            stop_lost()

    def _on_found(self, node: FoundNode) -> None:
        if node.peer_id_prefix is None or node.peer_id_prefix == self.prefix:
            return
        if node.address not in self._found:
            self._wake.set()
        self._found[node.address] = node

    async def _dial_found(self, connector: Connector) -> None:
        """Link every found node we should dial (the smaller prefix dials), one at a time."""
        transport = self.transport
        now = time.monotonic()
        for address, node in list(self._found.items()):
            if node.peer_id_prefix is None or self.prefix > node.peer_id_prefix:
                continue
            if any(link.address == address for link in transport.links):
                continue
            if len(transport.links) >= self.section.max_links:
                return
            if now - self._failed.get(address, -REDIAL_S) < REDIAL_S:
                continue
            self.dials += 1
            try:
                await transport.open_link(address)
            except TransportError as error:
                self.dial_failures += 1
                self._failed[address] = time.monotonic()
                log.info("ble: no link to %s: %s", address, error)
