"""The daemon behind each lab NAT, with coturn as its STUN server, shows in ``status`` the mapping of
its own UDP port: the router's conntrack entry for the node's port towards the server has that
reply port (whatever the NAT chose: preserved, or random under the symmetric recipe), and where
the NAT's filtering lets the server's side in, a Binding sent from there to the reported address
reaches the node's port and is answered by the node."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from netlink.lab.builder import Lab
from netlink.lab.coturn import STUN_PORT
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import STRANGER, STUN_PRIMARY
from tests.lab.node_daemon import NODE, binding_to_node, node_daemon

pytestmark = pytest.mark.lab

NODE_PORT = 47474
# Which address on the server side may send to an endpoint-independent mapping the node opened
# towards STUN_PRIMARY:STUN_PORT (RFC 4787 §5): anyone, or any port of that address. A
# port-restricted NAT admits only coturn's own port, which coturn holds: conntrack says it there.
REACH_FROM = {
    NatBehaviour.OPEN: STRANGER,
    NatBehaviour.FULL_CONE: STRANGER,
    NatBehaviour.RESTRICTED_CONE: STUN_PRIMARY,
}
BEHAVIOURS = [
    NatBehaviour.OPEN,
    NatBehaviour.FULL_CONE,
    NatBehaviour.RESTRICTED_CONE,
    NatBehaviour.PORT_RESTRICTED,
    NatBehaviour.SYMMETRIC,
    NatBehaviour.SYMMETRIC_SEQUENTIAL,
]


def _config() -> str:
    """The default port on the unspecified address, coturn as the STUN server."""
    return (
        f'[node]\nlisten_address = "0.0.0.0"\nudp_port = {NODE_PORT}\n'
        f'[tcp_tls]\nport = 0\n[stun]\nservers = ["{STUN_PRIMARY}:{STUN_PORT}"]\n'
    )


def _nat_result(lab: Lab, runtime: Path) -> dict[str, Any]:
    for _ in range(100):
        done = lab.run("A1", [*NODE, "status", "--json", "--runtime-dir", str(runtime)], timeout=30)
        assert done.returncode == 0, done.stderr.decode()
        result: dict[str, Any] | None = json.loads(done.stdout)["nat"]["result"]
        if result is not None:
            return result
        time.sleep(0.2)
    raise AssertionError("the daemon never showed a discovery result")


def _conntrack_reply_port(lab: Lab, host: str, port: int) -> int | None:
    """The router's mapping of ``host:port`` towards the STUN server: the reply direction's
    destination port of that conntrack entry (None: no such entry)."""
    listing = lab.run(
        "A",
        ["conntrack", "-L", "-p", "udp", "--orig-src", host, "--orig-port-src", str(port),
         "--orig-dst", str(STUN_PRIMARY), "--orig-port-dst", str(STUN_PORT)],
    ).stdout.decode()  # fmt: skip
    for line in listing.splitlines():
        dports = re.findall(r"\bdport=(\d+)", line)
        if len(dports) == 2:  # original direction first, then the reply's
            return int(dports[1])
    return None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=lambda b: b.value)
def test_daemon_shows_the_mapping_of_its_own_udp_port(
    nat_lab: Lab, behaviour: NatBehaviour, tmp_path: Path
) -> None:
    nat_lab.set_nat("A", behaviour)  # flushes conntrack: the node's mapping is made afresh
    with node_daemon(nat_lab, "A1", _config(), tmp_path) as (first, runtime):
        assert f"listen=udp://0.0.0.0:{NODE_PORT}" in first
        result = _nat_result(nat_lab, runtime)
        host = str(nat_lab.host("A1").address)
        wan = str(nat_lab.topology.router("A").wan)
        mapping = _conntrack_reply_port(nat_lab, host, NODE_PORT)
        assert mapping is not None, "no conntrack entry for the node's own port towards the server"
        public = host if behaviour is NatBehaviour.OPEN else wan
        assert result["mapped_address"] == f"{public}:{mapping}"
        source = REACH_FROM.get(behaviour)
        if source is not None:
            # The node's own port answers STUN: a Binding through the reported mapping reaches it.
            seen = binding_to_node(nat_lab, "srv", str(source), (public, mapping))
            assert seen[0] == str(source)
