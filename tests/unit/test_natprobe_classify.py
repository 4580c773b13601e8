"""The pure verdict functions and the probe's phase table."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from node.proto.natprobe import probe as natprobe
from node.proto.natprobe.classify import mapping_behaviour, nat_type, port_allocation
from node.proto.natprobe.types import Behaviour, Flow, NatType, PortAllocation

IP = ipaddress.IPv4Address
LOCAL = (IP("198.18.1.2"), 5000)
WAN = IP("203.0.113.21")
P = (IP("203.0.113.10"), 3478)
PA = (IP("203.0.113.10"), 3479)
AP = (IP("203.0.113.11"), 3478)
AA = (IP("203.0.113.11"), 3479)


def _flows(ports: list[int], local_port: int = 5000) -> list[Flow]:
    dests = [(IP("192.0.2.1"), 1000 + i) for i in range(len(ports))]
    return [Flow(0, (LOCAL[0], local_port), d, (WAN, p)) for d, p in zip(dests, ports, strict=True)]


def test_port_allocation() -> None:
    assert port_allocation(_flows([5000, 5000])) == (PortAllocation.PRESERVING, None)
    assert port_allocation(_flows([40000, 40001, 40002, 40003])) == (PortAllocation.SEQUENTIAL, 1)
    # the allocator wrapped once: still sequential
    assert port_allocation(_flows([40254, 40255, 40000, 40001, 40002])) == (PortAllocation.SEQUENTIAL, 1)
    assert port_allocation(_flows([40000, 40256, 40512])) == (PortAllocation.SEQUENTIAL, 256)
    assert port_allocation(_flows([31000, 52013, 1200, 40001])) == (PortAllocation.RANDOM, None)
    assert port_allocation(_flows([31000, 52013])) == (None, None)  # one step proves nothing
    assert port_allocation([]) == (None, None)


def test_mapping_behaviour_from_pairs() -> None:
    m1, m2 = (WAN, 1), (WAN, 2)
    assert mapping_behaviour([(P, m1), (AP, m1), (AA, m1), (PA, m1)]) == (
        Behaviour.ENDPOINT_INDEPENDENT, False, True,
    )  # fmt: skip
    assert mapping_behaviour([(P, m1), (AP, m2), (AA, m2), (PA, m1)]) == (
        Behaviour.ADDRESS_DEPENDENT, True, True,
    )  # fmt: skip
    assert mapping_behaviour([(P, m1), (AP, m2), (AA, (WAN, 3)), (PA, (WAN, 4))]) == (
        Behaviour.ADDRESS_AND_PORT_DEPENDENT, True, True,
    )  # fmt: skip
    assert mapping_behaviour([(P, m1), (AP, m2)]) == (None, True, True)  # ADM or APDM
    assert mapping_behaviour([(P, m1), (PA, m1)]) == (None, False, True)  # EIM or ADM
    assert mapping_behaviour([(P, m1)]) == (None, False, True)
    # contradictions: same IP differs but other IP agrees; one destination, two mappings
    assert mapping_behaviour([(P, m1), (PA, m2), (AP, m1)]) == (None, True, False)
    assert mapping_behaviour([(P, m1), (P, m2)])[2] is False


def test_nat_type_table() -> None:
    eif, adf, apdf = (
        Behaviour.ENDPOINT_INDEPENDENT, Behaviour.ADDRESS_DEPENDENT, Behaviour.ADDRESS_AND_PORT_DEPENDENT,
    )  # fmt: skip
    common = {"udp": True, "tcp": True, "translated": True, "varies": False}
    assert nat_type(**common, mapping=eif, filtering=eif) is NatType.FULL_CONE
    assert nat_type(**common, mapping=eif, filtering=adf) is NatType.RESTRICTED_CONE
    assert nat_type(**common, mapping=eif, filtering=apdf) is NatType.PORT_RESTRICTED
    assert nat_type(**common, mapping=eif, filtering=None) is NatType.UNKNOWN
    assert nat_type(**common, mapping=None, filtering=eif) is NatType.UNKNOWN
    assert nat_type(**{**common, "varies": True}, mapping=None, filtering=None) is NatType.SYMMETRIC
    untranslated = {**common, "translated": False}
    assert nat_type(**untranslated, mapping=eif, filtering=eif) is NatType.OPEN
    assert nat_type(**untranslated, mapping=eif, filtering=None) is NatType.OPEN
    assert nat_type(**untranslated, mapping=eif, filtering=apdf) is NatType.PORT_RESTRICTED
    assert nat_type(**untranslated, mapping=eif, filtering=adf) is NatType.RESTRICTED_CONE
    nothing = {"translated": False, "mapping": None, "varies": False, "filtering": None}
    assert nat_type(udp=False, tcp=True, **nothing) is NatType.UDP_BLOCKED
    assert nat_type(udp=False, tcp=False, **nothing) is NatType.UNKNOWN


def test_every_phase_input_pair_outside_the_table_is_illegal() -> None:
    probe = natprobe.NatProbe([], [LOCAL, LOCAL], 0.0)
    server = natprobe._Server(natprobe.ProbeServer("x", P), natprobe.Phase.BINDING, 0.0)
    for phase, input_ in itertools.product(natprobe.Phase, natprobe.PhaseInput):
        server.phase = phase
        if (phase, input_) in natprobe.TRANSITIONS:
            probe._fire(server, input_)
            assert server.phase is natprobe.TRANSITIONS[(phase, input_)]
        else:
            with pytest.raises(natprobe.IllegalTransition):
                probe._fire(server, input_)
