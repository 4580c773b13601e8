"""The score's numbers, the decision-matrix prior, and direct over relayed at equal measurements."""

from __future__ import annotations

import pytest

from node.proto.coordinator import Coordinator, Health
from node.proto.coordinator.prior import prior
from node.proto.coordinator.scoring import PathInputs, score
from node.proto.coordinator.settings import CoordinatorSettings
from node.proto.natprobe.types import NatType
from node.proto.vocabulary import Priority, TransportKind

from .harness import PEER, TLS, TURN, UDP, feed

SETTINGS = CoordinatorSettings()


def inputs(kind: TransportKind = TransportKind.UDP, **changes: object) -> PathInputs:
    fields: dict[str, object] = {
        "kind": kind,
        "relayed": kind is TransportKind.TURN,
        "health": Health.OPTIMAL,
        "srtt": 0.02,
        "loss": 0.0,
        "reliability": 1.0,
        "utilization": 0.0,
        "measurements": 100,
        "prior": 0.5,
    }
    fields.update(changes)
    return PathInputs(**fields)  # type: ignore[arg-type]


def test_worked_example_from_the_docstring() -> None:
    direct = score(inputs(), Priority.NORMAL, SETTINGS)
    assert direct.performance == pytest.approx((1 / 1.2 + 1 + 1) / 3)
    assert direct.fit == pytest.approx((1 / 1.2 + 1) / 2)
    assert direct.total == pytest.approx(0.4 + 0.3 * 0.9444 + 0.2 + 0.1 * 0.9167, abs=1e-4)
    assert round(direct.total, 3) == 0.975
    relayed = score(inputs(TransportKind.TURN), Priority.NORMAL, SETTINGS)
    assert round(relayed.total, 3) == 0.957


@pytest.mark.parametrize(
    ("health", "value"),
    [
        (Health.OPTIMAL, 1.0),
        (Health.GOOD, 0.75),
        (Health.DEGRADED, 0.5),
        (Health.CRITICAL, 0.2),
        (Health.FAILED, 0.0),
    ],
)
def test_health_is_forty_percent(health: Health, value: float) -> None:
    best = score(inputs(), Priority.NORMAL, SETTINGS)
    this = score(inputs(health=health), Priority.NORMAL, SETTINGS)
    assert best.total - this.total == pytest.approx(0.4 * (1.0 - value))


def test_load_is_twenty_percent_and_bulk_fit_wants_headroom() -> None:
    idle = score(inputs(), Priority.BULK, SETTINGS)
    busy = score(inputs(utilization=0.9), Priority.BULK, SETTINGS)
    assert idle.load - busy.load == pytest.approx(0.9)
    assert busy.fit == pytest.approx(0.1)
    assert idle.total - busy.total == pytest.approx(0.2 * 0.9 + 0.1 * 0.9)


def test_control_fit_is_latency_and_ble_scores_low_for_bulk() -> None:
    assert score(inputs(srtt=0.1), Priority.CONTROL, SETTINGS).fit == pytest.approx(0.5)
    assert score(inputs(TransportKind.BLE), Priority.BULK, SETTINGS).fit == pytest.approx(0.2)


def test_prior_fades_linearly_over_ten_samples() -> None:
    unmeasured = score(inputs(measurements=0, srtt=None, loss=None, prior=1.0), Priority.NORMAL, SETTINGS)
    assert unmeasured.performance == pytest.approx(1.0)
    half = score(inputs(measurements=5, srtt=0.1, loss=0.0, prior=1.0), Priority.NORMAL, SETTINGS)
    assert half.performance == pytest.approx(0.5 * (0.5 + 1 + 1) / 3 + 0.5 * 1.0)


@pytest.mark.parametrize(
    ("nat", "ranking"),
    [
        (NatType.OPEN, (TransportKind.UDP,)),
        (NatType.FULL_CONE, (TransportKind.UDP, TransportKind.TCP_TLS, TransportKind.TURN)),
        (NatType.RESTRICTED_CONE, (TransportKind.UDP, TransportKind.TCP_TLS, TransportKind.TURN)),
        (NatType.PORT_RESTRICTED, (TransportKind.TCP_TLS, TransportKind.TURN, TransportKind.UDP)),
        (NatType.SYMMETRIC, (TransportKind.TURN, TransportKind.TCP_TLS, TransportKind.UDP)),
        (NatType.UNKNOWN, (TransportKind.TCP_TLS, TransportKind.TURN, TransportKind.UDP)),
    ],
)
def test_the_decision_matrix_ranks_kinds(nat: NatType, ranking: tuple[TransportKind, ...]) -> None:
    values = [prior(nat, kind) for kind in ranking]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
    assert prior(nat, TransportKind.BLE) < min(values)


@pytest.mark.parametrize(
    ("nat", "first"),
    [
        (NatType.OPEN, UDP),
        (NatType.FULL_CONE, UDP),
        (NatType.PORT_RESTRICTED, TLS),
        (NatType.SYMMETRIC, TURN),
    ],
)
def test_before_measurements_the_matrix_picks_the_path(nat: NatType, first: object) -> None:
    c = Coordinator(nat=nat)
    for key in (UDP, TLS, TURN):
        c.add_path(PEER, key, 0.0)
    assert c.choose(PEER, Priority.NORMAL, 0.0).primary == first


@pytest.mark.parametrize("priority", list(Priority))
def test_at_equal_measurements_direct_outranks_relayed(priority: Priority) -> None:
    # Behind a symmetric NAT the matrix prefers TURN; once both are measured the same, direct wins.
    unmeasured = Coordinator(nat=NatType.SYMMETRIC)
    c = Coordinator(nat=NatType.SYMMETRIC)
    for key in (TURN, UDP):
        unmeasured.add_path(PEER, key, 0.0)
        c.add_path(PEER, key, 0.0)
        feed(c, key, 0.0, 1.0)
    assert unmeasured.choose(PEER, priority, 0.0).primary == TURN
    assert c.choose(PEER, priority, 1.0).primary == UDP
    (view,) = c.snapshot(1.0)
    scores = {p.kind: p.score for p in view.paths}
    assert scores["udp"] > scores["turn"]
