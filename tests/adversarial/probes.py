"""What every adversarial case checks after its attack: alive, bounded, still serving, honest."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.nodeproc import RunningNode, cli


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class NodeUnderAttack:
    node: RunningNode
    tmp_path: Path

    @property
    def pid(self) -> int:
        return self.node.proc.pid

    def assert_alive(self) -> None:
        code = self.node.proc.poll()
        assert code is None, f"the node exited with {code}: {self.node.stderr_path.read_text()[-4000:]}"

    def status(self) -> dict[str, Any]:
        """``bitcraps-node status --json`` as the operator would run it."""
        done = cli("status", "--json", "--runtime-dir", str(self.node.runtime_dir))
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        assert isinstance(reply, dict)
        return reply

    def legitimate_ping(self) -> dict[str, Any]:
        """A peer with its own identity pings the node over TCP-TLS with the installed CLI."""
        assert self.node.tls_port is not None
        done = cli(
            "ping",
            f"127.0.0.1:{self.node.tls_port}",
            "--peer",
            self.node.peer_id,
            "--count",
            "1",
            "--state-dir",
            str(self.tmp_path / "legit-peer"),
            "--json",
        )
        assert done.returncode == 0, f"legitimate ping failed: {done.stdout} {done.stderr}"
        reply = json.loads(done.stdout)
        assert isinstance(reply, dict)
        return reply


def udp_drops(pid: int, port: int) -> int:
    """Datagrams the kernel dropped for the process's IPv4 UDP socket on ``port`` (receive buffer
    full): what a flood sent but the node never saw (the last column of /proc/PID/net/udp)."""
    for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            return int(fields[-1])
    raise AssertionError(f"no UDP socket on port {port}")


def legitimate_ping_from(attacked: NodeUnderAttack, source: str) -> float:
    """As ``legitimate_ping``, from the loopback address ``source`` (Linux routes all of 127/8 on
    lo): a peer behind another address than the attacker's. The node's own client code (dial, the
    identity proof, one PING) in this process, which can bind a source address; the round trip
    in seconds. Raises TlsPeerError when refused."""
    import ipaddress

    import uvloop

    from node.proto.vocabulary import IpEndpoint
    from node.security import keystore
    from node.security.trust import TrustMode, TrustPolicy
    from node.transports.tcp_tls.link import LinkSettings, dial, make_credentials
    from tests.support.tlsnodes import ping_once

    assert attacked.node.tls_port is not None
    state = attacked.tmp_path / f"legit-peer-{source}"
    ident, _ = keystore.load_or_create(state)
    creds = make_credentials(ident, state / keystore.KEY_FILE_NAME, TrustPolicy(TrustMode.DEVELOPMENT), None)
    target = IpEndpoint(ipaddress.ip_address("127.0.0.1"), attacked.node.tls_port)

    async def ping() -> float:
        return await ping_once(
            await dial(target, attacked.node.peer_id, creds, LinkSettings(), source=source)
        )

    return uvloop.run(ping())
