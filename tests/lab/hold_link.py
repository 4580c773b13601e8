"""A peer that holds one authenticated connection to a node until its stdin closes, for lab tests
that need the daemon to have links (before the coordinator can dial by itself).

``python -m tests.lab.hold_link tls|udp HOST PORT PEER_ID STATE_DIR``: dials PEER_ID at
HOST:PORT over TCP-TLS or the UDP session (development trust), prints ``held`` once the id is
proven, keeps the connection (UDP: with the transport's keepalives), exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from pathlib import Path

import uvloop

from node.proto.vocabulary import IpEndpoint
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.udp.transport import UdpTransport
from tests.support.tlsnodes import new_node, pinned_creds, transport


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


async def hold(kind: str, host: str, port: int, peer: str, state: Path) -> None:
    me = new_node(state, "holder")
    endpoint = IpEndpoint(ipaddress.ip_address(host), port)
    if kind == "tls":
        async with transport(pinned_creds(me, frozenset()), listen=False) as tls:
            await tls.dial(endpoint, peer)
            print("held", flush=True)
            await _stdin_closed()
    else:
        verifier = SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))
        async with UdpTransport(me.ident, verifier, listen=("0.0.0.0", 0)) as udp:
            await udp.connect(peer, endpoint)
            print("held", flush=True)
            await _stdin_closed()


if __name__ == "__main__":
    kind, host, port, peer, state = sys.argv[1:6]
    uvloop.run(hold(kind, host, int(port), peer, Path(state)))
