"""The seed's transport decision matrix (DESIGN.md "Transport choice") as a prior: what a path
of each kind is worth before anything has been measured over it, given the NAT in front of this
node. The matrix's techniques map onto path kinds: direct UDP, hole punching, aggressive UDP and
port prediction all end in a ``udp`` path; TCP and TCP+TLS in ``tcp_tls``; TURN in ``turn``.
BLE is not in the matrix (it works only within radio range, whatever the NAT): it ranks after
every listed kind.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from node.proto.natprobe.types import NatType
from node.proto.vocabulary import TransportKind

_UDP, _TLS, _TURN = TransportKind.UDP, TransportKind.TCP_TLS, TransportKind.TURN

# NAT type -> (primary, fallback 1, fallback 2), the matrix's rows in its order.
MATRIX: Final = MappingProxyType(
    {
        NatType.OPEN: (_UDP,),
        NatType.FULL_CONE: (_UDP, _TLS, _TURN),
        NatType.RESTRICTED_CONE: (_UDP, _TLS, _TURN),
        NatType.PORT_RESTRICTED: (_TLS, _TURN, _UDP),
        NatType.SYMMETRIC: (_TURN, _TLS, _UDP),
        # UDP blocked is not a matrix row: only what does not need UDP from here is ranked.
        NatType.UDP_BLOCKED: (_TLS,),
        NatType.UNKNOWN: (_TLS, _TURN, _UDP),
    }
)

# Prior performance by rank: primary, fallback 1, fallback 2; a kind not listed gets UNLISTED.
RANK_VALUES: Final = (1.0, 0.75, 0.5)
UNLISTED: Final = 0.25


def prior(nat: NatType, kind: TransportKind) -> float:
    """The prior performance (0..1) of a path of ``kind`` from behind ``nat``."""
    ranking = MATRIX[nat]
    if kind in ranking:
        return RANK_VALUES[ranking.index(kind)]
    return UNLISTED
