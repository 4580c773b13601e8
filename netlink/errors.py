"""The root of every error the ``netlink`` package raises."""


class NetlinkError(Exception):
    """Root of every error raised by the netlink package."""
