"""NAT behaviour discovery against classic RFC 3489 servers (MAPPED-ADDRESS and CHANGED-ADDRESS,
no OTHER-ADDRESS, UDP only) in the lab's ``srv`` on 203.0.113.10/.11, ports 3478/3479, instead of
coturn: Debian's packaged classic server (``stun-server``: Vovida stund 0.97) and our own RFC
3489-only server (``tests/lab/classic_stund.py``, the in-memory model on real sockets).

Every lab behaviour must be classified as ``test_nat_discovery`` expects with coturn, with one
exception: a UDP-only server cannot tell blocked UDP from a dead server, so ``udp-blocked`` reads
``unknown`` (coturn's STUN over TCP is what proves it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlink.lab import procs
from netlink.lab.builder import Lab
from netlink.lab.coturn import STUN_PORT
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import STUN_PRIMARY, STUN_SECONDARY, plan
from node.proto import stun
from node.proto.natprobe.types import NatType, ServerOutcome
from tests.lab.test_nat_discovery import EXPECTED, RUNS, Expected, _discovery, _ours, _seen
from tests.support.prerequisites import require_tools

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
ALTERNATE_PORT = STUN_PORT + 1  # 3479, as coturn's alternate port
READY_S = 10.0  # how long a starting server may stay silent (generous: loaded CI runners)
BLOCKED_RUNS = 2  # each waits out the Binding timeout; two show it is not a fluke
UNKNOWN = Expected(NatType.UNKNOWN, None, None, None)


def _argv(kind: str) -> list[str]:
    primary, alternate = str(STUN_PRIMARY), str(STUN_SECONDARY)
    if kind == "stund":
        require_tools(["stund"], "apt-get install stun-server")
        return ["stund", "-h", primary, "-a", alternate, "-p", str(STUN_PORT), "-o", str(ALTERNATE_PORT)]
    return [sys.executable, "-m", "tests.lab.classic_stund", primary, alternate, str(STUN_PORT),
            str(ALTERNATE_PORT)]  # fmt: skip


def _wait_ready(lab: Lab, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll with a Binding from ``srv`` itself until the server answers (bounded)."""
    tid = stun.new_transaction_id()
    request = stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, tid))
    sock = lab.socket("srv", timeout=0.05)
    deadline = time.monotonic() + READY_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{proc.args!r} exited {proc.returncode}: {log.read_text()!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"{proc.args!r} gave no STUN answer in {READY_S} s: {log.read_text()!r}")
            sock.sendto(request, (str(STUN_PRIMARY), STUN_PORT))
            try:
                answer = sock.recv(2048)
            except TimeoutError:
                continue
            if stun.decode(answer).transaction_id == tid:
                return
    finally:
        sock.close()


@pytest.fixture(scope="module")
def classic_lab(lab_ready: None) -> Iterator[Lab]:
    """Router A with a host, and no coturn: the classic server takes its addresses and ports."""
    with Lab.up(plan((("A", NatBehaviour.PORT_RESTRICTED),)), with_coturn=False) as lab:
        yield lab


@pytest.fixture(scope="module", params=["stund", "model"])
def classic_server(request: pytest.FixtureRequest, classic_lab: Lab) -> Iterator[str]:
    kind: str = request.param
    argv = _argv(kind)
    log = classic_lab.workdir / f"{kind}.log"
    with log.open("wb") as out:
        proc = classic_lab.popen("srv", argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        _wait_ready(classic_lab, proc, log)
        yield kind
    finally:
        procs.stop_child(proc)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("behaviour", list(NatBehaviour), ids=lambda b: b.value)
async def test_every_behaviour_against_an_rfc3489_only_server(
    classic_lab: Lab, classic_server: str, behaviour: NatBehaviour
) -> None:
    classic_lab.set_nat("A", behaviour)  # flushes conntrack; the runs below do not
    blocked = behaviour is NatBehaviour.UDP_BLOCKED
    discovery = _discovery(classic_lab, "A1")
    reports = [await discovery.run() for _ in range(BLOCKED_RUNS if blocked else RUNS)]
    expected = UNKNOWN if blocked else _ours(EXPECTED[behaviour])
    assert [_seen(r) for r in reports] == [expected] * len(reports), classic_server
    assert all(r.consistent for r in reports)
    wan = classic_lab.topology.router("A").wan
    host = classic_lab.host("A1").address
    for report in reports:
        [server] = report.servers
        if blocked:
            assert server.outcome is ServerOutcome.NO_ANSWER and report.mapped_address is None
            continue
        # it answered over UDP, and its CHANGED-ADDRESS drove the RFC 5780 tests
        assert server.outcome is ServerOutcome.OK and server.rfc5780
        assert report.mapped_address is not None
        assert report.mapped_address[0] == (host if behaviour is NatBehaviour.OPEN else wan)
