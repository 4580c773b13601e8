"""The lab's faults without a netlink hint (netlink.lab.faults, netlink.lab.turn_pair): UDP
silently dropped between two hosts (no ICMP, TCP untouched), a router that lets its host reach
nothing but two TURN servers (killing one leaves the other), a NAT that reboots (conntrack flushed,
the host's mapping moves); and the multi-homed host that sends over its other uplink once a cable
is pulled."""

from __future__ import annotations

import socket

import pytest

from netlink.lab import faults
from netlink.lab.builder import Lab
from netlink.lab.coturn import STUN_PORT
from netlink.lab.failover import add_multihomed_host, ignore_routes_with_linkdown, set_carrier, wait_operstate
from netlink.lab.nat import NatBehaviour
from netlink.lab.turn_pair import SECOND_PRIMARY, start_second_coturn, stop_second_coturn
from node.proto import stun
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

PORT = 7100
SILENCE_S = 0.5  # how long a dropped datagram is waited for (a lost one never comes late)


def _echo(lab: Lab, host: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    sock = lab.socket(host, kind, bind=(str(lab.host(host).address), PORT), timeout=5)
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


def _udp_reaches(lab: Lab, source: str, server: socket.socket, destination: str) -> bool:
    client = lab.socket(source, timeout=SILENCE_S)
    try:
        client.sendto(b"ping", (destination, PORT))
        server.settimeout(SILENCE_S)
        try:
            data, _ = server.recvfrom(64)
        except TimeoutError:
            return False
        return data == b"ping"
    finally:
        client.close()


def _binding(sock: socket.socket, server: tuple[str, int]) -> tuple[str, int]:
    """A STUN Binding from ``sock``; the XOR-MAPPED-ADDRESS the server saw."""
    request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())
    sock.sendto(stun.encode(request), server)
    while True:
        data, origin = sock.recvfrom(2048)
        response = stun.decode(data)
        if origin == server and response.transaction_id == request.transaction_id:
            mapped = response.find(stun.XorMappedAddress)
            assert mapped is not None
            return str(mapped.ip), mapped.port


def test_udp_is_dropped_silently_and_tcp_passes(lab_factory: LabFactory) -> None:
    lab = lab_factory((), open_hosts=2, with_coturn=False)
    o1, o2 = lab.host("O1").address, lab.host("O2").address
    server = _echo(lab, "O2")
    assert _udp_reaches(lab, "O1", server, str(o2))
    # A connected socket learns of ICMP port unreachable as ECONNREFUSED: nothing listens on PORT + 1.
    refused = lab.socket("O1", timeout=SILENCE_S)
    refused.connect((str(o2), PORT + 1))
    refused.send(b"x")
    with pytest.raises(ConnectionRefusedError):
        refused.recv(64)

    fault = faults.silent_drop(o1, o2, "udp")
    faults.block(lab, fault)
    assert not _udp_reaches(lab, "O1", server, str(o2))
    refused.send(b"x")
    with pytest.raises(TimeoutError):  # silence: no ICMP came back
        refused.recv(64)
    listener = _echo(lab, "O2", socket.SOCK_STREAM)
    client = lab.socket("O1", socket.SOCK_STREAM, timeout=5)
    client.connect((str(o2), PORT))
    accepted, _ = listener.accept()
    client.sendall(b"tcp")
    assert accepted.recv(64) == b"tcp"
    accepted.close()

    faults.unblock(lab, fault)
    assert _udp_reaches(lab, "O1", server, str(o2))


def test_a_turn_only_router_reaches_both_turn_servers_and_nothing_else(lab_factory: LabFactory) -> None:
    lab = lab_factory((("A", NatBehaviour.PORT_RESTRICTED),), open_hosts=1)
    first = lab.coturn_config
    assert first is not None
    second = start_second_coturn(lab)
    assert second.primary == SECOND_PRIMARY and second.password == first.password
    faults.only_reach(lab, "A", (first.primary, first.secondary, second.primary, second.secondary))

    server = _echo(lab, "O1")
    assert not _udp_reaches(lab, "A1", server, str(lab.host("O1").address))
    sock = lab.socket("A1", bind=("0.0.0.0", 0), timeout=5)
    wan = str(lab.topology.router("A").wan)
    assert _binding(sock, (str(first.primary), STUN_PORT))[0] == wan
    assert _binding(sock, (str(second.primary), STUN_PORT))[0] == wan

    lab.stop_coturn()  # the first dies; the second answers on
    assert _binding(sock, (str(second.primary), STUN_PORT))[0] == wan
    stop_second_coturn(lab)
    sock.settimeout(SILENCE_S)
    with pytest.raises(TimeoutError):
        _binding(sock, (str(second.primary), STUN_PORT))
    start_second_coturn(lab)  # restartable, on the addresses srv already has
    sock.settimeout(5)
    assert _binding(sock, (str(second.primary), STUN_PORT))[0] == wan


def test_a_rebooted_nat_maps_the_same_socket_to_a_new_port(lab_factory: LabFactory) -> None:
    lab = lab_factory((("A", NatBehaviour.PORT_RESTRICTED),))
    turn = lab.coturn_config
    assert turn is not None
    sock = lab.socket("A1", bind=("0.0.0.0", 0), timeout=5)
    own_port = sock.getsockname()[1]
    server = (str(turn.primary), STUN_PORT)
    before = _binding(sock, server)
    assert before[1] == own_port  # masquerade keeps a free source port

    faults.reboot_nat(lab, "A")
    after = _binding(sock, server)
    assert after[0] == before[0]
    low, high = faults.REBOOT_PORTS
    assert low <= after[1] <= high
    assert _binding(sock, server) == after  # a mapping, kept, not a port per packet


def test_an_armed_fault_applies_when_fired(lab_factory: LabFactory) -> None:
    lab = lab_factory((), open_hosts=2, with_coturn=False)
    o1, o2 = lab.host("O1").address, lab.host("O2").address
    server = _echo(lab, "O2")
    fault = faults.silent_drop(o1, o2)
    armed = faults.PendingNft(lab, "pub")
    assert _udp_reaches(lab, "O1", server, str(o2))  # armed is not yet in force
    armed.fire(fault.rules())
    assert not _udp_reaches(lab, "O1", server, str(o2))
    faults.PendingNft(lab, "pub").cancel()  # an armed fault never fired leaves nothing behind


def test_a_multihomed_host_sends_over_its_other_uplink_once_a_cable_is_pulled(
    lab_factory: LabFactory,
) -> None:
    lab = lab_factory((("A", NatBehaviour.OPEN), ("B", NatBehaviour.OPEN)), open_hosts=1, with_coturn=False)
    m1 = add_multihomed_host(lab)
    ignore_routes_with_linkdown(lab, m1.name)
    a, b = m1.uplink("A"), m1.uplink("B")
    server = _echo(lab, "O1")
    client = lab.socket(m1.name, bind=("0.0.0.0", 0), timeout=5)
    client.sendto(b"1", (str(lab.host("O1").address), PORT))
    assert server.recvfrom(64)[1][0] == str(a.address.ip)

    set_carrier(lab, m1.name, False, a)
    wait_operstate(lab, m1.name, a.ifname, "DOWN")  # a veth shows no LOWERLAYERDOWN
    client.sendto(b"2", (str(lab.host("O1").address), PORT))
    assert server.recvfrom(64)[1][0] == str(b.address.ip)
