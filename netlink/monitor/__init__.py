"""The link monitor: links, addresses and default routes of one network namespace, as typed events.

``state`` is the sans-IO view of the kernel (fed rtnetlink datagrams, reports real changes);
``monitor`` its asyncio layer (a raw route socket on ``loop.add_reader``, so it runs on uvloop);
``model`` the frozen data both hand out; ``wire`` the framing and decoding.
"""

from netlink.monitor.errors import LinkMonitorError, MonitorFailure
from netlink.monitor.model import (
    AddressAdded,
    AddressRemoved,
    DefaultRoute,
    DefaultRouteChanged,
    Family,
    Interface,
    LinkDown,
    LinkEvent,
    LinkUp,
    MonitorStats,
    NetworkState,
    OperState,
)
from netlink.monitor.monitor import LinkMonitor
from netlink.monitor.sockets import open_route_socket
from netlink.monitor.state import KernelView

__all__ = [
    "AddressAdded",
    "AddressRemoved",
    "DefaultRoute",
    "DefaultRouteChanged",
    "Family",
    "Interface",
    "KernelView",
    "LinkDown",
    "LinkEvent",
    "LinkMonitor",
    "LinkMonitorError",
    "LinkUp",
    "MonitorFailure",
    "MonitorStats",
    "NetworkState",
    "OperState",
    "open_route_socket",
]
