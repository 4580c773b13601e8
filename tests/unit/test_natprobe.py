"""NAT behaviour discovery in memory: the sans-IO probe against the STUN server model behind
virtual NATs, in virtual time."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto import stun
from node.proto.natprobe.probe import (
    MAPPING_SOCKET,
    NatProbe,
    ProbeError,
    ProbeServer,
    ProbeTiming,
    filter_socket,
)
from node.proto.natprobe.types import (
    Behaviour,
    Drop,
    NatType,
    PortAllocation,
    ServerOutcome,
)
from tests.fakes.stun_server import Datagram, StunServerModel
from tests.fakes.vnat import Allocation, Filtering, Mapping, VirtualNat
from tests.fakes.vnet import VirtualNetwork
from tests.unit.probe_harness import host_sockets, run_probe

IP = ipaddress.IPv4Address
P = (IP("203.0.113.10"), 3478)
A = (IP("203.0.113.11"), 3479)
PLAIN_1 = (IP("192.0.2.20"), 3478)
PLAIN_2 = (IP("198.51.100.30"), 3478)
WAN = IP("203.0.113.21")
HOST = IP("198.18.1.2")
PUBLIC_HOST = IP("203.0.113.101")
SERVER = ProbeServer("stun.test:3478", P)
EIM, ADM, APDM = (Mapping.ENDPOINT_INDEPENDENT, Mapping.ADDRESS_DEPENDENT, Mapping.ADDRESS_AND_PORT_DEPENDENT)
EIF, ADF, APDF = (
    Filtering.ENDPOINT_INDEPENDENT,
    Filtering.ADDRESS_DEPENDENT,
    Filtering.ADDRESS_AND_PORT_DEPENDENT,
)


def _net(nat: VirtualNat | None, *models: StunServerModel, latency: float = 0.005) -> VirtualNetwork:
    net = VirtualNetwork(latency=latency)
    for model in models:
        net.add_server(model)
    if nat is not None:
        net.add_nat(nat, "198.18.1.0/24")
    return net


def _discover(nat: VirtualNat | None, **kwargs: object) -> tuple[object, ...]:
    model = StunServerModel(P, A)
    net = _net(nat, model, latency=float(kwargs.pop("latency", 0.005)))  # type: ignore[arg-type]
    host = HOST if nat is not None else PUBLIC_HOST
    report, _ = run_probe(net, host, [SERVER], models=[model], **kwargs)  # type: ignore[arg-type]
    return (
        report.nat_type,
        report.mapping,
        report.filtering,
        report.port_allocation,
        report.port_delta,
        report.consistent,
    )


B = Behaviour
CASES = {
    "open": (None, (NatType.OPEN, B.ENDPOINT_INDEPENDENT, B.ENDPOINT_INDEPENDENT, PortAllocation.PRESERVING)),
    "full-cone": (
        VirtualNat(WAN, EIM, EIF),
        (NatType.FULL_CONE, B.ENDPOINT_INDEPENDENT, B.ENDPOINT_INDEPENDENT, PortAllocation.PRESERVING),
    ),
    "restricted-cone": (
        VirtualNat(WAN, EIM, ADF),
        (NatType.RESTRICTED_CONE, B.ENDPOINT_INDEPENDENT, B.ADDRESS_DEPENDENT, PortAllocation.PRESERVING),
    ),
    "port-restricted": (
        VirtualNat(WAN, EIM, APDF),
        (
            NatType.PORT_RESTRICTED,
            B.ENDPOINT_INDEPENDENT,
            B.ADDRESS_AND_PORT_DEPENDENT,
            PortAllocation.PRESERVING,
        ),
    ),
    "address-dependent-mapping": (
        VirtualNat(WAN, ADM, APDF, Allocation.RANDOM, seed=7),
        (NatType.SYMMETRIC, B.ADDRESS_DEPENDENT, B.ADDRESS_AND_PORT_DEPENDENT, PortAllocation.RANDOM),
    ),
    "symmetric-random": (
        VirtualNat(WAN, APDM, APDF, Allocation.RANDOM, seed=1),
        (
            NatType.SYMMETRIC,
            B.ADDRESS_AND_PORT_DEPENDENT,
            B.ADDRESS_AND_PORT_DEPENDENT,
            PortAllocation.RANDOM,
        ),
    ),
    "symmetric-sequential": (
        VirtualNat(WAN, APDM, APDF, Allocation.SEQUENTIAL, delta=1),
        (
            NatType.SYMMETRIC,
            B.ADDRESS_AND_PORT_DEPENDENT,
            B.ADDRESS_AND_PORT_DEPENDENT,
            PortAllocation.SEQUENTIAL,
        ),
    ),
    "symmetric-full-cone-filtering": (
        VirtualNat(WAN, APDM, EIF, Allocation.SEQUENTIAL, delta=4),
        (NatType.SYMMETRIC, B.ADDRESS_AND_PORT_DEPENDENT, B.ENDPOINT_INDEPENDENT, PortAllocation.SEQUENTIAL),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_class(name: str) -> None:
    nat, expected = CASES[name]
    got = _discover(nat)
    assert got[:4] == expected
    assert got[5] is True  # consistent
    if expected[3] is PortAllocation.SEQUENTIAL:
        assert nat is not None and got[4] == nat.delta
    else:
        assert got[4] is None


def test_json_has_exactly_the_documented_keys() -> None:
    model = StunServerModel(P, A)
    net = _net(VirtualNat(WAN, APDM, APDF, Allocation.SEQUENTIAL), model)
    report, _ = run_probe(net, HOST, [SERVER], models=[model])
    doc = report.to_json()
    assert list(doc) == [
        "nat_type", "mapping", "filtering", "port_allocation", "port_delta",
        "mapped_address", "consistent", "servers", "elapsed_ms",
    ]  # fmt: skip
    assert doc["nat_type"] == "symmetric" and doc["port_allocation"] == "sequential"
    assert doc["port_delta"] == 1 and doc["mapped_address"] == f"{WAN}:40000"
    assert isinstance(doc["elapsed_ms"], int)
    [server] = doc["servers"]
    assert list(server) == ["server", "outcome", "rfc5780", "rtt_ms"]
    assert server["server"] == "stun.test:3478" and server["outcome"] == "ok" and server["rfc5780"] is True


def test_negative_waits_follow_the_round_trip_not_stun_schedule() -> None:
    # On a LAN the whole classification takes the floor plus a few round trips...
    model = StunServerModel(P, A)
    net = _net(VirtualNat(WAN, EIM, APDF), model)
    report, _ = run_probe(net, HOST, [SERVER], models=[model])
    assert report.nat_type is NatType.PORT_RESTRICTED
    assert report.elapsed < 0.25 + 0.1
    # ...and on a slow link (200 ms one way, RTT above the floor) a full cone's answers to
    # CHANGE-REQUEST still count: the wait grew with the measured round trip.
    assert _discover(VirtualNat(WAN, EIM, EIF), latency=0.2)[0] is NatType.FULL_CONE
    assert _discover(VirtualNat(WAN, EIM, ADF), latency=0.2)[0] is NatType.RESTRICTED_CONE


def test_lost_and_duplicated_packets() -> None:
    model = StunServerModel(P, A)
    net = _net(VirtualNat(WAN, EIM, ADF), model)
    lost: set[tuple[object, ...]] = set()

    def drop_first_of_each_flow(d: Datagram) -> bool:
        key = (d.src, d.dst)
        if key in lost:
            return False
        lost.add(key)
        return True

    net.drop = drop_first_of_each_flow
    report, _ = run_probe(net, HOST, [SERVER], models=[model])
    assert (report.nat_type, report.filtering) == (NatType.RESTRICTED_CONE, Behaviour.ADDRESS_DEPENDENT)

    net = _net(VirtualNat(WAN, APDM, APDF, Allocation.SEQUENTIAL, delta=2), model)
    net.duplicate = lambda _d: True
    report, probe = run_probe(net, HOST, [SERVER], models=[model])
    assert report.nat_type is NatType.SYMMETRIC
    assert (report.port_allocation, report.port_delta) == (PortAllocation.SEQUENTIAL, 2)
    assert probe.drops[Drop.UNMATCHED] > 0  # the duplicate answers, counted and ignored


def test_udp_blocked_when_only_tcp_answers() -> None:
    model = StunServerModel(P, A)
    nat = VirtualNat(WAN, udp_blocked=True)
    report, _ = run_probe(_net(nat, model), HOST, [SERVER], models=[model])
    assert report.nat_type is NatType.UDP_BLOCKED and report.answered
    assert report.servers[0].outcome is ServerOutcome.TCP_ONLY and report.mapped_address is None
    assert report.elapsed < 1.0
    # Nothing over TCP either: no classification, and the probe still ends by itself.
    report, _ = run_probe(_net(nat, model), HOST, [SERVER], models=[model], tcp="refuse")
    assert report.nat_type is NatType.UNKNOWN and not report.answered
    assert report.servers[0].outcome is ServerOutcome.NO_ANSWER


def test_whole_discovery_is_bounded_by_the_deadline() -> None:
    timing = ProbeTiming(deadline=1.5, binding_timeout=30.0)
    report, _ = run_probe(_net(None), PUBLIC_HOST, [SERVER], timing=timing, tcp="silent")
    assert report.elapsed == pytest.approx(1.5)
    assert not report.answered


def test_plain_servers_still_show_mapping_that_varies_by_destination() -> None:
    servers = [ProbeServer("one", PLAIN_1), ProbeServer("two", PLAIN_2)]
    models = [StunServerModel(PLAIN_1), StunServerModel(PLAIN_2)]
    for nat, expected, mapping in (
        (VirtualNat(WAN, APDM, APDF, Allocation.RANDOM), NatType.SYMMETRIC, None),
        (VirtualNat(WAN, EIM, APDF), NatType.UNKNOWN, Behaviour.ENDPOINT_INDEPENDENT),
    ):
        report, _ = run_probe(_net(nat, *models), HOST, servers, models=models)
        assert (report.nat_type, report.mapping, report.filtering) == (expected, mapping, None)
        assert all(s.outcome is ServerOutcome.OK and not s.rfc5780 for s in report.servers)
    # Two plain ports on one address tell address-and-port-dependent mapping apart.
    same_ip = [StunServerModel(PLAIN_1), StunServerModel((PLAIN_1[0], 3479))]
    report, _ = run_probe(
        _net(VirtualNat(WAN, APDM, APDF, Allocation.RANDOM), *same_ip),
        HOST,
        [ProbeServer("a", PLAIN_1), ProbeServer("b", (PLAIN_1[0], 3479))],
        models=same_ip,
    )
    assert report.mapping is Behaviour.ADDRESS_AND_PORT_DEPENDENT


def test_rfc5780_and_plain_servers_agree_and_are_probed_concurrently() -> None:
    models = [StunServerModel(P, A), StunServerModel(PLAIN_1)]
    servers = [SERVER, ProbeServer("plain", PLAIN_1)]
    net = _net(VirtualNat(WAN, EIM, ADF), *models)
    report, _ = run_probe(net, HOST, servers, models=models)
    assert report.nat_type is NatType.RESTRICTED_CONE and report.consistent
    assert [s.outcome for s in report.servers] == [ServerOutcome.OK, ServerOutcome.OK]
    # both first Bindings left before any answer came back
    first_two = [d.dst for d in net.sent[:2]]
    assert first_two == [P, PLAIN_1]


def test_skipped_servers_are_reported_and_never_contacted() -> None:
    models = [StunServerModel(P, A)]
    servers = [ProbeServer("dead", PLAIN_1, allowed=False), ProbeServer("nowhere", None), SERVER]
    net = _net(VirtualNat(WAN, EIM, APDF), *models)
    report, _ = run_probe(net, HOST, servers, models=models)
    assert [s.outcome for s in report.servers] == [
        ServerOutcome.BREAKER_OPEN,
        ServerOutcome.UNRESOLVED,
        ServerOutcome.OK,
    ]
    assert all(d.dst != PLAIN_1 for d in net.sent)
    assert report.nat_type is NatType.PORT_RESTRICTED


def test_server_ignoring_change_request_gives_no_false_full_cone() -> None:
    for nat in (VirtualNat(WAN, EIM, APDF), VirtualNat(WAN, EIM, EIF)):
        model = StunServerModel(P, A, ignore_change_request=True)
        report, probe = run_probe(_net(nat, model), HOST, [SERVER], models=[model])
        assert report.nat_type is NatType.UNKNOWN and report.filtering is None
        assert report.mapping is Behaviour.ENDPOINT_INDEPENDENT
        assert report.servers[0].outcome is ServerOutcome.IGNORES_CHANGE_REQUEST
        assert probe.drops[Drop.WRONG_ORIGIN] >= 1


def test_server_that_cannot_change_address_answers_420_and_filtering_stays_unknown() -> None:
    # OTHER-ADDRESS offered but CHANGE-REQUEST rejected: like our own node's responder.
    model = StunServerModel(P, A, reject_change_request=True)
    report, _ = run_probe(_net(VirtualNat(WAN, EIM, EIF), model), HOST, [SERVER], models=[model])
    assert report.filtering is None and report.nat_type is NatType.UNKNOWN
    assert report.mapping is Behaviour.ENDPOINT_INDEPENDENT


def test_lying_response_origin_is_not_trusted() -> None:
    model = StunServerModel(P, A, lie_origin=True)
    report, probe = run_probe(_net(VirtualNat(WAN, EIM, EIF), model), HOST, [SERVER], models=[model])
    assert probe.drops[Drop.WRONG_ORIGIN] >= 1
    assert report.servers[0].outcome is ServerOutcome.TCP_ONLY  # nothing over UDP was believed
    assert report.nat_type is NatType.UDP_BLOCKED or report.nat_type is NatType.UNKNOWN


def test_bad_input_is_ignored_and_counted() -> None:
    model = StunServerModel(P, A)
    local = host_sockets(HOST, 1)
    sent_tids: list[bytes] = []

    def inject(probe: NatProbe, now: float) -> None:
        if sent_tids:
            return
        # forge answers before the real ones arrive: every kind of bad input once
        for out in probe.datagrams_to_send(now):
            tid = out.data[8:20]
            sent_tids.append(tid)
            good = stun.encode(
                stun.Message(
                    stun.Method.BINDING,
                    stun.MessageClass.SUCCESS,
                    tid,
                    (stun.XorMappedAddress(IP("192.0.2.99"), 1),),
                )
            )
            wrong_tid = stun.encode(
                stun.Message(
                    stun.Method.BINDING,
                    stun.MessageClass.SUCCESS,
                    bytes(12),
                    (stun.XorMappedAddress(IP("192.0.2.99"), 1),),
                )
            )
            bad_fingerprint = good[:-1] + bytes([good[-1] ^ 1])
            probe.receive_datagram(MAPPING_SOCKET, wrong_tid, P, now)
            probe.receive_datagram(MAPPING_SOCKET, good, (IP("192.0.2.66"), 3478), now)  # wrong origin
            probe.receive_datagram(MAPPING_SOCKET, good[:-8], P, now)  # truncated
            probe.receive_datagram(MAPPING_SOCKET, bad_fingerprint, P, now)
            probe.receive_datagram(filter_socket(0), good, P, now)  # right id, wrong socket
            probe.receive_datagram(MAPPING_SOCKET, b"\xff" * 40, P, now)
            # the requests really leave: hand them to the network
            net.send(local[out.socket], out.destination, out.data)

    net = _net(VirtualNat(WAN, EIM, APDF), model)
    report, probe = run_probe(net, HOST, [SERVER], models=[model], inject=inject)
    assert report.nat_type is NatType.PORT_RESTRICTED
    assert report.mapped_address == (WAN, local[MAPPING_SOCKET][1])
    assert probe.drops[Drop.UNMATCHED] >= 2
    assert probe.drops[Drop.WRONG_ORIGIN] >= 1
    assert probe.drops[Drop.MALFORMED] >= 2
    assert probe.drops[Drop.NOT_STUN] >= 1


def test_hairpinning_when_asked() -> None:
    for hairpin in (True, False):
        model = StunServerModel(P, A)
        # Hairpinned packets pass the NAT's filtering like any other (RFC 4787 §6): full cone.
        net = _net(VirtualNat(WAN, EIM, EIF, hairpin=hairpin), model)
        report, _ = run_probe(net, HOST, [SERVER], models=[model], timing=ProbeTiming(hairpin=True))
        assert report.hairpinning is hairpin
        assert report.nat_type is NatType.FULL_CONE


def test_probe_refuses_a_wrong_socket_count_and_bad_timing() -> None:
    with pytest.raises(ProbeError):
        NatProbe([SERVER], host_sockets(HOST, 2), 0.0)
    with pytest.raises(ProbeError):
        ProbeTiming(silence_floor=2.0, silence_max=1.0)
    with pytest.raises(ProbeError):
        ProbeTiming(deadline=float("nan"))


def test_servers_that_disagree_make_the_report_inconsistent() -> None:
    # The plain server gets the mapping wrong; the RFC 5780 server's four destinations decide.
    models = [StunServerModel(P, A), StunServerModel(PLAIN_1, misreport_port=7)]
    servers = [SERVER, ProbeServer("wrong", PLAIN_1)]
    report, _ = run_probe(_net(VirtualNat(WAN, EIM, APDF), *models), HOST, servers, models=models)
    assert not report.consistent
    assert report.mapping is Behaviour.ENDPOINT_INDEPENDENT
    assert report.nat_type is NatType.PORT_RESTRICTED
    # Two RFC 5780 servers that agree, for contrast.
    second = (IP("192.0.2.40"), 3478), (IP("192.0.2.41"), 3479)
    models = [StunServerModel(P, A), StunServerModel(*second)]
    servers = [SERVER, ProbeServer("second", second[0])]
    report, _ = run_probe(_net(VirtualNat(WAN, EIM, APDF), *models), HOST, servers, models=models)
    assert report.consistent and report.nat_type is NatType.PORT_RESTRICTED
    assert all(s.rfc5780 and s.filtering is Behaviour.ADDRESS_AND_PORT_DEPENDENT for s in report.servers)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=120),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, 200),
    sock=st.integers(0, 2),
    port=st.sampled_from([3478, 3479, 9]),
)
def test_any_datagram_at_any_socket_is_counted_never_raised(
    data: bytes, flips: list[tuple[int, int]], cut: int, sock: int, port: int
) -> None:
    probe = NatProbe([SERVER], host_sockets(HOST, 1), 0.0)
    [first] = probe.datagrams_to_send(0.0)
    tid = first.data[8:20]
    answer = bytearray(
        stun.encode(
            stun.Message(
                stun.Method.BINDING,
                stun.MessageClass.SUCCESS,
                tid,
                (stun.XorMappedAddress(WAN, 5000), stun.OtherAddress(*A), stun.ResponseOrigin(*P)),
            )
        )
    )
    for position, mask in flips:  # a genuine answer, damaged
        if position < len(answer):
            answer[position] ^= mask
    for datagram in (data, bytes(answer[: max(cut, 1)]), bytes(answer)):
        probe.receive_datagram(sock, datagram, (P[0], port), 0.001)
    probe.handle_timer(10.0)  # and the probe still runs to its end
    while not probe.finished:
        probe.handle_timer(probe.get_timer() or 10.0)
    event = probe.next_event()
    assert event is not None
    used = 1 if event.report.servers[0].mapped is not None else 0
    assert sum(probe.drops.values()) + used >= 2


def _binding(cls: stun.MessageClass, tid: bytes, *attrs: stun.Attribute) -> bytes:
    return stun.encode(stun.Message(stun.Method.BINDING, cls, tid, attrs))


def test_requests_indications_and_answers_without_an_address_are_counted() -> None:
    probe = NatProbe([SERVER], host_sockets(HOST, 1), 0.0)
    [out] = probe.datagrams_to_send(0.0)
    tid = out.data[8:20]
    probe.receive_datagram(MAPPING_SOCKET, _binding(stun.MessageClass.REQUEST, tid), P, 0.01)
    probe.receive_datagram(MAPPING_SOCKET, _binding(stun.MessageClass.INDICATION, tid), P, 0.01)
    assert probe.drops[Drop.NOT_RESPONSE] == 2
    error = _binding(stun.MessageClass.ERROR, tid, stun.ErrorCodeAttr(400, "bad"))
    probe.receive_datagram(MAPPING_SOCKET, error, (IP("192.0.2.66"), 3478), 0.01)
    assert probe.drops[Drop.WRONG_ORIGIN] == 1
    probe.receive_datagram(MAPPING_SOCKET, _binding(stun.MessageClass.SUCCESS, tid), P, 0.01)
    assert probe.drops[Drop.MALFORMED] == 1
    assert not probe.finished  # none of them ended the Binding


@pytest.mark.parametrize("answer", ["wrong-id", "error", "garbage"])
def test_a_useless_tcp_answer_settles_the_tcp_check_as_failed(answer: str) -> None:
    timing = ProbeTiming()
    probe = NatProbe([SERVER], host_sockets(HOST, 1), 0.0, timing)
    probe.datagrams_to_send(0.0)
    probe.handle_timer(timing.tcp_after)  # UDP silent so far: STUN over TCP is tried
    [check] = probe.tcp_checks_to_start()
    tid = check.request[8:20]
    data = {
        "wrong-id": _binding(stun.MessageClass.SUCCESS, bytes(12), stun.XorMappedAddress(WAN, 1)),
        "error": _binding(stun.MessageClass.ERROR, tid, stun.ErrorCodeAttr(400, "bad")),
        "garbage": b"\xff" * 20,
    }[answer]
    probe.receive_tcp(check.server_index, data, timing.tcp_after + 0.01)
    assert probe.drops[Drop.MALFORMED if answer == "garbage" else Drop.UNMATCHED] == 1
    # Settled: a right answer arriving later is not taken, and UDP silence ends the probe with
    # no answer at all (a failed TCP check never makes the result udp-blocked).
    good = _binding(stun.MessageClass.SUCCESS, tid, stun.XorMappedAddress(WAN, 1))
    probe.receive_tcp(check.server_index, good, timing.tcp_after + 0.02)
    now = timing.tcp_after
    while not probe.finished:
        timer = probe.get_timer()
        assert timer is not None
        now = max(now, timer)
        probe.handle_timer(now)
        probe.datagrams_to_send(now)
    event = probe.next_event()
    assert event is not None
    assert event.report.servers[0].outcome is ServerOutcome.NO_ANSWER
    assert event.report.nat_type is NatType.UNKNOWN
