"""NAT discovery from the node's own UDP port: the Binding and the mapping tests leave from the port
peers reach, their answers come back through the transport's demultiplexer by transaction id, and
the filtering tests keep fresh sockets. Real sockets on loopback, the STUN server model on its four
RFC 5780 addresses (127.0.0.1 / 127.0.0.2, two ports)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.config import Config, StunSection
from node.proto import stun
from node.proto.identity import Identity
from node.proto.natprobe.types import Behaviour
from node.proto.stun.responder import Outcome
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.services.nat import NatService
from node.transports.udp.transport import UdpTransport
from tests.fakes.stun_server import Datagram, Endpoint
from tests.socket.stun_loopback import LoopbackStunServer
from tests.support.nodeproc import cli, start_node

FAST = {"binding_timeout_s": 0.3, "silence_floor_s": 0.1, "tcp_after_s": 0.1}
T = TypeVar("T")
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def _transport() -> UdpTransport:
    identity = Identity.from_private_key(Ed25519PrivateKey.generate())
    return UdpTransport(identity, SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT)))


class _Recorded:
    """Every Binding request the server model answered: (where from, CHANGE-REQUEST?, its answers)."""

    def __init__(self, server: LoopbackStunServer) -> None:
        model = server.model
        assert model is not None
        self.requests: list[tuple[Endpoint, bool, list[Datagram]]] = []
        receive = model.receive

        def recording(data: bytes, src: Endpoint, dst: Endpoint, now: float) -> list[Datagram]:
            answers = receive(data, src, dst, now)
            message = stun.decode(data)
            if message.message_class is stun.MessageClass.REQUEST:
                self.requests.append((src, message.find(stun.ChangeRequest) is not None, answers))
            return answers

        model.receive = recording  # type: ignore[method-assign]


async def _eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    for _ in range(200):
        if (value := await probe()) is not None:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_discovery_maps_the_transport_port_while_it_carries_a_session() -> None:
    async with LoopbackStunServer() as server, _transport() as node, _transport() as peer:
        recorded = _Recorded(server)
        assert node.local is not None and peer.local is not None
        await node.connect(peer.identity.peer_id, peer.local)
        config = Config(stun=StunSection(servers=(server.label,), **FAST))
        async with NatService(config, port=node) as nat:
            await asyncio.wait_for(nat.wait_idle(), 15)
        report = nat.status().report
        assert report is not None
        assert report.mapped_address == (LOOPBACK, node.local.port)
        assert report.mapping is Behaviour.ENDPOINT_INDEPENDENT
        # The CHANGE-REQUEST answers came to a fresh socket, never through the node's port.
        assert report.filtering is Behaviour.ENDPOINT_INDEPENDENT
        plain = {src[1] for src, change, _ in recorded.requests if not change}
        changed = {src[1] for src, change, _ in recorded.requests if change}
        assert node.local.port in plain and len(plain) == 2  # the port's tests, the filter socket's Binding
        assert changed and node.local.port not in changed
        # Binding + the three mapping tests were answered on the port and handed to discovery.
        assert node.metrics().stun_responses >= 4
        # The session on the same port carries on.
        assert await node.ping(peer.identity.peer_id) >= 0

        # A late copy of one of discovery's answers (its transaction is over) is counted, not
        # delivered, and nothing breaks.
        late = next(a for src, _, answers in recorded.requests if src[1] == node.local.port for a in answers)
        responses, ignored = node.metrics().stun_responses, node.responder.counters[Outcome.IGNORED]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(late.data, ("127.0.0.1", node.local.port))

        async def counted() -> bool | None:
            return node.responder.counters[Outcome.IGNORED] == ignored + 1 or None

        await _eventually(counted, "the late answer counted as ignored")
        assert node.metrics().stun_responses == responses
        assert not node.wall.snapshot()  # no datagram's handling failed
        assert await node.ping(peer.identity.peer_id) >= 0


async def test_daemon_reports_the_mapping_of_its_own_udp_port(tmp_path: Path) -> None:
    async with LoopbackStunServer() as server:
        extra = f'[stun]\nservers = ["{server.label}"]\nbinding_timeout_s = 0.3\n'
        node = await asyncio.to_thread(start_node, tmp_path, None, extra)
        try:

            async def discovered() -> dict[str, Any] | None:
                done = await asyncio.to_thread(
                    cli, "status", "--json", "--runtime-dir", str(node.runtime_dir)
                )
                assert done.returncode == 0, done.stderr
                status: dict[str, Any] = json.loads(done.stdout)
                return status if status["nat"]["result"] is not None else None

            status = await _eventually(discovered, "a discovery result in status")
            result = status["nat"]["result"]
            # Before discovery used the node's socket this was some ephemeral port of its own.
            assert result["mapped_address"] == f"127.0.0.1:{node.udp_port}"
            assert result["nat_type"] == "open"
            assert result["filtering"] == "endpoint-independent"
            assert status["udp"]["faults"] == {}
        finally:
            node.kill()
