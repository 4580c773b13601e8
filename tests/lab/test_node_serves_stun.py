"""The node as a real process on a host with a public address serves its peers as a STUN server:
a Binding from behind each NAT is answered with that NAT's WAN mapping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from tests.lab.node_daemon import binding_to_node, node_daemon

pytestmark = pytest.mark.lab

NODE_PORT = 47474


@pytest.fixture(scope="module")
def node_on_open_host(nat_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`bitcraps-node run` on O1 with its default port; yields O1's public address."""
    tmp = tmp_path_factory.mktemp("node-o1")
    address = str(nat_lab.host("O1").address)
    config = f'[node]\nlisten_address = "{address}"\nudp_port = {NODE_PORT}\n'
    with node_daemon(nat_lab, "O1", config, tmp) as (first, _):
        assert f"listen=udp://{address}:{NODE_PORT}" in first
        yield address


@pytest.mark.parametrize(
    "behaviour",
    [NatBehaviour.PORT_RESTRICTED, NatBehaviour.SYMMETRIC, NatBehaviour.FULL_CONE],
    ids=lambda b: b.value,
)
def test_binding_from_behind_a_nat_gets_the_wan_mapping(
    nat_lab: Lab, node_on_open_host: str, behaviour: NatBehaviour
) -> None:
    nat_lab.set_nat("A", behaviour)
    host = nat_lab.host("A1")
    mapped_ip, _ = binding_to_node(nat_lab, "A1", str(host.address), (node_on_open_host, NODE_PORT))
    assert mapped_ip == str(nat_lab.topology.router("A").wan)
    assert mapped_ip != str(host.address)  # translated: the node saw the NAT, not the host
