"""From observations to a verdict: RFC 4787 mapping and filtering, port allocation and the seed's
NAT class. Pure functions over the probe's records; no state.

Mapping is decided from the mapped addresses one socket got towards different destinations, the
same rule whether they are an RFC 5780 server's four addresses (§4.3) or several plain servers:
each pair of destinations rules out the behaviours that would have predicted otherwise
(endpoint-independent: always the same mapping; address-dependent: the same exactly when the
destination IP is the same; address-and-port-dependent: never the same). One survivor is the
answer; none means the observations contradict each other.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

from node.proto.natprobe.types import Behaviour, Endpoint, Flow, NatType, PortAllocation

EIM = Behaviour.ENDPOINT_INDEPENDENT
ADM = Behaviour.ADDRESS_DEPENDENT
APDM = Behaviour.ADDRESS_AND_PORT_DEPENDENT

# Port allocation: a constant step seen this many times among the new mappings is sequential;
# one other step is allowed (the allocator wrapping around its range).
MIN_SEQUENTIAL_STEPS = 2
MAX_SEQUENTIAL_DELTA = 1024


def mapping_behaviour(
    observations: Sequence[tuple[Endpoint, Endpoint]],
) -> tuple[Behaviour | None, bool, bool]:
    """(behaviour or None, mapping varies by destination, observations consistent) from
    (destination, mapped address) pairs of one local socket."""
    seen: dict[Endpoint, Endpoint] = {}
    consistent = True
    for destination, mapped in observations:
        if seen.setdefault(destination, mapped) != mapped:
            consistent = False  # one destination, two mappings: nothing about it is stable
    remaining = {EIM, ADM, APDM}
    for (d1, m1), (d2, m2) in itertools.combinations(seen.items(), 2):
        same = m1 == m2
        if not same:
            remaining.discard(EIM)
        if same != (d1[0] == d2[0]):
            remaining.discard(ADM)
        if same:
            remaining.discard(APDM)
    if len(seen) < 2:
        return None, False, consistent
    if not remaining:
        varies = len(set(seen.values())) > 1
        return None, varies, False
    if len(remaining) == 1:
        (behaviour,) = remaining
        return behaviour, behaviour is not EIM, consistent
    return None, EIM not in remaining, consistent


def port_allocation(flows: Sequence[Flow]) -> tuple[PortAllocation | None, int | None]:
    """How the NAT picked ports for the mappings the probe made, in the order they were made."""
    known = [f for f in flows if f.mapped is not None]
    if not known:
        return None, None
    if all(f.mapped is not None and f.mapped[1] == f.local[1] for f in known):
        return PortAllocation.PRESERVING, None
    ports: list[int] = []
    made: set[tuple[int, Endpoint]] = set()
    for f in known:
        assert f.mapped is not None
        key = (f.socket, f.mapped)
        if key not in made:  # an endpoint-independent mapping reused is no new allocation
            made.add(key)
            ports.append(f.mapped[1])
    steps = [b - a for a, b in itertools.pairwise(ports)]
    if len(steps) < MIN_SEQUENTIAL_STEPS:
        return None, None
    delta, count = Counter(steps).most_common(1)[0]
    if 0 < abs(delta) <= MAX_SEQUENTIAL_DELTA and count >= max(MIN_SEQUENTIAL_STEPS, len(steps) - 1):
        return PortAllocation.SEQUENTIAL, delta
    return PortAllocation.RANDOM, None


def nat_type(
    *,
    udp: bool,
    tcp: bool,
    translated: bool,
    mapping: Behaviour | None,
    varies: bool,
    filtering: Behaviour | None,
) -> NatType:
    """The seed's class. "open" means no translation: the mapped address is the local one; a
    firewall that filters without translating is classed by its filtering, as a NAT with that
    filtering would be, because that is what decides whether peers get through."""
    if not udp:
        return NatType.UDP_BLOCKED if tcp else NatType.UNKNOWN
    if varies:
        return NatType.SYMMETRIC
    if not translated:
        if filtering is Behaviour.ADDRESS_DEPENDENT:
            return NatType.RESTRICTED_CONE
        if filtering is Behaviour.ADDRESS_AND_PORT_DEPENDENT:
            return NatType.PORT_RESTRICTED
        return NatType.OPEN
    if mapping is not EIM:
        return NatType.UNKNOWN
    return {
        Behaviour.ENDPOINT_INDEPENDENT: NatType.FULL_CONE,
        Behaviour.ADDRESS_DEPENDENT: NatType.RESTRICTED_CONE,
        Behaviour.ADDRESS_AND_PORT_DEPENDENT: NatType.PORT_RESTRICTED,
        None: NatType.UNKNOWN,
    }[filtering]
