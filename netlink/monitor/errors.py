"""The link monitor's typed errors."""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError


class MonitorFailure(enum.Enum):
    """Why the monitor's netlink socket failed (each is retried with backoff)."""

    SOCKET_OPEN = "cannot open the netlink route socket"
    SOCKET_READ = "the netlink route socket failed while reading"
    SOCKET_CLOSED = "the netlink route socket was closed under the monitor"
    SOCKET_SEND = "cannot send a dump request on the netlink route socket"
    DUMP_STUCK = "the kernel did not finish a netlink dump in time"


class LinkMonitorError(ReasonError[MonitorFailure], LocalError):
    """The monitor lost its view of the kernel for a while; ``reason`` says how."""
