"""NAT behaviour discovery against real Linux NATs and coturn (RFC 5780 on two addresses).

Every lab behaviour is classified ten times in a row from the host behind it, with the
conntrack state of the previous runs left in place (the rule set is switched, and conntrack
flushed, only between behaviours): pystun3 reads a port-restricted NAT as "Full Cone" in that
situation, because it reuses its source port and an old mapping lets the "changed" answers in.
pystun3 itself is run as a cross-check where its RFC 3489 answer is well-defined (a fresh port on
fresh state), and the ``nat`` command is run as a process inside the host's namespace.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netlink.lab.builder import Lab
from netlink.lab.coturn import STUN_PORT
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import STRANGER, STUN_PRIMARY
from node.proto.natprobe.probe import ProbeTiming
from node.proto.natprobe.types import Behaviour, NatReport, NatType, PortAllocation
from node.transports.nat.discovery import NatDiscovery

pytestmark = pytest.mark.lab

SERVER = f"{STUN_PRIMARY}:{STUN_PORT}"
RUNS = 10
NODE = [sys.executable, "-m", "node.cli"]
B = Behaviour


@dataclass(frozen=True, slots=True)
class Expected:
    nat_type: NatType
    mapping: Behaviour | None
    filtering: Behaviour | None
    allocation: PortAllocation | None
    delta: int | None = None
    pystun3: str | None = None  # pystun3's RFC 3489 answer on fresh state


EIM, EIF, ADF, APD = (
    B.ENDPOINT_INDEPENDENT, B.ENDPOINT_INDEPENDENT, B.ADDRESS_DEPENDENT, B.ADDRESS_AND_PORT_DEPENDENT,
)  # fmt: skip
PRESERVING = PortAllocation.PRESERVING
EXPECTED = {
    NatBehaviour.OPEN: Expected(NatType.OPEN, EIM, EIF, PRESERVING, pystun3="Open Internet"),
    NatBehaviour.FULL_CONE: Expected(NatType.FULL_CONE, EIM, EIF, PRESERVING, pystun3="Full Cone"),
    NatBehaviour.RESTRICTED_CONE: Expected(
        NatType.RESTRICTED_CONE, EIM, ADF, PRESERVING, pystun3="Restric NAT"
    ),
    NatBehaviour.PORT_RESTRICTED: Expected(
        NatType.PORT_RESTRICTED, EIM, APD, PRESERVING, pystun3="Restric Port NAT"
    ),
    NatBehaviour.SYMMETRIC: Expected(
        NatType.SYMMETRIC, APD, APD, PortAllocation.RANDOM, pystun3="Symmetric NAT"
    ),
    NatBehaviour.SYMMETRIC_SEQUENTIAL: Expected(
        NatType.SYMMETRIC, APD, APD, PortAllocation.SEQUENTIAL, 1, pystun3="Symmetric NAT"
    ),
    NatBehaviour.UDP_BLOCKED: Expected(NatType.UDP_BLOCKED, None, None, None, pystun3="Blocked"),
}
# pystun3's answers mapped to ours, only where they are well-defined ("Symmetric UDP Firewall"
# and its "Meet an error" are not: neither says what a peer would meet).
PYSTUN3_TO_OURS = {
    "Open Internet": NatType.OPEN,
    "Full Cone": NatType.FULL_CONE,
    "Restric NAT": NatType.RESTRICTED_CONE,
    "Restric Port NAT": NatType.PORT_RESTRICTED,
    "Symmetric NAT": NatType.SYMMETRIC,
    "Blocked": NatType.UDP_BLOCKED,
}


def _discovery(lab: Lab, host: str) -> NatDiscovery:
    def factory(family: int, type_: int) -> socket.socket:
        assert family == socket.AF_INET
        return lab.socket(host, type_)

    return NatDiscovery([SERVER], ProbeTiming(), socket_factory=factory)


def _seen(report: NatReport) -> Expected:
    return Expected(
        report.nat_type, report.mapping, report.filtering, report.port_allocation, report.port_delta
    )


def _ours(expected: Expected) -> Expected:
    return Expected(
        expected.nat_type, expected.mapping, expected.filtering, expected.allocation, expected.delta
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("behaviour", list(NatBehaviour), ids=lambda b: b.value)
async def test_every_behaviour_ten_runs_in_a_row_without_flushing(
    nat_lab: Lab, behaviour: NatBehaviour
) -> None:
    nat_lab.set_nat("A", behaviour)  # switching flushes conntrack; the ten runs below do not
    discovery = _discovery(nat_lab, "A1")
    reports = [await discovery.run() for _ in range(RUNS)]
    seen = [_seen(r) for r in reports]
    assert seen == [_ours(EXPECTED[behaviour])] * RUNS
    assert all(r.consistent for r in reports)
    wan = nat_lab.topology.router("A").wan
    host = nat_lab.host("A1").address
    for report in reports:
        if behaviour is NatBehaviour.UDP_BLOCKED:
            assert report.mapped_address is None
        else:
            assert report.mapped_address is not None
            assert report.mapped_address[0] == (host if behaviour is NatBehaviour.OPEN else wan)


async def test_host_without_nat_is_open(nat_lab: Lab) -> None:
    discovery = _discovery(nat_lab, "O1")
    reports = [await discovery.run() for _ in range(RUNS)]
    assert {r.nat_type for r in reports} == {NatType.OPEN}
    assert all(r.mapped_address and r.mapped_address[0] == nat_lab.host("O1").address for r in reports)


def _cli(lab: Lab, *args: str) -> tuple[int, str, str]:
    done = lab.run("A1", [*NODE, *args], timeout=30)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.mark.timeout(120)
def test_nat_command_in_the_host_namespace(nat_lab: Lab) -> None:
    keys = [
        "nat_type", "mapping", "filtering", "port_allocation", "port_delta",
        "mapped_address", "consistent", "servers", "elapsed_ms",
    ]  # fmt: skip
    for behaviour, nat_type in (
        (NatBehaviour.SYMMETRIC_SEQUENTIAL, "symmetric"),
        (NatBehaviour.RESTRICTED_CONE, "restricted-cone"),
        (NatBehaviour.UDP_BLOCKED, "udp-blocked"),
    ):
        nat_lab.set_nat("A", behaviour)
        code, out, err = _cli(nat_lab, "nat", "--stun", SERVER, "--json", "--config", "/dev/null")
        assert code == 0, err
        doc = json.loads(out)
        assert list(doc) == keys and doc["nat_type"] == nat_type
        if behaviour is NatBehaviour.SYMMETRIC_SEQUENTIAL:
            assert (doc["port_allocation"], doc["port_delta"]) == ("sequential", 1)
        [server] = doc["servers"]
        assert server["server"] == SERVER
        assert server["outcome"] == ("tcp-only" if behaviour is NatBehaviour.UDP_BLOCKED else "ok")
    # nobody listens on the stranger address: no classification, exit 2, one line on stderr
    code, out, err = _cli(
        nat_lab, "nat", "--stun", f"{STRANGER}:{STUN_PORT}", "--json", "--config", "/dev/null"
    )
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "no STUN server answered" in err


def _pystun3(lab: Lab, host: str) -> str:
    import stun as pystun3  # the design card's RFC 3489 client, from the `test` extra

    address = str(lab.host(host).address)
    port = random.randrange(20000, 30000)  # fresh: its default 54320 reused is the failure mode

    def classify() -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.5)  # its own is 2 s per try; the algorithm is the same
        try:
            sock.bind((address, port))
            answer: str = pystun3.get_nat_type(sock, address, port, stun_host=str(STUN_PRIMARY))[0]
            return answer
        finally:
            sock.close()

    return lab.run_in(host, classify)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("behaviour", list(NatBehaviour), ids=lambda b: b.value)
async def test_pystun3_agrees_where_its_answer_is_well_defined(nat_lab: Lab, behaviour: NatBehaviour) -> None:
    nat_lab.set_nat("A", behaviour)
    theirs = _pystun3(nat_lab, "A1")
    ours = await _discovery(nat_lab, "A1").run()
    assert theirs == EXPECTED[behaviour].pystun3  # the cross-check itself is sound here
    assert PYSTUN3_TO_OURS[theirs] is ours.nat_type


@pytest.fixture(scope="module")
def plain_servers(nat_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two nodes on the open host O1 (ports 47474 and 47475): plain RFC 5389 servers, which
    answer CHANGE-REQUEST with 420 and offer no OTHER-ADDRESS."""
    address = str(nat_lab.host("O1").address)
    procs = []
    try:
        for port in (47474, 47475):
            tmp = tmp_path_factory.mktemp(f"node-{port}")
            config = tmp / "node.toml"
            # TCP-TLS on a free port: its default (47475) is the second node's UDP port here.
            config.write_text(
                f'[node]\nlisten_address = "{address}"\nudp_port = {port}\n[tcp_tls]\nport = 0\n'
            )
            proc = nat_lab.popen(
                "O1",
                [*NODE, "run", "--config", str(config), "--state-dir", str(tmp / "state"),
                 "--runtime-dir", str(tmp / "run")],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
            assert proc.stdout is not None
            assert f"listen=udp://{address}:{port}" in proc.stdout.readline().decode()
        yield f"{address}:47474", f"{address}:47475"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


async def test_plain_servers_show_mapping_by_destination_and_agree_with_rfc5780(
    nat_lab: Lab, plain_servers: tuple[str, str]
) -> None:
    def discovery(*servers: str) -> NatDiscovery:
        return NatDiscovery(
            servers, ProbeTiming(), socket_factory=lambda _family, type_: nat_lab.socket("A1", type_)
        )

    nat_lab.set_nat("A", NatBehaviour.SYMMETRIC)
    report = await discovery(*plain_servers).run()
    # two ports of one address, two mappings: address-and-port-dependent, without RFC 5780
    assert (report.nat_type, report.mapping, report.filtering) == (NatType.SYMMETRIC, APD, None)
    assert [(s.outcome.value, s.rfc5780) for s in report.servers] == [("ok", False)] * 2
    nat_lab.set_nat("A", NatBehaviour.PORT_RESTRICTED)
    report = await discovery(*plain_servers).run()
    # one mapping for both, but both share an address: endpoint-independent or address-dependent
    assert (report.nat_type, report.mapping, report.filtering) == (NatType.UNKNOWN, None, None)
    assert report.consistent and report.servers[0].mapped == report.servers[1].mapped
    # coturn (RFC 5780) beside a plain server: one verdict, confirmed across servers
    report = await discovery(SERVER, plain_servers[0]).run()
    assert report.nat_type is NatType.PORT_RESTRICTED and report.consistent
    assert report.servers[0].mapped == report.servers[1].mapped
