"""NAT behaviour discovery against a classic RFC 3489 server (MAPPED-ADDRESS, CHANGED-ADDRESS,
no XOR, no OTHER-ADDRESS, no TCP), in memory behind every virtual NAT: the verdict must be the
one the RFC 5780 (coturn-like) model gives."""

from __future__ import annotations

import pytest

from node.proto import stun
from node.proto.natprobe.probe import MAPPING_SOCKET, NatProbe
from node.proto.natprobe.types import Drop, NatType, PortAllocation, ServerOutcome
from tests.fakes.classic_stun_server import ClassicStunServerModel
from tests.fakes.stun_server import StunServerModel
from tests.fakes.vnat import VirtualNat
from tests.fakes.vnet import ServerModel, VirtualNetwork
from tests.unit.probe_harness import run_probe
from tests.unit.test_natprobe import CASES, HOST, PUBLIC_HOST, SERVER, WAN, A, P

Verdict = tuple[object, ...]


def _fresh(nat: VirtualNat | None) -> VirtualNat | None:
    """A NAT like ``nat`` with no mappings yet (CASES' own may hold another test's)."""
    if nat is None:
        return None
    return VirtualNat(
        nat.wan, nat.mapping, nat.filtering, nat.allocation, nat.delta, nat.first_port, nat.seed,
        nat.udp_blocked,
    )  # fmt: skip


def _discover(nat: VirtualNat | None, model: ServerModel) -> tuple[Verdict, list[ServerOutcome], bool]:
    net = VirtualNetwork()
    net.add_server(model)
    if nat is not None:
        net.add_nat(nat, "198.18.1.0/24")
    # An RFC 3489 server is UDP only: its TCP check is refused (the RFC 5780 model's is too, so
    # both runs see the same network).
    report, probe = run_probe(net, HOST if nat else PUBLIC_HOST, [SERVER], tcp="refuse")
    verdict = (
        report.nat_type, report.mapping, report.filtering, report.port_allocation, report.port_delta,
        report.consistent, report.mapped_address,
    )  # fmt: skip
    assert not probe.drops, probe.drops  # every answer was used: none malformed or misplaced
    return verdict, [s.outcome for s in report.servers], report.servers[0].rfc5780


@pytest.mark.parametrize("like_stund", [False, True], ids=["pure-rfc3489", "stund-0.97"])
@pytest.mark.parametrize("name", list(CASES))
def test_every_behaviour_classified_as_with_rfc5780(name: str, like_stund: bool) -> None:
    nat, expected = CASES[name]
    classic = ClassicStunServerModel(P, A, like_stund=like_stund)
    got, outcomes, behaviour_tests = _discover(_fresh(nat), classic)
    rfc5780, _, _ = _discover(_fresh(nat), StunServerModel(P, A))
    assert got == rfc5780
    assert got[:4] == expected and got[5] is True
    assert outcomes == [ServerOutcome.OK] and behaviour_tests  # CHANGED-ADDRESS was used
    if expected[3] is PortAllocation.SEQUENTIAL:
        assert nat is not None and got[4] == nat.delta
    # Binding, three mapping tests on the alternates, the filter Binding, two CHANGE-REQUESTs
    # (the negative ones may be resent inside their window).
    assert classic.answered >= 5


def test_mapping_read_from_mapped_address_without_xor() -> None:
    # A pure RFC 3489 server sends no XOR-MAPPED-ADDRESS: the mapping comes from MAPPED-ADDRESS
    # (the port-preserving NAT keeps the mapping socket's port, 50000).
    verdict, _, _ = _discover(VirtualNat(WAN), ClassicStunServerModel(P, A))
    assert verdict[0] is NatType.PORT_RESTRICTED and verdict[-1] == (WAN, 50000)


def test_udp_blocked_reads_unknown_with_a_udp_only_server() -> None:
    # RFC 3489 has no TCP, so silence over UDP cannot be told from a dead server: no verdict
    # rather than a guess (coturn's STUN over TCP is what proves "udp-blocked").
    verdict, outcomes, behaviour_tests = _discover(
        VirtualNat(WAN, udp_blocked=True), ClassicStunServerModel(P, A)
    )
    assert verdict[:3] == (NatType.UNKNOWN, None, None) and verdict[-1] is None
    assert outcomes == [ServerOutcome.NO_ANSWER] and not behaviour_tests


def test_classic_request_without_cookie_is_not_a_response_to_us() -> None:
    # A datagram with an RFC 3489 header (no cookie) cannot answer our requests, which all carry
    # the cookie: the probe counts it as not STUN and goes on.
    classic = ClassicStunServerModel(P, A)
    bogus = stun.encode(
        stun.Message(stun.Method.BINDING, stun.MessageClass.SUCCESS, bytes(16), (stun.MappedAddress(*P),)),
        fingerprint=False,
    )
    net = VirtualNetwork()
    net.add_server(classic)

    def inject(probe: NatProbe, now: float) -> None:
        if now == 0.0:
            probe.receive_datagram(MAPPING_SOCKET, bogus, P, now)

    report, probe = run_probe(net, PUBLIC_HOST, [SERVER], tcp="refuse", inject=inject)
    assert probe.drops[Drop.NOT_STUN] >= 1
    assert report.nat_type is NatType.OPEN
