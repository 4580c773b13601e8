"""The lab's shape and address plan as frozen data.

Addresses come only from 198.18.0.0/15 (RFC 2544 benchmarking) and the TEST-NETs
(RFC 5737); never from RFC 1918 space.

- ``pub``: a namespace holding the bridge ``br0`` (the public segment, 203.0.113.0/24).
- ``srv``: 203.0.113.10 and .11 (STUN/TURN, two addresses for RFC 5780) and .12 (a stranger).
- router ``X`` (index i from 1): WAN 203.0.113.(20+i) on the bridge, LAN 198.18.i.1/24 on the
  bridge ``lan0`` in the router; hosts ``X1``, ``X2``... at 198.18.i.2, .3, ...
- open hosts ``O1``...: 203.0.113.(100+k) on the public bridge, no NAT.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netlink.lab.errors import LabTopologyError
from netlink.lab.nat import NatBehaviour

IPv4 = ipaddress.IPv4Address

PUBLIC_NET = ipaddress.IPv4Network("203.0.113.0/24")  # RFC 5737 TEST-NET-3
LAN_SUPERNET = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544 benchmarking
ALLOWED_NETS: tuple[ipaddress.IPv4Network, ...] = (
    LAN_SUPERNET,
    ipaddress.IPv4Network("192.0.2.0/24"),  # RFC 5737 TEST-NET-1
    ipaddress.IPv4Network("198.51.100.0/24"),  # RFC 5737 TEST-NET-2
    PUBLIC_NET,
)

STUN_PRIMARY = IPv4("203.0.113.10")
STUN_SECONDARY = IPv4("203.0.113.11")
STRANGER = IPv4("203.0.113.12")
PUBLIC_PREFIXLEN = 24
LAN_PREFIXLEN = 24
MAX_ROUTERS = 30
MAX_HOSTS_PER_ROUTER = 50
MAX_OPEN_HOSTS = 50
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,7}-$")
ROUTER_NAME_RE = re.compile(r"^[A-Z]$")


def is_allowed(address: IPv4) -> bool:
    """True when ``address`` lies in 198.18.0.0/15 or a TEST-NET."""
    return any(address in net for net in ALLOWED_NETS)


def new_prefix() -> str:
    """A unique namespace-name prefix such as ``bcl1a2b-`` so that labs can coexist."""
    return f"bcl{secrets.token_hex(2)}-"


@dataclass(frozen=True, slots=True)
class Host:
    """A machine behind a router (or on the public segment when ``router`` is None)."""

    name: str
    netns: str
    address: IPv4
    prefixlen: int
    gateway: IPv4 | None
    router: str | None


@dataclass(frozen=True, slots=True)
class Router:
    """A NAT router: WAN on the public bridge, LAN bridge ``lan0`` with its hosts."""

    name: str
    netns: str
    index: int
    behaviour: NatBehaviour
    wan: IPv4
    lan: ipaddress.IPv4Network
    lan_address: IPv4
    hosts: tuple[Host, ...]


@dataclass(frozen=True, slots=True)
class Server:
    """The server namespace: STUN/TURN on two addresses plus a stranger address."""

    netns: str
    primary: IPv4 = STUN_PRIMARY
    secondary: IPv4 = STUN_SECONDARY
    stranger: IPv4 = STRANGER

    @property
    def addresses(self) -> tuple[IPv4, IPv4, IPv4]:
        return (self.primary, self.secondary, self.stranger)


@dataclass(frozen=True, slots=True)
class Topology:
    """One lab: a public bridge namespace, the server, routers with hosts, open hosts."""

    prefix: str
    bridge_netns: str
    server: Server
    routers: tuple[Router, ...]
    open_hosts: tuple[Host, ...]

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the lab, in creation order."""
        names = [self.bridge_netns, self.server.netns]
        for router in self.routers:
            names.append(router.netns)
            names.extend(h.netns for h in router.hosts)
        names.extend(h.netns for h in self.open_hosts)
        return tuple(names)

    @property
    def hosts(self) -> tuple[Host, ...]:
        """Every host: those behind routers, then the open ones."""
        return tuple(h for r in self.routers for h in r.hosts) + self.open_hosts

    def router(self, name: str) -> Router:
        for router in self.routers:
            if router.name == name:
                return router
        raise LabTopologyError("router", f"no router named {name!r}")

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabTopologyError("host", f"no host named {name!r}")

    def with_behaviour(self, router: str, behaviour: NatBehaviour) -> Topology:
        """A copy with ``router`` switched to ``behaviour`` (validated)."""
        old = self.router(router)
        new = Router(old.name, old.netns, old.index, behaviour, old.wan, old.lan, old.lan_address, old.hosts)
        routers = tuple(new if r.name == router else r for r in self.routers)
        return Topology(self.prefix, self.bridge_netns, self.server, routers, self.open_hosts)

    def addresses(self) -> Iterator[IPv4]:
        """Every address the lab assigns."""
        yield from self.server.addresses
        for router in self.routers:
            yield router.wan
            yield router.lan_address
            yield from (h.address for h in router.hosts)
        yield from (h.address for h in self.open_hosts)


def plan(
    nats: Iterable[tuple[str, NatBehaviour]] = (
        ("A", NatBehaviour.PORT_RESTRICTED),
        ("B", NatBehaviour.SYMMETRIC),
    ),
    *,
    hosts_per_router: int = 1,
    open_hosts: int = 0,
    prefix: str | None = None,
) -> Topology:
    """Lay out a lab: routers named by one capital letter each, in the order given."""
    prefix = new_prefix() if prefix is None else prefix
    if not PREFIX_RE.match(prefix):
        raise LabTopologyError("prefix", f"{prefix!r} must match {PREFIX_RE.pattern}")
    if not 1 <= hosts_per_router <= MAX_HOSTS_PER_ROUTER:
        raise LabTopologyError("hosts_per_router", f"must be 1..{MAX_HOSTS_PER_ROUTER}")
    if not 0 <= open_hosts <= MAX_OPEN_HOSTS:
        raise LabTopologyError("open_hosts", f"must be 0..{MAX_OPEN_HOSTS}")
    routers: list[Router] = []
    seen: set[str] = set()
    for index, (name, behaviour) in enumerate(nats, start=1):
        if not ROUTER_NAME_RE.match(name) or name in seen:
            raise LabTopologyError("router", f"{name!r}: one capital letter, each used once")
        if index > MAX_ROUTERS:
            raise LabTopologyError("routers", f"at most {MAX_ROUTERS}")
        seen.add(name)
        lan = ipaddress.IPv4Network(f"198.18.{index}.0/{LAN_PREFIXLEN}")
        gateway = lan.network_address + 1
        hosts = tuple(
            Host(
                name=f"{name}{j}",
                netns=f"{prefix}h{name}{j}",
                address=lan.network_address + 1 + j,
                prefixlen=LAN_PREFIXLEN,
                gateway=gateway,
                router=name,
            )
            for j in range(1, hosts_per_router + 1)
        )
        routers.append(
            Router(
                name=name,
                netns=f"{prefix}r{name}",
                index=index,
                behaviour=behaviour,
                wan=PUBLIC_NET.network_address + 20 + index,
                lan=lan,
                lan_address=gateway,
                hosts=hosts,
            )
        )
    opens = tuple(
        Host(
            name=f"O{k}",
            netns=f"{prefix}hO{k}",
            address=PUBLIC_NET.network_address + 100 + k,
            prefixlen=PUBLIC_PREFIXLEN,
            gateway=None,
            router=None,
        )
        for k in range(1, open_hosts + 1)
    )
    topo = Topology(
        prefix=prefix,
        bridge_netns=f"{prefix}pub",
        server=Server(netns=f"{prefix}srv"),
        routers=tuple(routers),
        open_hosts=opens,
    )
    for address in topo.addresses():
        if not is_allowed(address):  # pragma: no cover - the plan above never leaves them
            raise LabTopologyError("address", f"{address} is outside 198.18.0.0/15 and TEST-NETs")
    return topo
