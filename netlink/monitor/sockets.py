"""The monitor's socket: raw ``NETLINK_ROUTE``, non-blocking, joined to the link, address and
route groups at bind, so notifications queue from before the first dump is asked for."""

from __future__ import annotations

import contextlib
import socket

from netlink.monitor import wire

RECEIVE_BUFFER = 4 << 20  # room for a burst of notifications (a Pi with many addresses/routes)


def open_route_socket(*, rcvbuf: int | None = None, groups: int = wire.GROUPS) -> socket.socket:
    """A bound route socket in the calling thread's network namespace.

    ``rcvbuf`` None asks for ``RECEIVE_BUFFER`` (SO_RCVBUFFORCE when permitted, else SO_RCVBUF up
    to the system's rmem_max); a number sets SO_RCVBUF exactly (tests use a tiny one to provoke
    ENOBUFS).
    """
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    )
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        else:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except PermissionError:  # needs CAP_NET_ADMIN; the plain option is capped, not refused
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((0, groups))
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    return sock


_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # <asm-generic/socket.h>
