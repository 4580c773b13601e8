"""The discovery driver and the ``nat`` command on real loopback sockets (no NAT on loopback:
the host is "open"; a server with no UDP listener stands in for a path that blocks UDP)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

from node.config import BreakerSection
from node.proto.natprobe.probe import ProbeTiming
from node.proto.natprobe.types import Behaviour, NatType, PortAllocation, ServerOutcome
from node.transports.nat.discovery import NatDiscovery
from tests.socket.stun_loopback import LoopbackStunServer

FAST = ProbeTiming(deadline=3.0, binding_timeout=0.3, silence_floor=0.1, tcp_after=0.1)
NODE = [sys.executable, "-m", "node.cli"]


def _dead_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_open_host_on_loopback() -> None:
    async with LoopbackStunServer() as server:
        report = await NatDiscovery([server.label], FAST).run()
    assert report.nat_type is NatType.OPEN
    assert report.mapping is Behaviour.ENDPOINT_INDEPENDENT
    assert report.filtering is Behaviour.ENDPOINT_INDEPENDENT
    assert report.port_allocation is PortAllocation.PRESERVING
    assert report.consistent
    [seen] = report.servers
    assert (seen.outcome, seen.rfc5780) == (ServerOutcome.OK, True) and seen.rtt is not None
    assert report.mapped_address is not None and str(report.mapped_address[0]) == "127.0.0.1"


async def test_server_names_resolve_and_unresolvable_ones_are_reported() -> None:
    async with LoopbackStunServer() as server:
        report = await NatDiscovery([f"localhost:{server.port}", "nowhere.invalid:3478"], FAST).run()
    assert report.nat_type is NatType.OPEN
    assert [s.outcome for s in report.servers] == [ServerOutcome.OK, ServerOutcome.UNRESOLVED]


async def test_udp_blocked_when_only_tcp_answers() -> None:
    async with LoopbackStunServer(udp=False) as server:
        report = await NatDiscovery([server.label], FAST).run()
    assert report.nat_type is NatType.UDP_BLOCKED
    assert report.servers[0].outcome is ServerOutcome.TCP_ONLY


async def test_a_dead_server_costs_nothing_once_its_breaker_opens() -> None:
    dead = f"127.0.0.1:{_dead_port()}"
    discovery = NatDiscovery(
        [dead], FAST, BreakerSection(failure_threshold=3, recovery_timeout_s=600).new_breaker
    )
    async with LoopbackStunServer() as server:
        live = NatDiscovery([dead, server.label], FAST, BreakerSection(failure_threshold=3).new_breaker)
        outcomes = [(await discovery.run()).servers[0].outcome for _ in range(4)]
        both = await live.run()
    assert outcomes == [ServerOutcome.NO_ANSWER] * 3 + [ServerOutcome.BREAKER_OPEN]
    assert not (await discovery.run()).answered
    # a dead server next to a live one: the live one still classifies
    assert both.nat_type is NatType.OPEN
    assert [s.outcome for s in both.servers] == [ServerOutcome.NO_ANSWER, ServerOutcome.OK]


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *NODE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_nat_command_json_and_exit_codes() -> None:
    async with LoopbackStunServer() as server:
        code, out, err = await _cli("nat", "--stun", server.label, "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["nat_type"] == "open" and doc["servers"][0]["server"] == server.label
        code, out, _ = await _cli("nat", "--stun", server.label, "--hairpin")
        assert code == 0 and "NAT type:         open" in out
        assert "hairpinning:      yes" in out  # no NAT: the packet to "our mapping" is just local
    config_args = ("--config", "/dev/null")
    code, out, err = await _cli("nat", "--stun", f"127.0.0.1:{_dead_port()}", "--json", *config_args)
    assert (code, out) == (2, "") and "no STUN server answered" in err and len(err.splitlines()) == 1
    code, out, err = await _cli("nat", "--stun", "nonsense", *config_args)
    assert (code, out) == (2, "") and "--stun 'nonsense'" in err
    code, out, err = await _cli("nat", *config_args)
    assert (code, out) == (2, "") and "no STUN server" in err
