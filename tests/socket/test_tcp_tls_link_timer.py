"""The TLS link's core timer over real TCP + TLS on loopback: keepalive PINGs keep a quiet link
open, and a peer that stops answering is closed for TIMEOUT, told why, and ``run`` returns."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from node.proto.link.stream_link import CloseReason, LinkClosed
from node.proto.vocabulary import IpEndpoint
from node.transports.tcp_tls.link import LinkSettings, TlsLink, accept, dial
from tests.support.tlsnodes import new_node, pinned_creds

HANG_GUARD_S = 10.0  # only against a hang: each wait ends after a few keepalive periods
# Keepalive after 0.2 s of silence, dead after 0.4 s (LinkSettings.timing: twice the keepalive).
SETTINGS = LinkSettings(keepalive=0.2)


@asynccontextmanager
async def link_pair(tmp_path: Path) -> AsyncIterator[tuple[TlsLink, TlsLink]]:
    """(dialled, accepted): two ends of one authenticated link."""
    loop = asyncio.get_running_loop()
    a, b = new_node(tmp_path, "a"), new_node(tmp_path, "b")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def serve() -> TlsLink:
            sock, _ = await loop.sock_accept(listener)
            return await accept(sock, pinned_creds(b, frozenset()), SETTINGS)

        async with asyncio.timeout(HANG_GUARD_S), asyncio.TaskGroup() as tasks:
            server = tasks.create_task(serve())
            client = await dial(
                IpEndpoint(ipaddress.ip_address("127.0.0.1"), port),
                None,
                pinned_creds(a, frozenset()),
                SETTINGS,
            )
    accepted = server.result()
    try:
        yield client, accepted
    finally:
        client.writer.transport.abort()
        accepted.writer.transport.abort()


def _ignore(link: TlsLink, frames: object) -> None:
    pass


async def test_a_peer_that_stops_answering_is_closed_for_timeout_and_told(tmp_path: Path) -> None:
    async with link_pair(tmp_path) as (client, server):
        # Only the server runs: the client never reads, so the server's keepalive PING goes
        # unanswered and its timer closes the link. Nothing the peer does ends the read: the
        # timer must wake ``run`` itself.
        async with asyncio.timeout(HANG_GUARD_S):
            reason = await server.run(_ignore, lambda rtt: None)
        assert reason is CloseReason.TIMEOUT
        assert server.closed_reason is CloseReason.TIMEOUT and server.closed_by_peer is False
        # The client's core reads what was sent: a PING, then CLOSE(TIMEOUT).
        async with asyncio.timeout(HANG_GUARD_S):
            while not client.core.closed:
                data = await client.reader.read(65536)
                assert data, "the server closed without a CLOSE frame"
                client.core.receive_data(data, asyncio.get_running_loop().time())
        events = []
        while (event := client.core.next_event()) is not None:
            events.append(event)
        assert events[-1] == LinkClosed(CloseReason.TIMEOUT, True)


async def test_answered_keepalives_keep_a_quiet_link_open_until_it_is_closed(tmp_path: Path) -> None:
    async with link_pair(tmp_path) as (client, server):
        rtts: list[float] = []
        three = asyncio.Event()

        def on_rtt(rtt: float) -> None:
            rtts.append(rtt)
            if len(rtts) >= 3:
                three.set()

        async with asyncio.timeout(HANG_GUARD_S), asyncio.TaskGroup() as tasks:
            ran_server = tasks.create_task(server.run(_ignore, on_rtt))
            ran_client = tasks.create_task(client.run(_ignore, lambda rtt: None))
            # Three keepalive round trips: more silence than the 0.4 s after which an
            # unanswered link is dead, each PING sent by the timer and its PONG read.
            await three.wait()
            assert not server.core.closed and not client.core.closed
            client.close()
        assert ran_client.result() is CloseReason.CLOSED
        assert ran_server.result() is CloseReason.CLOSED and server.closed_by_peer is True
