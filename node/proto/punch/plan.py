"""Which technique a pair of NATs calls for, from what discovery learned on each side.

The design's ground truth (DESIGN.md "The NAT lab", real Linux NATs): every pair of cone types
punches; port-restricted with symmetric and symmetric with symmetric fail with plain punching;
port-restricted with symmetric succeeds with the birthday technique; symmetric with symmetric works
only through TURN. From RFC 4787 the reasons generalise:

- both mappings endpoint-independent (§4.1): each side's server-reflexive address is the one the
  peer sees, so plain simultaneous punching works whatever the filtering;
- one endpoint-independent side whose filtering looks only at the address (§5: endpoint-independent
  or address-dependent): the symmetric side's fresh mapping passes it, and is learned as a
  peer-reflexive candidate: plain punching;
- the same with address-and-port-dependent filtering: the fresh mapping's port must be guessed —
  predicted when the symmetric side allocates sequentially with a known step (§4.2.2), else met by
  the birthday technique (many mappings on the hard side, random probes from the easy one);
- both mappings dependent: neither side's mapping towards the other can be learned first: relay.
- UDP blocked on either side: relay (over TCP or TLS).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node.proto.natprobe.types import Behaviour, NatReport, NatType, PortAllocation

_CONE = (NatType.OPEN, NatType.FULL_CONE, NatType.RESTRICTED_CONE, NatType.PORT_RESTRICTED)


class Technique(enum.Enum):
    PUNCH = "punch"
    PREDICTION = "prediction"
    BIRTHDAY = "birthday"
    RELAY = "relay"


class Role(enum.Enum):
    PEER = "peer"  # both sides check every pair alike
    PROBER = "prober"  # the easy side: probes the hard side's guessed ports
    TARGET = "target"  # the hard side: opens mappings towards the easy side


@dataclass(frozen=True, slots=True)
class NatProfile:
    """What the plan needs of one side's discovery report."""

    nat_type: NatType
    mapping: Behaviour | None = None
    filtering: Behaviour | None = None
    port_allocation: PortAllocation | None = None
    port_delta: int | None = None

    @classmethod
    def of(cls, report: NatReport) -> NatProfile:
        return cls(
            report.nat_type, report.mapping, report.filtering, report.port_allocation, report.port_delta
        )

    @property
    def blocked(self) -> bool:
        return self.nat_type is NatType.UDP_BLOCKED

    @property
    def independent_mapping(self) -> bool:
        # UNKNOWN is taken for the commonest NAT, Linux's default port-restricted one: a punch is
        # cheap to try and the relay is already up.
        if self.mapping is not None:
            return self.mapping is Behaviour.ENDPOINT_INDEPENDENT
        return self.nat_type in _CONE or self.nat_type is NatType.UNKNOWN

    @property
    def lets_new_ports_in(self) -> bool:
        """Its filtering admits a new port of an address it has sent to (RFC 4787 §5)."""
        if self.nat_type is NatType.OPEN:
            return True
        if self.filtering is not None:
            return self.filtering is not Behaviour.ADDRESS_AND_PORT_DEPENDENT
        return self.nat_type in (NatType.FULL_CONE, NatType.RESTRICTED_CONE)

    @property
    def predictable_step(self) -> int | None:
        if self.port_allocation is PortAllocation.SEQUENTIAL and self.port_delta:
            return self.port_delta
        return None


@dataclass(frozen=True, slots=True)
class Plan:
    technique: Technique
    role: Role
    # PROBER of a prediction: the hard side's step between new mappings.
    port_delta: int | None = None


def choose(local: NatProfile, remote: NatProfile) -> Plan:
    """This side's plan; ``choose(remote, local)`` is the peer's, with the complementary role."""
    if local.blocked or remote.blocked:
        return Plan(Technique.RELAY, Role.PEER)
    if local.independent_mapping and remote.independent_mapping:
        return Plan(Technique.PUNCH, Role.PEER)
    if not local.independent_mapping and not remote.independent_mapping:
        return Plan(Technique.RELAY, Role.PEER)
    easy, hard = (local, remote) if local.independent_mapping else (remote, local)
    role = Role.PROBER if local is easy else Role.TARGET
    if easy.lets_new_ports_in:
        return Plan(Technique.PUNCH, Role.PEER)
    step = hard.predictable_step
    if step is not None:
        return Plan(Technique.PREDICTION, role, step if role is Role.PROBER else None)
    return Plan(Technique.BIRTHDAY, role)
