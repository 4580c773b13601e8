"""rtnetlink framing and decoding (sans-IO): bytes from the route socket in, typed records out.

Framing (``nlmsghdr``, RFC 3549 section 2.3.2) is checked here before pyroute2's marshal classes
decode an address or route message's body, so a truncated message is counted and skipped instead
of being read past its end; link messages are read here (see ``_link``). Constants are the
kernel's (``<linux/netlink.h>``, ``<linux/rtnetlink.h>``).
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netlink.monitor.model import Family, IPAddress, IPInterface, OperState

NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10  # the dump changed while it was being made: redo it
NLM_F_REPLACE = 0x100
NLM_F_DUMP = 0x300
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RT_TABLE_MAIN = 254
RTN_UNICAST = 1

_FOLLOWED = frozenset({RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE})
_ERRNO = struct.Struct("=i")
_IFINFOMSG = struct.Struct("=BxxxiIxxxx")  # family, pad, type, index, flags, change
_NLA = struct.Struct("=HH")  # nla_len, nla_type
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
IFLA_IFNAME = 3
IFLA_OPERSTATE = 16


class DumpKind(enum.IntEnum):
    """What a dump request asks for (its message type)."""

    LINKS = RTM_GETLINK
    ADDRESSES = RTM_GETADDR
    ROUTES = RTM_GETROUTE


# The fixed header after nlmsghdr of each dump request: ifinfomsg (16 bytes), ifaddrmsg (8),
# rtmsg (12), all zero (AF_UNSPEC: every family).
_REQUEST_BODY = {DumpKind.LINKS: 16, DumpKind.ADDRESSES: 8, DumpKind.ROUTES: 12}


def dump_request(kind: DumpKind, seq: int) -> bytes:
    body = bytes(_REQUEST_BODY[kind])
    header = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return header + body


@dataclass(frozen=True, slots=True)
class Header:
    type: int
    flags: int
    seq: int
    pid: int


@dataclass(frozen=True, slots=True)
class LinkRecord:
    header: Header
    deleted: bool
    index: int
    name: str
    state: OperState
    carrier: bool
    admin_up: bool


@dataclass(frozen=True, slots=True)
class AddressRecord:
    header: Header
    deleted: bool
    index: int
    address: IPInterface


@dataclass(frozen=True, slots=True)
class RouteRecord:
    """A default route of the main table; one ``(interface index, gateway)`` per next hop."""

    header: Header
    deleted: bool
    family: Family
    metric: int
    hops: tuple[tuple[int, IPAddress | None], ...]


@dataclass(frozen=True, slots=True)
class Ignored:
    """Followed but irrelevant (a non-default route, a bridge-port link message, an ack)."""

    header: Header


@dataclass(frozen=True, slots=True)
class Done:
    header: Header


@dataclass(frozen=True, slots=True)
class ErrorReply:
    header: Header
    errno: int


@dataclass(frozen=True, slots=True)
class Unknown:
    header: Header


@dataclass(frozen=True, slots=True)
class Malformed:
    """Truncated or undecodable; ``header`` None when even the netlink header was cut."""

    header: Header | None
    why: str


Record = LinkRecord | AddressRecord | RouteRecord | Ignored | Done | ErrorReply | Unknown | Malformed


def parse(data: bytes) -> Iterator[Record]:
    """Every message in one datagram, in order; a bad length ends the datagram (the rest of it
    cannot be framed)."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < NLMSG_HEADER.size:
            yield Malformed(None, f"{len(data) - offset} bytes left, less than a netlink header")
            return
        length, mtype, flags, seq, pid = NLMSG_HEADER.unpack_from(data, offset)
        header = Header(mtype, flags, seq, pid)
        if length < NLMSG_HEADER.size or offset + length > len(data):
            yield Malformed(header, f"length {length} does not fit the {len(data) - offset} bytes left")
            return
        yield _decode(header, data[offset : offset + length])
        offset += (length + 3) & ~3  # NLMSG_ALIGN


def _decode(header: Header, message: bytes) -> Record:
    if header.type == NLMSG_DONE:
        return Done(header)
    if header.type == NLMSG_ERROR:
        if len(message) < NLMSG_HEADER.size + _ERRNO.size:
            return Malformed(header, "error message without its error code")
        (code,) = _ERRNO.unpack_from(message, NLMSG_HEADER.size)
        return ErrorReply(header, -code) if code else Ignored(header)
    if header.type == NLMSG_NOOP:
        return Ignored(header)
    if header.type not in _FOLLOWED:
        return Unknown(header)
    try:
        return _decode_followed(header, message)
    except Exception as exc:  # pyroute2 raises many types on hostile bytes; all mean malformed
        return Malformed(header, f"{type(exc).__name__} decoding message type {header.type}: {exc}")


def _decode_followed(header: Header, message: bytes) -> Record:
    if header.type in (RTM_NEWLINK, RTM_DELLINK):
        return _link(header, message)
    if header.type in (RTM_NEWADDR, RTM_DELADDR):
        return _address(header, message)
    return _route(header, message)


def _link(header: Header, message: bytes) -> Record:
    """Link messages are read here, not by pyroute2's ifinfmsg: they carry the latency-critical
    news (carrier), and ifinfmsg decodes every attribute of a ~1.5 KB message (~100 us here)
    where the monitor needs two (``bench/linkmon.py``)."""
    if len(message) < NLMSG_HEADER.size + _IFINFOMSG.size:
        return Malformed(header, f"link message of {len(message)} bytes, shorter than ifinfomsg")
    family, index, flags = _IFINFOMSG.unpack_from(message, NLMSG_HEADER.size)
    if family != socket.AF_UNSPEC:
        # AF_BRIDGE messages describe bridge ports; a DELLINK of that family is a port leaving
        # its bridge, not the link going away.
        return Ignored(header)
    name, operstate = "", OperState.UNKNOWN
    offset = NLMSG_HEADER.size + _IFINFOMSG.size
    while offset + _NLA.size <= len(message):
        length, kind = _NLA.unpack_from(message, offset)
        if length < _NLA.size or offset + length > len(message):
            return Malformed(
                header, f"link {index}: attribute {kind} of length {length} overruns the message"
            )
        value = message[offset + _NLA.size : offset + length]
        kind &= _NLA_TYPE_MASK
        if kind == IFLA_IFNAME:
            name = value.split(b"\0", 1)[0].decode(errors="replace")
        elif kind == IFLA_OPERSTATE and value:
            operstate = OperState.from_code(value[0])
        offset += (length + 3) & ~3  # NLA_ALIGN
    if not name:
        return Malformed(header, f"link {index} without IFLA_IFNAME")
    return LinkRecord(
        header,
        deleted=header.type == RTM_DELLINK,
        index=index,
        name=name,
        state=operstate,
        carrier=bool(flags & IFF_LOWER_UP),
        admin_up=bool(flags & IFF_UP),
    )


def _address(header: Header, message: bytes) -> Record:
    msg = ifaddrmsg(message)
    msg.decode()
    if msg["family"] not in (socket.AF_INET, socket.AF_INET6):
        return Ignored(header)
    # IFA_LOCAL is the local address; IFA_ADDRESS is the peer's on point-to-point links.
    local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    if not local:
        return Malformed(header, f"address message for link {msg['index']} without an address")
    address = ipaddress.ip_interface(f"{local}/{msg['prefixlen']}")
    return AddressRecord(header, header.type == RTM_DELADDR, int(msg["index"]), address)


def _route(header: Header, message: bytes) -> Record:
    msg = rtmsg(message)
    msg.decode()
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    if (
        msg["family"] not in (socket.AF_INET, socket.AF_INET6)
        or msg["dst_len"] != 0
        or table != RT_TABLE_MAIN
        or msg["type"] != RTN_UNICAST
    ):
        return Ignored(header)
    hops: list[tuple[int, IPAddress | None]] = []
    multipath = msg.get_attr("RTA_MULTIPATH")
    if multipath:
        for hop in multipath:
            hops.append((int(hop["oif"]), _ip(hop.get_attr("RTA_GATEWAY"))))
    else:
        oif = msg.get_attr("RTA_OIF")
        if oif is None:
            return Malformed(header, "default route without RTA_OIF")
        hops.append((int(oif), _ip(msg.get_attr("RTA_GATEWAY"))))
    return RouteRecord(
        header,
        deleted=header.type == RTM_DELROUTE,
        family=Family(msg["family"]),
        metric=int(msg.get_attr("RTA_PRIORITY") or 0),
        hops=tuple(hops),
    )


def _ip(value: object) -> IPAddress | None:
    return None if not value else ipaddress.ip_address(str(value))
