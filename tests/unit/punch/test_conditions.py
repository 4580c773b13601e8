"""The punch under harder conditions, over virtual NATs in virtual time: loss, one side firing
200 ms late, the birthday technique over many seeds, and a NAT mapping that expires mid-session
and is punched again."""

from __future__ import annotations

import ipaddress
import random

import pytest

from node.proto.punch.events import Method, Nominated
from tests.fakes.stun_server import Datagram
from tests.fakes.vnet import VirtualNetwork
from tests.unit.punch.harness import Nat, Peer, add_peer, outcome, path_works, run, start

HARD_PAIRS = [
    (Nat.FULL_CONE, Nat.RESTRICTED_CONE),
    (Nat.PORT_RESTRICTED, Nat.PORT_RESTRICTED),
    (Nat.RESTRICTED_CONE, Nat.SYMMETRIC),
    (Nat.OPEN, Nat.SYMMETRIC_SEQUENTIAL),
    (Nat.PORT_RESTRICTED, Nat.SYMMETRIC_SEQUENTIAL),
    (Nat.SYMMETRIC, Nat.PORT_RESTRICTED),
]
IP = ipaddress.IPv4Address
IDS = [f"{a.value}+{b.value}" for a, b in HARD_PAIRS]


def _lossy(net: VirtualNetwork, seed: int, rate: float) -> None:
    rng = random.Random(seed)

    def drop(_d: Datagram) -> bool:
        return rng.random() < rate

    net.drop = drop


def _punch(net: VirtualNetwork, a_kind: Nat, b_kind: Nat, seed: int, late: float = 0.0) -> tuple[Peer, Peer]:
    a, b = add_peer(net, a_kind, 1, seed), add_peer(net, b_kind, 2, seed + 1000)
    assert start(a, b, fire_a=1.0, fire_b=1.0 + late, seed=seed)
    run(net, a, b)
    return a, b


def _both_direct(net: VirtualNetwork, a: Peer, b: Peer) -> bool:
    net.drop = lambda _d: False
    return path_works(net, a, b) and path_works(net, b, a)


@pytest.mark.parametrize(("a", "b"), HARD_PAIRS, ids=IDS)
def test_punches_through_20_percent_loss(a: Nat, b: Nat) -> None:
    for seed in range(5):
        net = VirtualNetwork()
        _lossy(net, seed, 0.2)
        pa, pb = _punch(net, a, b, seed)
        assert _both_direct(net, pa, pb), (seed, outcome(pa), outcome(pb))


@pytest.mark.parametrize(("a", "b"), HARD_PAIRS, ids=IDS)
@pytest.mark.parametrize("late_side", ["a", "b"])
def test_punches_when_one_side_fires_200_ms_late(a: Nat, b: Nat, late_side: str) -> None:
    net = VirtualNetwork()
    first, second = (b, a) if late_side == "a" else (a, b)
    pa, pb = _punch(net, first, second, seed=3, late=0.2)
    assert _both_direct(net, pa, pb)
    late = outcome(pb)
    # The late side's first packets find the early side's mapping open: it finishes from its own
    # first round (or a triggered check), not after the early side's attempts have run out.
    assert isinstance(late, Nominated) and late.at < 1.2 + 1.0


def test_birthday_meets_within_2048_probes_on_most_seeds() -> None:
    hits, probes = 0, []
    for seed in range(20):
        net = VirtualNetwork()
        easy, hard = _punch(net, Nat.PORT_RESTRICTED, Nat.SYMMETRIC, seed)
        assert easy.agent is not None and hard.agent is not None
        sent = easy.agent.stats().probes_sent
        assert sent <= 2048
        got = outcome(easy)
        if isinstance(got, Nominated) and got.method is Method.BIRTHDAY and _both_direct(net, easy, hard):
            hits += 1
            probes.append(sent)
    # Ideal network: a miss has probability (1 - 256/64512)^2048, about 3e-4 (guesses.py).
    assert hits >= 18, (hits, probes)
    assert sorted(probes)[len(probes) // 2] < 1024  # the median hit comes early, as in the lab (152)


def test_birthday_with_loss_still_meets_on_most_seeds() -> None:
    hits = 0
    for seed in range(10):
        net = VirtualNetwork()
        _lossy(net, seed, 0.1)
        easy, hard = _punch(net, Nat.SYMMETRIC, Nat.PORT_RESTRICTED, seed)
        hits += _both_direct(net, easy, hard)
    assert hits >= 8


@pytest.mark.parametrize(
    ("a", "b"),
    [(Nat.PORT_RESTRICTED, Nat.PORT_RESTRICTED), (Nat.PORT_RESTRICTED, Nat.SYMMETRIC_SEQUENTIAL)],
    ids=["port-restricted+port-restricted", "port-restricted+symmetric-sequential"],
)
def test_a_mapping_that_expires_mid_session_is_punched_again(a: Nat, b: Nat) -> None:
    net = VirtualNetwork()
    pa, pb = add_peer(net, a, 1, 1, timeout=30.0), add_peer(net, b, 2, 2, timeout=30.0)
    assert start(pa, pb, fire_a=1.0, fire_b=1.0, seed=1)
    run(net, pa, pb)
    assert _both_direct(net, pa, pb)
    # Traffic within the timeout keeps the mappings.
    net.run_until(net.now + 20.0)
    assert _both_direct(net, pa, pb)
    # Silence beyond it: the NATs forget, and the nominated path no longer carries anything. (Only
    # one direction can be shown: that datagram itself makes a fresh mapping on the sender's NAT.)
    net.run_until(net.now + 31.0)
    assert not path_works(net, pb, pa)
    assert pa.agent is not None and pb.agent is not None
    fire = net.now + 0.5
    pa.agent.restart(fire)
    pb.agent.restart(fire)
    assert not pa.agent.finished
    run(net, pa, pb, until=net.now + 10.0)
    again_a, again_b = outcome(pa), outcome(pb)
    assert isinstance(again_a, Nominated) and again_a.at >= fire
    assert isinstance(again_b, Nominated) and again_b.at >= fire
    assert _both_direct(net, pa, pb)


@pytest.mark.parametrize("moved", [0, 40, 200])
def test_prediction_meets_a_counter_that_moved_on_since_discovery(moved: int) -> None:
    """A sequential NAT hands its next ports to every flow behind it: by the time of the punch
    the counter has moved past the mapping discovery saw (other flows of the node, other hosts).
    The prober's window reaches that far, nearest first."""
    net = VirtualNetwork()
    easy, hard = add_peer(net, Nat.PORT_RESTRICTED, 1, 1), add_peer(net, Nat.SYMMETRIC_SEQUENTIAL, 2, 2)
    assert hard.nat is not None
    for i in range(moved):
        assert hard.nat.outbound((hard.host, 5000 + i), (IP("192.0.2.99"), 7000), net.now) is not None
    assert start(easy, hard, fire_a=1.0, fire_b=1.0, seed=1)
    run(net, easy, hard)
    got_easy, got_hard = outcome(easy), outcome(hard)
    assert isinstance(got_easy, Nominated) and got_easy.method is Method.PREDICTION, got_easy
    assert isinstance(got_hard, Nominated) and got_hard.method is Method.PREDICTION, got_hard
    assert _both_direct(net, easy, hard)
