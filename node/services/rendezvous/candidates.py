"""This node's candidates (RFC 8445 §5.1.1) and NAT profile, as it registers them with its
introducers and offers them in an introduction.

- host: the UDP port's own address; a port bound to the wildcard address reports the address the
  kernel would leave from towards the introducer (the one a peer on the same LAN reaches);
- server-reflexive: the mapped address NAT discovery learned from the node's own port;
- relayed: the TURN allocation's relayed address, when the relay is up.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from node.proto.natprobe.types import NatReport, NatType
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.plan import NatProfile
from node.proto.vocabulary import IpEndpoint
from node.transports.route import endpoint_source

UNKNOWN_NAT = NatProfile(NatType.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Gathered:
    candidates: tuple[Candidate, ...]
    nat: NatProfile


def gather(
    bound: IpEndpoint | None,
    report: NatReport | None,
    relayed: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None,
    toward: IpEndpoint | None,
) -> Gathered:
    """The candidates of the UDP port ``bound``, NAT discovery's ``report`` and the TURN
    allocation ``relayed``; ``toward`` (the introducer) picks the host address of a wildcard
    bind. Each address once, the most preferred kind kept."""
    found: list[Candidate] = []
    if bound is not None:
        ip = bound.ip
        if ip.is_unspecified and toward is not None:
            ip = endpoint_source(toward) or ip
        if not ip.is_unspecified:
            found.append(Candidate.of(CandidateKind.HOST, (ip, bound.port)))
    if report is not None and report.mapped_address is not None:
        found.append(Candidate.of(CandidateKind.SRFLX, report.mapped_address))
    if relayed is not None:
        found.append(Candidate.of(CandidateKind.RELAY, relayed))
    seen: set[tuple[object, int]] = set()
    unique = []
    for candidate in found:
        if candidate.address not in seen:
            seen.add(candidate.address)
            unique.append(candidate)
    nat = UNKNOWN_NAT if report is None or not report.answered else NatProfile.of(report)
    return Gathered(tuple(unique), nat)
