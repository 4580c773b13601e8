"""Who gets a TCP-TLS connection slot, and why the others are refused.

A TCP connection costs a stranger nothing, and one that never starts TLS holds its slot for the
whole handshake timeout. So connections that have not yet proven an identity ("pending": from
TCP accept until the identity proof is accepted) get their own share of the slots, inside
``max_connections``, and at most ``max_pending_per_address`` of them from one source: one
address that opens hundreds of idle connections holds a handful of slots, and a peer from
anywhere else still gets in. Authenticated peers are not capped per address (many players sit
behind one NAT), and our own dials are never pending (a stranger cannot make us dial).

A refused client is told why inside TLS, which costs a TLS handshake: those refusals are bounded
too (``max_refusing`` at once, and per source the same cap as its pending connections); beyond
that the connection is closed at once. Every refusal is counted by its ``Refusal`` either way.

Pure bookkeeping (no sockets, no clock), so the accounting is tested on its own.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from node.proto.link.stream_link import CloseReason

IPV6_SOURCE_PREFIX = 64  # RFC 4291 §2.5.1 / RFC 8981: a host picks any address in its /64


class Refusal(Enum):
    """Why an inbound connection got no slot (``status`` shows these values)."""

    TOO_MANY_CONNECTIONS = "too_many_connections"  # max_connections in use
    TOO_MANY_PENDING = "too_many_pending"  # max_pending connections still proving an identity
    TOO_MANY_PENDING_FROM_ADDRESS = "too_many_pending_from_address"  # that, from this source

    @property
    def wire(self) -> CloseReason:
        """The reason a client that completed TLS reads in the REFUSE frame."""
        return _ON_WIRE[self]


_ON_WIRE = {
    Refusal.TOO_MANY_CONNECTIONS: CloseReason.TOO_MANY_CONNECTIONS,
    Refusal.TOO_MANY_PENDING: CloseReason.TOO_MANY_PENDING,
    Refusal.TOO_MANY_PENDING_FROM_ADDRESS: CloseReason.TOO_MANY_PENDING_FROM_ADDRESS,
}

Source: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Network


def source_of(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Source:
    """The unit the per-address cap counts: an IPv4 address (also when it reaches a dual-stack
    listener as ``::ffff:a.b.c.d``), or an IPv6 host's /64."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX), strict=False)


@dataclass(frozen=True, slots=True)
class SlotLimits:
    max_connections: int = 100
    max_pending: int = 32
    max_pending_per_address: int = 8
    max_refusing: int = 32


class Slots:
    """The counts behind every admission decision; ``InboundSlot``/``RefusalSlot`` give back."""

    def __init__(self, limits: SlotLimits) -> None:
        self.limits = limits
        self.in_use = 0  # inbound (pending or proven) and outbound together
        self.pending = 0
        self.refusing = 0
        self._pending_from: Counter[Source] = Counter()
        self._refusing_from: Counter[Source] = Counter()

    def admit(self, source: Source) -> InboundSlot | Refusal:
        """A slot for a connection just accepted from ``source``, pending; or why not."""
        limits = self.limits
        if self.in_use >= limits.max_connections:
            return Refusal.TOO_MANY_CONNECTIONS
        if self._pending_from[source] >= limits.max_pending_per_address:
            return Refusal.TOO_MANY_PENDING_FROM_ADDRESS
        if self.pending >= limits.max_pending:
            return Refusal.TOO_MANY_PENDING
        self.in_use += 1
        self.pending += 1
        self._pending_from[source] += 1
        return InboundSlot(self, source)

    def take_outbound(self) -> bool:
        """A slot for our own dial (never pending); False when all are in use."""
        if self.in_use >= self.limits.max_connections:
            return False
        self.in_use += 1
        return True

    def release_outbound(self) -> None:
        self.in_use -= 1

    def take_refusal(self, source: Source) -> RefusalSlot | None:
        """Room to tell a refused client why inside TLS; None: close it at once instead."""
        cap = self.limits.max_pending_per_address
        if self.refusing >= self.limits.max_refusing or self._refusing_from[source] >= cap:
            return None
        self.refusing += 1
        self._refusing_from[source] += 1
        return RefusalSlot(self, source)

    def pending_from(self, source: Source) -> int:
        return self._pending_from[source]

    def _leave_pending(self, source: Source) -> None:
        self.pending -= 1
        _decrement(self._pending_from, source)

    def _end_refusal(self, source: Source) -> None:
        self.refusing -= 1
        _decrement(self._refusing_from, source)


def _decrement(counts: Counter[Source], source: Source) -> None:
    counts[source] -= 1
    if counts[source] <= 0:
        del counts[source]  # the table holds only sources with connections now


class InboundSlot:
    """One inbound connection's slot: pending until ``proven``, given back by ``release``."""

    __slots__ = ("_held", "_pending", "_slots", "_source")

    def __init__(self, slots: Slots, source: Source) -> None:
        self._slots = slots
        self._source = source
        self._pending = True
        self._held = True

    @property
    def pending(self) -> bool:
        return self._pending

    def proven(self) -> None:
        """The peer's identity proof was accepted: it leaves the pending share (keeps its slot)."""
        if self._pending:
            self._pending = False
            self._slots._leave_pending(self._source)

    def release(self) -> None:
        """The connection ended (idempotent)."""
        if self._held:
            self.proven()
            self._held = False
            self._slots.in_use -= 1


class RefusalSlot:
    """One refusal being told inside TLS; ``release`` when it is done (idempotent)."""

    __slots__ = ("_held", "_slots", "_source")

    def __init__(self, slots: Slots, source: Source) -> None:
        self._slots = slots
        self._source = source
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._end_refusal(self._source)
