"""The node as a real process on a host with a public address serves its peers as a STUN server:
a Binding from behind each NAT is answered with that NAT's WAN mapping."""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from node.proto import stun

pytestmark = pytest.mark.lab

NODE_PORT = 47474


@pytest.fixture(scope="module")
def node_on_open_host(nat_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`bitcraps-node run` on O1 with its default port; yields O1's public address."""
    tmp = tmp_path_factory.mktemp("node-o1")
    address = str(nat_lab.host("O1").address)
    config = tmp / "node.toml"
    config.write_text(f'[node]\nlisten_address = "{address}"\nudp_port = {NODE_PORT}\n')
    stderr_path = tmp / "stderr"
    with stderr_path.open("w") as stderr:
        proc = nat_lab.popen(
            "O1",
            [sys.executable, "-m", "node.cli", "run", "--config", str(config),
             "--state-dir", str(tmp / "state"), "--runtime-dir", str(tmp / "run")],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert f"listen=udp://{address}:{NODE_PORT}" in first, Path(stderr_path).read_text()
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, stderr_path.read_text()
        if proc.stdout is not None:
            proc.stdout.close()


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
    sock = nat_lab.socket("A1", bind=(str(host.address), 0), timeout=3)
    try:
        request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())
        sock.sendto(stun.encode(request), (node_on_open_host, NODE_PORT))
        data, origin = sock.recvfrom(2048)
    finally:
        sock.close()
    assert origin == (node_on_open_host, NODE_PORT)
    response = stun.decode(data)
    assert response.transaction_id == request.transaction_id
    mapped = response.find(stun.XorMappedAddress)
    assert mapped is not None
    assert mapped.ip == ipaddress.ip_address(str(nat_lab.topology.router("A").wan))
    assert mapped.ip != host.address  # translated: the node saw the NAT, not the host
