"""Round-trip probes inside a secure session: how a datagram path measures its RTT and loss.

A probe is the whole plaintext of one TRANSPORT datagram, shorter than a fragment header
(node.proto.datagram.fragments, 19 bytes), so it can never be mistaken for a fragment::

    kind   u8   1 = PING, 2 = PONG
    token  u64  chosen by the pinger; the PONG echoes it

It rides the same keys as the data (so it proves the path both ways, and counts for consent);
a PONG answers only a PING, never another PONG, so probes cannot loop.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from node.proto.datagram.fragments import HEADER_SIZE

__all__ = ["PROBE_SIZE", "ProbeKind", "encode_probe", "parse_probe"]

_PROBE: Final = struct.Struct("!BQ")
PROBE_SIZE: Final = _PROBE.size
assert PROBE_SIZE < HEADER_SIZE  # the whole point: shorter than any fragment


class ProbeKind(enum.IntEnum):
    PING = 1
    PONG = 2


def encode_probe(kind: ProbeKind, token: int) -> bytes:
    return _PROBE.pack(kind, token)


def parse_probe(data: bytes) -> tuple[ProbeKind, int] | None:
    """The probe in ``data``, or None when it is not one (a fragment, or garbage)."""
    if len(data) != PROBE_SIZE:
        return None
    kind, token = _PROBE.unpack(data)
    if kind not in (ProbeKind.PING, ProbeKind.PONG):
        return None
    return ProbeKind(kind), token
