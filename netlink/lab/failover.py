"""What failover tests do to a lab: pull a host's cable, take addresses and default routes away
and give them back, and a multi-homed host (a Pi with Ethernet and Wi-Fi behind two routers).

A pulled cable is shown to the host the way hardware shows it: the *peer* end of the host's veth
(in its router, or on the public bridge) goes down, so the host's own interface stays
administratively up and loses carrier (``NO-CARRIER``, operstate ``LOWERLAYERDOWN``).
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass
from typing import Any

from netlink.lab.builder import HOST_IF, Lab
from netlink.lab.errors import LabBuildError, NamespaceError, NamespaceOp

IPv4 = ipaddress.IPv4Address
CARRIER_TIMEOUT_S = 5.0
MULTIHOMED_HOST_NUMBER = 200  # .200 on each router's LAN: clear of the planned hosts (.2 ...)


@dataclass(frozen=True, slots=True)
class Uplink:
    """One of a multi-homed host's interfaces: ``ifname`` in the host, ``peer`` in ``router``."""

    router: str
    ifname: str
    peer: str
    address: ipaddress.IPv4Interface
    gateway: IPv4
    metric: int


@dataclass(frozen=True, slots=True)
class MultiHomedHost:
    name: str
    netns: str
    uplinks: tuple[Uplink, ...]

    def uplink(self, router: str) -> Uplink:
        return next(u for u in self.uplinks if u.router == router)


def add_multihomed_host(lab: Lab, name: str = "M1", routers: tuple[str, ...] = ("A", "B")) -> MultiHomedHost:
    """A host with ``eth0`` behind the first router, ``eth1`` behind the second, ...; a default
    route through each, the first preferred (metrics 100, 200, ...)."""
    netns = lab.add_host_namespace(name)
    uplinks: list[Uplink] = []
    for number, router_name in enumerate(routers):
        router = lab.topology.router(router_name)
        uplink = Uplink(
            router=router_name,
            ifname=f"eth{number}",
            peer=f"m{name}",
            address=ipaddress.IPv4Interface(
                f"{router.lan.network_address + MULTIHOMED_HOST_NUMBER}/{router.lan.prefixlen}"
            ),
            gateway=router.lan_address,
            metric=100 * (number + 1),
        )
        lab.plug(name, uplink.ifname, router_name, uplink.peer)

        def configure(ipr: Any, uplink: Uplink = uplink) -> None:
            (index,) = ipr.link_lookup(ifname=uplink.ifname)
            ipr.addr(
                "add", index=index, address=str(uplink.address.ip), prefixlen=uplink.address.network.prefixlen
            )
            ipr.link("set", index=index, state="up")
            ipr.route("add", dst="default", gateway=str(uplink.gateway), priority=uplink.metric)

        lab.netlink(name, configure)
        uplinks.append(uplink)
    for uplink in uplinks:  # a new veth gets its carrier a moment after it is set up
        wait_operstate(lab, name, uplink.ifname, "UP")
    return MultiHomedHost(name, netns, tuple(uplinks))


def wait_operstate(lab: Lab, host: str, ifname: str, state: str, timeout: float = CARRIER_TIMEOUT_S) -> None:
    """Wait (bounded) until ``host``'s ``ifname`` has operstate ``state`` (``UP``, ``DOWN`` ...)."""

    def current(ipr: Any) -> str:
        (link,) = ipr.get_links(ifname=ifname)
        return str(link.get_attr("IFLA_OPERSTATE"))

    deadline = time.monotonic() + timeout
    while (now := lab.netlink(host, current)) != state:
        if time.monotonic() > deadline:
            raise LabBuildError(
                lab.netns_of(host), f"{ifname} operstate", TimeoutError(f"{now}, not {state}")
            )
        time.sleep(0.01)


def peer_end(lab: Lab, host: str, uplink: Uplink | None = None) -> tuple[str, str]:
    """Where the other end of a host's cable is: (namespace, interface)."""
    if uplink is not None:
        return lab.topology.router(uplink.router).netns, uplink.peer
    planned = lab.host(host)
    if planned.router is None:
        return lab.topology.bridge_netns, f"o{planned.name}"
    return lab.topology.router(planned.router).netns, f"h{planned.name}"


def set_carrier(lab: Lab, host: str, up: bool, uplink: Uplink | None = None) -> None:
    """Plug (``up``) or pull the cable of ``host`` (its ``eth0``, or ``uplink``)."""
    netns, ifname = peer_end(lab, host, uplink)

    def switch(ipr: Any) -> None:
        (index,) = ipr.link_lookup(ifname=ifname)
        ipr.link("set", index=index, state="up" if up else "down")

    lab.netlink(netns, switch)


def change_address(
    lab: Lab, host: str, address: ipaddress.IPv4Interface, *, add: bool, ifname: str = HOST_IF
) -> None:
    """Add or remove ``address`` on ``host``'s ``ifname`` (removing the last IPv4 address also
    takes the routes through it away, as the kernel does)."""

    def change(ipr: Any) -> None:
        (index,) = ipr.link_lookup(ifname=ifname)
        ipr.addr(
            "add" if add else "del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
        )

    lab.netlink(host, change)


def change_default_route(lab: Lab, host: str, gateway: IPv4, metric: int, *, add: bool) -> None:
    """Add or delete the default route of ``host`` through ``gateway`` with ``metric``."""

    def change(ipr: Any) -> None:
        ipr.route("add" if add else "del", dst="default", gateway=str(gateway), priority=metric)

    lab.netlink(host, change)


def ignore_routes_with_linkdown(lab: Lab, host: str) -> None:
    """Make ``host``'s kernel pass over routes through an interface without carrier, as a board's
    network manager does by removing them (dhcpcd, NetworkManager): a multi-homed host then sends
    over its other uplink once one cable is pulled. (The kernel keeps such routes, marked
    ``linkdown``, and goes on using them otherwise.) Call it after the interfaces exist: the
    setting is per interface."""

    def write() -> None:
        for conf in sorted(os.listdir("/proc/sys/net/ipv4/conf")):
            path = f"/proc/sys/net/ipv4/conf/{conf}/ignore_routes_with_linkdown"
            try:
                with open(path, "w") as fh:
                    fh.write("1")
            except OSError as exc:
                raise NamespaceError(NamespaceOp.SYSCTL, path, exc.errno or 0, str(exc)) from exc

    lab.run_in(host, write)


def tx_packets(lab: Lab, host: str, ifname: str) -> int:
    """Packets ``host`` has sent out of ``ifname`` so far (which uplink carries traffic)."""

    def read(ipr: Any) -> int:
        (link,) = ipr.get_links(ifname=ifname)
        stats = link.get_attr("IFLA_STATS64")
        return int(stats["tx_packets"])

    return lab.netlink(host, read)


def busiest_uplink(lab: Lab, host: MultiHomedHost, since: dict[str, int]) -> Uplink:
    """The uplink that sent the most packets since ``since`` (ifname -> tx_packets then)."""
    return max(host.uplinks, key=lambda u: tx_packets(lab, host.name, u.ifname) - since[u.ifname])
