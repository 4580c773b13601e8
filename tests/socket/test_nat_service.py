"""The node's NAT service: discovery at start, ``rediscover()`` for the netlink monitor, and the
result in ``status`` of the real daemon."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from node.config import Config, StunSection
from node.services.nat import NatService
from tests.socket.stun_loopback import LoopbackStunServer
from tests.support.nodeproc import cli, start_node

FAST = {"binding_timeout_s": 0.3, "silence_floor_s": 0.1, "tcp_after_s": 0.1}


async def test_discovers_at_start_and_again_on_request() -> None:
    async with LoopbackStunServer() as server:
        async with NatService(Config(stun=StunSection(servers=(server.label,), **FAST))) as nat:
            assert nat.status().discovering
            await asyncio.wait_for(nat.wait_idle(), 10)
            first = nat.status()
            assert first.runs == 1 and first.report is not None and first.report.nat_type.value == "open"
            nat.rediscover()
            nat.rediscover()  # coalesced with the one just asked for
            await asyncio.wait_for(nat.wait_idle(), 10)
            assert nat.status().runs == 2
            assert nat.status().to_json()["result"]["nat_type"] == "open"
            nat.rediscover()  # still running when the service stops: cancelled cleanly
        assert nat.status().runs == 2


async def test_without_servers_or_when_told_not_to_it_stays_idle() -> None:
    async with NatService(Config(stun=StunSection())) as nat:
        nat.rediscover()
        assert nat.status().to_json() == {
            "enabled": False, "discovering": False, "runs": 0, "age_s": None, "result": None,
        }  # fmt: skip
    async with LoopbackStunServer() as server:
        section = StunSection(servers=(server.label,), discover_at_start=False, **FAST)
        async with NatService(Config(stun=section)) as nat:
            assert not nat.status().discovering and nat.status().runs == 0


async def test_daemon_reports_its_nat_in_status(tmp_path: Path) -> None:
    async with LoopbackStunServer() as server:
        extra = f'[stun]\nservers = ["{server.label}"]\nbinding_timeout_s = 0.3\n'
        node = await asyncio.to_thread(start_node, tmp_path, None, extra)
        try:
            for _ in range(100):
                done = await asyncio.to_thread(
                    cli, "status", "--json", "--runtime-dir", str(node.runtime_dir)
                )
                assert done.returncode == 0, done.stderr
                nat = json.loads(done.stdout)["nat"]
                if nat["result"] is not None:
                    break
                await asyncio.sleep(0.1)
            assert nat["enabled"] and nat["runs"] >= 1
            assert nat["result"]["nat_type"] == "open"
            assert nat["result"]["servers"][0]["server"] == server.label
            human = await asyncio.to_thread(cli, "status", "--runtime-dir", str(node.runtime_dir))
            assert "nat:        open (mapped 127.0.0.1:" in human.stdout
        finally:
            node.kill()
