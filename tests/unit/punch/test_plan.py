"""The technique chosen for a pair of discovery reports, and the two sides agreeing on it."""

from __future__ import annotations

import itertools

import pytest

from node.proto.natprobe.types import NatType
from node.proto.punch.plan import NatProfile, Role, Technique, choose
from tests.unit.punch.harness import APD, PROFILES, Nat

PAIRS = list(itertools.product(Nat, Nat))


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a.value}+{b.value}" for a, b in PAIRS])
def test_both_sides_choose_the_same_technique_with_complementary_roles(a: Nat, b: Nat) -> None:
    mine, theirs = choose(PROFILES[a], PROFILES[b]), choose(PROFILES[b], PROFILES[a])
    assert mine.technique is theirs.technique
    if mine.technique in (Technique.PREDICTION, Technique.BIRTHDAY):
        assert {mine.role, theirs.role} == {Role.PROBER, Role.TARGET}
        prober = mine if mine.role is Role.PROBER else theirs
        # Only the prober of a prediction needs the hard side's step.
        assert (prober.port_delta is not None) is (mine.technique is Technique.PREDICTION)
    else:
        assert mine.role is theirs.role is Role.PEER


def test_a_report_without_behaviours_falls_back_on_its_nat_type() -> None:
    symmetric = NatProfile(NatType.SYMMETRIC)
    assert choose(NatProfile(NatType.PORT_RESTRICTED), symmetric).technique is Technique.BIRTHDAY
    assert choose(NatProfile(NatType.FULL_CONE), symmetric).technique is Technique.PUNCH
    assert choose(symmetric, NatProfile(NatType.SYMMETRIC, APD)).technique is Technique.RELAY
    # Nothing known: taken for the commonest NAT (Linux's default, port-restricted): worth a try
    # while the relay carries the game.
    unknown = NatProfile(NatType.UNKNOWN)
    assert choose(unknown, unknown).technique is Technique.PUNCH
    assert choose(unknown, symmetric).technique is Technique.BIRTHDAY
