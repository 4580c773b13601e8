"""The in-memory fakes (tests/fakes/) other tests build on: they must themselves behave as the RFCs say."""

from __future__ import annotations

import ipaddress

from node.proto import stun
from tests.fakes.stun_server import Datagram, Drop, ServerRequest, StunServerModel
from tests.fakes.vnat import Allocation, Filtering, Mapping, VirtualNat
from tests.fakes.vnet import VirtualNetwork

IP = ipaddress.IPv4Address
P = (IP("203.0.113.10"), 3478)
A = (IP("203.0.113.11"), 3479)
CLIENT = (IP("198.51.100.7"), 5000)


def _binding(*attrs: stun.Attribute) -> tuple[bytes, bytes]:
    tid = stun.new_transaction_id()
    return tid, stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, tid, attrs))


def test_binding_answers_from_the_address_asked_with_origin_and_other_address() -> None:
    server = StunServerModel(P, A)
    tid, request = _binding()
    [answer] = server.receive(request, CLIENT, P, 0.0)
    assert (answer.src, answer.dst) == (P, CLIENT)
    message = stun.decode(answer.data)
    assert message.transaction_id == tid
    assert message.find(stun.XorMappedAddress) == stun.XorMappedAddress(*CLIENT)
    assert message.find(stun.ResponseOrigin) == stun.ResponseOrigin(*P)
    assert message.find(stun.OtherAddress) == stun.OtherAddress(*A)


def test_change_request_answers_from_the_changed_address() -> None:
    server = StunServerModel(P, A)
    cases = {(True, True): A, (False, True): (P[0], A[1]), (True, False): (A[0], P[1])}
    for (change_ip, change_port), source in cases.items():
        _, request = _binding(stun.ChangeRequest(change_ip, change_port))
        [answer] = server.receive(request, CLIENT, P, 0.0)
        assert answer.src == source
        assert stun.decode(answer.data).find(stun.ResponseOrigin) == stun.ResponseOrigin(*source)
    # asked at the alternate, "change both" answers from the primary
    _, request = _binding(stun.ChangeRequest(True, True))
    [answer] = server.receive(request, CLIENT, A, 0.0)
    assert answer.src == P


def test_faults_and_plain_servers() -> None:
    _, request = _binding(stun.ChangeRequest(True, True))
    [ignored] = StunServerModel(P, A, ignore_change_request=True).receive(request, CLIENT, P, 0.0)
    assert ignored.src == P
    [plain] = StunServerModel(P).receive(request, CLIENT, P, 0.0)
    assert stun.decode(plain.data).message_class is stun.MessageClass.ERROR
    _, bare = _binding()
    [no_other] = StunServerModel(P, A, omit_other_address=True).receive(bare, CLIENT, P, 0.0)
    assert stun.decode(no_other.data).find(stun.OtherAddress) is None
    [lie] = StunServerModel(P, A, lie_origin=True).receive(bare, CLIENT, P, 0.0)
    assert lie.src == P and stun.decode(lie.data).find(stun.ResponseOrigin) == stun.ResponseOrigin(*A)


def test_bad_input_is_counted_and_the_method_table_extends() -> None:
    server = StunServerModel(P, A)
    _, request = _binding()
    assert server.receive(request[:-3], CLIENT, P, 0.0) == []
    assert server.receive(b"x" * 30, CLIENT, P, 0.0) == []
    assert server.receive(request, CLIENT, (P[0], 9), 0.0) == []
    assert server.drops == {Drop.MALFORMED: 1, Drop.NOT_STUN: 1, Drop.NOT_OURS: 1}
    allocate = stun.encode(
        stun.Message(stun.Method.ALLOCATE, stun.MessageClass.REQUEST, stun.new_transaction_id())
    )
    [bad] = server.receive(allocate, CLIENT, P, 0.0)
    assert stun.decode(bad.data).find(stun.ErrorCodeAttr) == stun.ErrorCodeAttr(400, "Bad Request")

    def allocate_handler(req: ServerRequest) -> list[Datagram]:
        return [server.success(req, [stun.Lifetime(600)])]

    server.methods[(stun.Method.ALLOCATE, stun.MessageClass.REQUEST)] = allocate_handler
    [ok] = server.receive(allocate, CLIENT, P, 0.0)
    assert stun.decode(ok.data).find(stun.Lifetime) == stun.Lifetime(600)


def test_vnat_mapping_filtering_and_allocation() -> None:
    host = (IP("198.18.1.2"), 5000)
    wan = IP("203.0.113.21")
    eim = VirtualNat(wan, Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_DEPENDENT)
    out = eim.outbound(host, P)
    assert out == (wan, 5000) and eim.outbound(host, A) == out
    assert eim.inbound((P[0], 9999), out) == host  # same address, other port: let in
    assert eim.inbound((IP("203.0.113.12"), 1), out) is None
    seq = VirtualNat(wan, Mapping.ADDRESS_AND_PORT_DEPENDENT, allocation=Allocation.SEQUENTIAL, delta=2)
    ports = [seq.outbound(host, dst) for dst in (P, A, (P[0], A[1]))]
    assert [p[1] for p in ports if p] == [40000, 40002, 40004]
    adm = VirtualNat(wan, Mapping.ADDRESS_DEPENDENT, allocation=Allocation.RANDOM, seed=3)
    assert adm.outbound(host, P) == adm.outbound(host, (P[0], A[1])) != adm.outbound(host, A)


def test_vnet_delivers_through_nats_in_virtual_time_with_faults() -> None:
    net = VirtualNetwork(latency=0.01)
    net.add_server(StunServerModel(P, A))
    net.add_nat(VirtualNat(IP("203.0.113.21")), "198.18.1.0/24")
    host = (IP("198.18.1.2"), 5000)
    _, request = _binding()
    net.duplicate = lambda d: d.dst == host or d.dst[0] == IP("203.0.113.21")
    net.send(host, P, request)
    net.run_until(0.015)
    assert net.take() == []
    net.run_until(0.02)
    got = net.take()
    assert len(got) == 2 and all(g[1] == host and g[2].src == P for g in got)
    net.drop = lambda d: True
    net.send(host, P, request)
    net.run_until(1.0)
    assert net.take() == []
