"""The node's view of its own network: the link monitor (netlink.monitor) and what the daemon does
when a link, an address or the default route changes, before any timeout would notice.

- An address removed, or the carrier of its interface lost: the local addresses on it are *lost*.
  TCP-TLS links and UDP sessions leaving from a lost address are closed at once with
  ``DisconnectReason.NETWORK_DOWN``, and a TURN allocation whose connection leaves from one is
  made again (from an address that works). Listeners (the coordinator) hear the same set, so
  traffic moves in milliseconds instead of after the 30 s consent timeout.
- Any address, link or default-route change: NAT discovery runs again (``NatService.rediscover``),
  since the mapping peers reach may have changed with it.

Every change is one structured log line and counted; ``status --json`` shows the interfaces, the
default routes and the counters under ``network``. The monitor reports a failing netlink socket
and retries it by itself: the node runs on meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from netlink.monitor.model import (
    AddressAdded,
    AddressRemoved,
    IPAddress,
    LinkDown,
    LinkEvent,
    LinkUp,
    MonitorStats,
    NetworkState,
)
from netlink.monitor.monitor import LinkMonitor
from node.services.background import run_in_background
from node.services.service import Service
from node.transports.isolation import ConnectionIsolation

log = logging.getLogger(__name__)

# Told the local addresses that just became unusable; each returns the peers it disconnected.
LostHandler = Callable[[frozenset[IPAddress]], object]


@dataclass(frozen=True, slots=True)
class NetworkView:
    state: NetworkState
    stats: MonitorStats
    closed_for_network: int = 0  # links and sessions closed because their address went
    faults: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "interfaces": [
                {
                    "name": i.name,
                    "index": i.index,
                    "state": i.state.value,
                    "carrier": i.carrier,
                    "addresses": [str(a) for a in i.addresses],
                }
                for i in self.state.interfaces
            ],
            "default_routes": [
                {"interface": r.interface, "gateway": None if r.gateway is None else str(r.gateway)}
                for r in self.state.default_routes
            ],
            "events": self.stats.events,
            "overruns": self.stats.overruns,
            "malformed": self.stats.malformed,
            "socket_failures": self.stats.socket_failures,
            "closed_for_network": self.closed_for_network,
            "faults": self.faults,
        }


def lost_addresses(event: LinkEvent, state: NetworkState) -> frozenset[IPAddress]:
    """The local addresses ``event`` makes unusable: the removed one, or every address of an
    interface that lost its carrier (``state`` is the view after the event)."""
    if isinstance(event, AddressRemoved):
        return frozenset({event.address.ip})
    if isinstance(event, LinkDown):
        interface = next((i for i in state.interfaces if i.index == event.index), None)
        return frozenset() if interface is None else frozenset(a.ip for a in interface.addresses)
    return frozenset()


def describe(event: LinkEvent) -> str:
    """The event as ``key=value`` fields for its log line."""
    if isinstance(event, LinkUp | LinkDown):
        kind = "link_up" if isinstance(event, LinkUp) else "link_down"
        return f"event={kind} interface={event.interface} index={event.index} state={event.state.value}"
    if isinstance(event, AddressAdded | AddressRemoved):
        kind = "address_added" if isinstance(event, AddressAdded) else "address_removed"
        return f"event={kind} interface={event.interface} address={event.address}"
    routes = ",".join(f"{r.interface}:{r.gateway or 'on-link'}" for r in event.current) or "none"
    return f"event=default_route_changed family={event.family.name.lower()} routes={routes}"


class NetworkService(Service[NetworkView]):
    name = "network"

    def __init__(
        self,
        *,
        rediscover: Callable[[], None] | None = None,
        monitor: LinkMonitor | None = None,
    ) -> None:
        super().__init__()
        self.monitor = monitor if monitor is not None else LinkMonitor()
        self._rediscover = rediscover
        self.lost_handlers: list[LostHandler] = []
        self.wall = ConnectionIsolation("network")
        self._closed = 0

    async def _start(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self.monitor)
        await run_in_background(stack, self._follow(), "network-follow")

    async def _follow(self) -> None:
        async for event in self.monitor.events():
            # A handler's bug must not stop the node from following its network.
            self.wall.call(self._on_event, "network event", event)

    def _on_event(self, event: LinkEvent) -> None:
        log.info("network %s", describe(event))
        lost = lost_addresses(event, self.monitor.state())
        if lost:
            for handler in self.lost_handlers:
                closed = handler(lost)
                if isinstance(closed, tuple):
                    self._closed += len(closed)
        # Every kind of change may change the mapping peers reach (a new uplink, a new address).
        if self._rediscover is not None:
            self._rediscover()

    def status(self) -> NetworkView:
        return NetworkView(self.monitor.state(), self.monitor.stats(), self._closed, self.wall.snapshot())
