"""What the link monitor reports: the kernel's network state and its changes, as frozen data."""

from __future__ import annotations

import enum
import ipaddress
import socket
from dataclasses import dataclass

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Family(enum.IntEnum):
    """Address families the monitor follows (``<linux/socket.h>``)."""

    INET = socket.AF_INET
    INET6 = socket.AF_INET6


class OperState(enum.StrEnum):
    """An interface's operational state: RFC 2863 section 3.1.14 ifOperStatus, as the kernel's
    IF_OPER_* (``<linux/if.h>``) numbers them, in lower case as ``ip link`` prints them."""

    UNKNOWN = "unknown"  # 0: drivers that do not track it (lo, tun) report this while working
    NOTPRESENT = "notpresent"  # 1
    DOWN = "down"  # 2
    LOWERLAYERDOWN = "lowerlayerdown"  # 3: e.g. a pulled cable, or a veth whose peer is down
    TESTING = "testing"  # 4
    DORMANT = "dormant"  # 5: e.g. Wi-Fi not yet authenticated
    UP = "up"  # 6

    @classmethod
    def from_code(cls, code: int) -> OperState:
        return _BY_CODE.get(code, cls.UNKNOWN)


_BY_CODE = dict(enumerate(OperState))


@dataclass(frozen=True, slots=True)
class Interface:
    """One interface: ``carrier`` is IFF_LOWER_UP, ``admin_up`` is IFF_UP."""

    index: int
    name: str
    state: OperState
    carrier: bool
    admin_up: bool
    addresses: tuple[IPInterface, ...] = ()

    @property
    def up(self) -> bool:
        """Able to carry traffic: carrier present and operstate up (or unknown, which drivers
        without operstate support report while working), not merely administratively up."""
        return self.carrier and self.state in (OperState.UP, OperState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class DefaultRoute:
    """A default route of the main table (0.0.0.0/0 or ::/0); ``gateway`` None for on-link."""

    family: Family
    interface_index: int
    interface: str
    gateway: IPAddress | None
    metric: int


@dataclass(frozen=True, slots=True)
class NetworkState:
    """The namespace's interfaces (by index) and default routes (lowest metric first)."""

    interfaces: tuple[Interface, ...]
    default_routes: tuple[DefaultRoute, ...]

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def has_address(self, address: IPAddress) -> bool:
        """True when some interface holds ``address`` (any prefix length)."""
        return any(a.ip == address for i in self.interfaces for a in i.addresses)


@dataclass(frozen=True, slots=True)
class MonitorStats:
    """Counters since start: ``events`` reported, ``overruns`` (ENOBUFS, each followed by a
    re-dump), ``malformed`` (truncated or undecodable messages), ``unknown`` (message types the
    monitor does not follow), ``resyncs`` (full dumps done, the first included),
    ``socket_failures`` (each followed by a new socket after a backoff), ``dropped`` (events
    nobody read before the queue filled)."""

    events: int = 0
    overruns: int = 0
    malformed: int = 0
    unknown: int = 0
    resyncs: int = 0
    socket_failures: int = 0
    dropped: int = 0


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkUp:
    index: int
    interface: str
    state: OperState


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The interface lost carrier or its operstate left up (``state`` says which: e.g.
    ``lowerlayerdown`` for a pulled cable, ``down`` for admin down, ``notpresent`` when removed)."""

    index: int
    interface: str
    state: OperState


@dataclass(frozen=True, slots=True)
class AddressAdded:
    index: int
    interface: str
    address: IPInterface


@dataclass(frozen=True, slots=True)
class AddressRemoved:
    index: int
    interface: str
    address: IPInterface


@dataclass(frozen=True, slots=True)
class DefaultRouteChanged:
    """The default routes of ``family`` changed from ``previous`` to ``current`` (each lowest
    metric first; ``current`` empty when the family has no default route any more)."""

    family: Family
    previous: tuple[DefaultRoute, ...]
    current: tuple[DefaultRoute, ...]


LinkEvent = LinkUp | LinkDown | AddressAdded | AddressRemoved | DefaultRouteChanged
