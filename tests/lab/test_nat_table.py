"""The lab verifies itself: an RFC 4787-style probe from behind every NAT behaviour.

This table is the ground truth later NAT tests lean on: the mapped endpoint is what the server
side saw, and each unsolicited packet either reached the host through the mapping or did not.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from netlink.lab import probe
from netlink.lab.builder import Lab
from netlink.lab.nat import Mapping, NatBehaviour

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("behaviour", list(NatBehaviour), ids=lambda b: b.value)
def test_probe_shows_promised_mapping_and_filtering(
    nat_lab: Lab, echo_servers: probe.EchoServers, behaviour: NatBehaviour
) -> None:
    nat_lab.set_nat("A", behaviour)
    result = probe.probe(nat_lab, "A1", echo_servers)
    # The promise table lives in netlink.lab.nat so later NAT tests can lean on it; here the
    # real kernel is held to it.
    promise = behaviour.promise

    assert result.mapping is promise.mapping, result
    assert result.udp is promise.udp
    assert result.tcp is promise.tcp
    assert result.from_same_endpoint is promise.from_same_endpoint, result
    assert result.from_other_port is promise.from_other_port, result
    assert result.from_other_address is promise.from_other_address, result
    assert result.from_stranger is promise.from_stranger, result

    router = nat_lab.topology.router("A")
    if promise.udp:
        assert len(result.mapped) == 4
        expected_ip = str(nat_lab.host("A1").address) if behaviour is NatBehaviour.OPEN else str(router.wan)
        assert {ip for ip, _ in result.mapped} == {expected_ip}
    if behaviour is NatBehaviour.SYMMETRIC:
        assert len({port for _, port in result.mapped}) == 4  # a new port per destination
    if behaviour is NatBehaviour.SYMMETRIC_SEQUENTIAL:
        strides = result.strides
        assert len(set(strides)) == 1 and strides[0] != 0, strides  # constant stride
    if behaviour in (NatBehaviour.OPEN, NatBehaviour.FULL_CONE, NatBehaviour.RESTRICTED_CONE):
        # These keep the host's port (the cone recipes forward WAN ports to the host 1:1).
        assert result.mapped[0][1] == result.mapping_local[1]
        assert result.filter_mapped is not None
        assert result.filter_mapped[1] == result.local[1]


def test_open_host_has_public_address_and_no_filtering(nat_lab: Lab, echo_servers: probe.EchoServers) -> None:
    result = probe.probe(nat_lab, "O1", echo_servers)
    address = str(nat_lab.host("O1").address)
    assert result.mapping is Mapping.ENDPOINT_INDEPENDENT
    assert result.mapped[0] == (address, result.mapping_local[1])
    assert result.from_other_port and result.from_other_address and result.from_stranger
    assert result.tcp


def test_router_drops_early_punch_and_keeps_mapping(nat_lab: Lab, echo_servers: probe.EchoServers) -> None:
    """The design's pitfall: an unsolicited packet to the mapping must not create conntrack
    state at the router, or the host's later packet to that sender gets a new port."""
    nat_lab.set_nat("A", NatBehaviour.PORT_RESTRICTED)
    echo_servers.drain()
    host = nat_lab.socket("A1", bind=(str(nat_lab.host("A1").address), 0), timeout=probe.ANSWER_S)
    p1 = (echo_servers.primary, probe.PORT_1)
    stranger = (echo_servers.stranger_address, probe.PORT_1)
    host.sendto(b"hello", p1)
    _, mapped = echo_servers.udp[p1].recvfrom(64)
    echo_servers.stranger.sendto(b"early punch", mapped)  # arrives before the host punches
    host.settimeout(probe.SILENCE_S)
    with pytest.raises(TimeoutError):
        host.recv(64)
    host.sendto(b"punch", stranger)
    _, seen = echo_servers.stranger.recvfrom(64)
    assert seen == mapped  # endpoint-independent: not remapped by the early packet
    echo_servers.stranger.sendto(b"through", mapped)
    host.settimeout(probe.ANSWER_S)
    assert host.recv(64) == b"through"
    host.close()


def test_router_drops_new_wan_connections_to_itself(nat_lab: Lab) -> None:
    nat_lab.set_nat("A", NatBehaviour.OPEN)  # even the open router protects itself
    wan = str(nat_lab.topology.router("A").wan)
    sock = nat_lab.socket("srv", socket.SOCK_STREAM, timeout=probe.SILENCE_S)
    with pytest.raises(TimeoutError):  # dropped, not refused
        sock.connect((wan, 22))
    sock.close()
    listing = nat_lab.run("A", ["conntrack", "-L"])
    assert wan not in listing.stdout.decode()


def test_hosts_behind_one_router_share_its_wan_address(
    lab_factory: Callable[..., Lab],
) -> None:
    lab = lab_factory((("A", NatBehaviour.PORT_RESTRICTED),), hosts_per_router=2, with_coturn=False)
    server = lab.socket("srv", bind=("203.0.113.10", probe.PORT_1), timeout=probe.ANSWER_S)
    seen = []
    for name in ("A1", "A2"):
        host = lab.socket(name, bind=(str(lab.host(name).address), 40404))  # same local port
        host.sendto(name.encode(), ("203.0.113.10", probe.PORT_1))
        data, source = server.recvfrom(64)
        assert data == name.encode()
        seen.append(source)
    wan = str(lab.topology.router("A").wan)
    assert [ip for ip, _ in seen] == [wan, wan]
    assert seen[0][1] != seen[1][1]  # the clash is resolved with another port


@pytest.mark.parametrize(
    "behaviour", [NatBehaviour.FULL_CONE, NatBehaviour.RESTRICTED_CONE], ids=lambda b: b.value
)
def test_cone_routers_forward_per_mapping_to_several_hosts(
    lab_factory: Callable[..., Lab], behaviour: NatBehaviour
) -> None:
    lab = lab_factory((("A", behaviour),), hosts_per_router=2, with_coturn=False)
    server = lab.socket("srv", bind=("203.0.113.10", probe.PORT_1), timeout=probe.ANSWER_S)
    stranger = lab.socket("srv", bind=("203.0.113.12", probe.PORT_1))
    hosts, mapped = [], []
    for name in ("A1", "A2"):
        host = lab.socket(name, bind=(str(lab.host(name).address), 40404))
        host.sendto(b"map", ("203.0.113.10", probe.PORT_1))
        mapped.append(server.recvfrom(64)[1])
        hosts.append(host)
    assert mapped[0] != mapped[1]

    def heard(expected: list[bytes | None]) -> list[bytes | None]:
        """What each host received: a packet that should arrive is waited for ANSWER_S, one
        that should not for SILENCE_S."""
        out: list[bytes | None] = []
        for host, expect in zip(hosts, expected, strict=True):
            host.settimeout(probe.SILENCE_S if expect is None else probe.ANSWER_S)
            try:
                out.append(host.recv(64))
            except TimeoutError:
                out.append(None)
        return out

    server.sendto(b"to-1", mapped[0])
    server.sendto(b"to-2", mapped[1])
    expected: list[bytes | None] = [b"to-1", b"to-2"]
    assert heard(expected) == expected  # each mapping leads to its own host
    stranger.sendto(b"s-1", mapped[0])
    stranger.sendto(b"s-2", mapped[1])
    expected = [b"s-1", b"s-2"] if behaviour is NatBehaviour.FULL_CONE else [None, None]
    assert heard(expected) == expected
    wan = str(lab.topology.router("A").wan)
    unmapped = 1 + max(port for _, port in mapped)
    server.sendto(b"nobody", (wan, unmapped))
    assert heard([None, None]) == [None, None]  # a port no host mapped is not forwarded
