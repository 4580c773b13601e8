"""Every pair of the issue's seven behaviours ends as the design's ground truth predicts
(DESIGN.md "The NAT lab"), with two punching cores over virtual NATs in virtual time: cone pairs
and any pair with an open host punch plainly, port-restricted with symmetric meets through the
birthday technique, with symmetric-sequential through prediction, symmetric with symmetric and
anything with udp-blocked relay. A direct outcome is proven by a datagram crossing both NATs on
the nominated path, both ways."""

from __future__ import annotations

import itertools

import pytest

from node.proto.punch.errors import PunchFailure
from node.proto.punch.events import Method, Nominated, PunchFailed
from node.proto.punch.plan import Plan, Role, Technique
from tests.fakes.vnet import VirtualNetwork
from tests.unit.punch.harness import Nat, add_peer, outcome, path_works, run, start

PAIRS = list(itertools.product(Nat, Nat))
_HARD = (Nat.SYMMETRIC, Nat.SYMMETRIC_SEQUENTIAL)


def expected(a: Nat, b: Nat) -> Technique:
    """The ground truth, written out pair by pair (not derived from ``plan.choose``)."""
    pair = {a, b}
    if Nat.UDP_BLOCKED in pair:
        return Technique.RELAY
    if pair <= set(_HARD):
        return Technique.RELAY
    if pair == {Nat.PORT_RESTRICTED, Nat.SYMMETRIC}:
        return Technique.BIRTHDAY
    if pair == {Nat.PORT_RESTRICTED, Nat.SYMMETRIC_SEQUENTIAL}:
        return Technique.PREDICTION
    return Technique.PUNCH


def _direct(
    net: VirtualNetwork, a_kind: Nat, b_kind: Nat, seed: int = 1, late: float = 0.0
) -> tuple[object, object]:
    a, b = add_peer(net, a_kind, 1, seed), add_peer(net, b_kind, 2, seed + 100)
    assert start(a, b, fire_a=1.0, fire_b=1.0 + late, seed=seed)
    run(net, a, b)
    assert path_works(net, a, b) and path_works(net, b, a), (outcome(a), outcome(b))
    return outcome(a), outcome(b)


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a.value}+{b.value}" for a, b in PAIRS])
def test_every_pair_ends_as_the_ground_truth_predicts(a: Nat, b: Nat) -> None:
    net = VirtualNetwork()
    want = expected(a, b)
    if want is Technique.RELAY:
        pa, pb = add_peer(net, a, 1, 1), add_peer(net, b, 2, 2)
        assert not start(pa, pb, fire_a=1.0, fire_b=1.0, seed=1)
        assert pa.plan is not None and pa.plan.technique is Technique.RELAY
        return
    got_a, got_b = _direct(net, a, b)
    assert isinstance(got_a, Nominated) and isinstance(got_b, Nominated)
    if want is Technique.BIRTHDAY:
        assert got_a.method is got_b.method is Method.BIRTHDAY
    elif want is Technique.PREDICTION:
        assert got_a.method is got_b.method is Method.PREDICTION
    else:
        assert {got_a.method, got_b.method} <= {Method.HOST, Method.SRFLX, Method.PRFLX}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Nat.PORT_RESTRICTED, Nat.SYMMETRIC),
        (Nat.PORT_RESTRICTED, Nat.SYMMETRIC_SEQUENTIAL),
        (Nat.SYMMETRIC, Nat.SYMMETRIC),
        (Nat.SYMMETRIC_SEQUENTIAL, Nat.SYMMETRIC),
    ],
)
def test_plain_punching_fails_where_the_ground_truth_says_it_does(a: Nat, b: Nat) -> None:
    """Without the guesses these pairs find no path (so the matrix's techniques are needed, and
    the NAT models are strict enough to tell)."""
    net = VirtualNetwork()
    pa, pb = add_peer(net, a, 1, 1), add_peer(net, b, 2, 2)
    punch = Plan(Technique.PUNCH, Role.PEER)
    assert start(pa, pb, fire_a=1.0, fire_b=1.0, seed=1, plans=(punch, punch))
    run(net, pa, pb)
    for got in (outcome(pa), outcome(pb)):
        assert isinstance(got, PunchFailed) and got.reason is PunchFailure.NO_ANSWER
