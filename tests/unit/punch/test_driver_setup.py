"""What the punch driver decides without sockets: the port's demultiplexer takes punch checks,
a run refuses extra sockets outside a birthday target, and a result names the nominated path."""

from __future__ import annotations

import ipaddress
import os

import pytest

from node.proto.punch import wire
from node.proto.punch.agent import PunchSetup
from node.proto.punch.errors import PunchMisuse, PunchUsageError
from node.proto.punch.events import Method, Nominated, PunchStats
from node.proto.punch.plan import Plan, Role, Technique
from node.proto.vocabulary import IpEndpoint
from node.transports.punch.driver import MAX_SOCKETS, PunchResult, PunchRun
from node.transports.udp.demux import Kind, classify

IP = ipaddress.IPv4Address("127.0.0.1")
TOKEN = bytes(16)


class _NoPort:
    """A run's constructor touches no port; entering it would."""

    local = None


def _setup(plan: Plan, sockets: int) -> PunchSetup:
    return PunchSetup(wire.Side.B, TOKEN, b"me", plan, (), sockets, 0.0)


@pytest.mark.parametrize("kind", list(wire.Kind))
def test_every_check_kind_is_a_punch_datagram(kind: wire.Kind) -> None:
    check = wire.Check(kind, wire.Side.A, os.urandom(16), 7, b"x" * 40)
    assert classify(wire.encode(check)) is Kind.PUNCH


@pytest.mark.parametrize("data", [wire.MAGIC, wire.MAGIC + os.urandom(2000)])
def test_truncated_or_oversized_checks_are_still_the_punchs(data: bytes) -> None:
    # The magic alone routes a datagram; its decoder (or the unknown-token count) judges the rest.
    assert classify(data) is Kind.PUNCH


@pytest.mark.parametrize(
    ("plan", "sockets"),
    [
        (Plan(Technique.PUNCH, Role.PEER), 2),
        (Plan(Technique.BIRTHDAY, Role.PROBER), 256),
        (Plan(Technique.BIRTHDAY, Role.TARGET), MAX_SOCKETS + 1),
    ],
)
def test_extra_sockets_only_for_a_birthday_target(plan: Plan, sockets: int) -> None:
    with pytest.raises(PunchUsageError) as caught:
        PunchRun(_NoPort(), _setup(plan, sockets), "peer")  # type: ignore[arg-type]
    assert caught.value.reason is PunchMisuse.BAD_SOCKET


def test_a_birthday_target_may_open_its_256() -> None:
    PunchRun(_NoPort(), _setup(Plan(Technique.BIRTHDAY, Role.TARGET), MAX_SOCKETS), "peer")  # type: ignore[arg-type]


def test_a_result_names_its_remote_as_an_ip_endpoint() -> None:
    stats = PunchStats(1, 1, 0, 0, ())
    nominated = Nominated(3, (IP, 4242), Method.BIRTHDAY, 1.0, 5, b"peer")
    assert PunchResult(nominated, None, stats, True).remote == IpEndpoint(IP, 4242)
    assert PunchResult(None, None, stats, False).remote is None
