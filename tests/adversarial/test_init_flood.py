"""UDP sessions: a stranger floods the node's port with handshake INITs (valid mac1, so each would
cost a key agreement) from many source ports, tens of thousands a second, while a legitimate peer
handshakes. The node answers the flood with cookies instead of key agreements, the legitimate
peer (which returns its cookie) gets its session, memory and descriptors stay bounded, and the
cookies are counted in ``status``."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import multiprocessing
import os
import socket
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto.identity import Identity
from node.proto.session.messages import encode_init
from node.proto.vocabulary import IpEndpoint
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.base import TransportPeerError
from node.transports.udp.transport import UdpSettings, UdpTransport
from tests.adversarial.probes import NodeUnderAttack, open_fds, rss_kib

pytestmark = pytest.mark.process

FLOOD = 100_000  # about 3 s from one process on this machine: long enough to dial in the middle
LOADED = 5_000  # INITs sent before the legitimate peer dials: far past the node's burst of 100
SOURCES = 64  # source ports the flood comes from


def _flood(port: int, count: int, loaded: Any, stop: Any) -> None:
    """``count`` INITs, round robin over SOURCES sockets, as fast as they go; the answers (cookies)
    are read and thrown away so the flooder's own buffers never block it."""
    socks = []
    try:
        for _ in range(SOURCES):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            socks.append(sock)
        target = ("127.0.0.1", port)
        for i in range(count):
            if stop.is_set():
                return
            if i == LOADED:
                loaded.set()
            sock = socks[i % SOURCES]
            init = encode_init(int.from_bytes(os.urandom(4), "little"), os.urandom(32))
            with contextlib.suppress(BlockingIOError):  # our buffer full: dropped, as on a network
                sock.sendto(init, target)
            if i % SOURCES == 0:
                for s in socks:
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            s.recv(2048)
    finally:
        for sock in socks:
            sock.close()


async def _legitimate_handshake(attacked: NodeUnderAttack) -> str:
    me = Identity.from_private_key(Ed25519PrivateKey.generate())
    verifier = SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))
    async with UdpTransport(me, verifier, UdpSettings(connect_timeout=20.0)) as transport:
        node = IpEndpoint(ipaddress.ip_address("127.0.0.1"), attacked.node.udp_port)
        await transport.connect(attacked.node.peer_id, node)
        # The session carries data both ways. A probe is one datagram each way with no
        # retransmission: while the flood fills the node's receive buffer it may be lost, so ask again.
        for _ in range(8):
            with contextlib.suppress(TransportPeerError):
                await transport.ping(attacked.node.peer_id)
                break
        else:
            raise AssertionError("no probe of the session was ever answered")
        return transport.peers()[0]


def test_init_flood_gets_cookies_and_a_legitimate_peer_still_handshakes(attacked: NodeUnderAttack) -> None:
    rss_before, fds_before = rss_kib(attacked.pid), open_fds(attacked.pid)
    context = multiprocessing.get_context("spawn")  # its own process: a flood the GIL does not slow
    loaded, stop = context.Event(), context.Event()
    flooder = context.Process(target=_flood, args=(attacked.node.udp_port, FLOOD, loaded, stop))
    flooder.start()
    try:
        # Dial only once the flood is well under way; it goes on meanwhile.
        assert loaded.wait(30), "the flooder never got going"
        flooding_at_dial = flooder.is_alive()
        proven = asyncio.run(_legitimate_handshake(attacked))
        still_flooding = flooder.is_alive()
    finally:
        stop.set()
        flooder.join(timeout=60)
    assert proven == attacked.node.peer_id
    assert flooder.exitcode == 0

    status = attacked.status()
    udp = status["udp"]
    attacked.assert_alive()
    assert udp["cookies_sent"] > 0
    assert udp["handshakes"] >= 1
    assert udp["faults"] == {}
    # At most half the sessions (transport.max_connections = 100) may be half-open: the flood's.
    assert udp["sessions"] <= 100
    growth = rss_kib(attacked.pid) - rss_before
    assert growth < 32 * 1024, f"RSS grew {growth} KiB under an INIT flood"
    assert open_fds(attacked.pid) <= fds_before + 4
    print(
        f"INIT flood: {udp}, RSS +{growth} KiB, flooding at dial {flooding_at_dial}, after {still_flooding}"
    )
