"""Connections that have not proven an identity yet, over real TCP-TLS on loopback: their own
share of the slots, a cap per source address, and a typed, counted reason for every refusal.

Linux routes all of 127/8 on lo: a client socket bound to 127.0.0.2 is a second source address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from node.proto.link.stream_link import CloseReason
from node.proto.vocabulary import IpEndpoint, TransportReason
from node.transports.tcp_tls.link import TlsPeerError, dial
from node.transports.tcp_tls.slots import Refusal
from node.transports.tcp_tls.transport import TcpTlsTransport
from tests.support.tlsnodes import endpoint_of, eventually, new_node, pinned_creds, transport


@contextmanager
def idle(target: IpEndpoint, source: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections from ``source`` that never start TLS."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((str(target.ip), target.port), source_address=(source, 0))
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


async def closed_at_once(sock: socket.socket) -> bool:
    """The node closed ``sock`` without a byte (an idle connection it holds never ends here)."""
    sock.setblocking(False)
    try:
        return await asyncio.get_running_loop().sock_recv(sock, 1) == b""
    except ConnectionResetError:
        return True


async def connects(ts: TcpTlsTransport, tmp_path: Path, name: str, source: str) -> None:
    creds = pinned_creds(new_node(tmp_path, name), frozenset())
    link = await dial(endpoint_of(ts), None, creds, ts.settings.link, source=source)
    link.close()


async def test_one_address_holding_idle_connections_leaves_room_for_another(tmp_path: Path) -> None:
    server = pinned_creds(new_node(tmp_path, "server"), frozenset())
    async with transport(server, max_pending=4, max_pending_per_address=2, handshake_timeout=60) as ts:
        target = endpoint_of(ts)
        with idle(target, "127.0.0.1", 2):
            await eventually(lambda: ts.slots.pending == 2)
            # A client from the same address that completes TLS is told why, typed, inside TLS.
            with pytest.raises(TlsPeerError) as told:
                await connects(ts, tmp_path, "same-address", "127.0.0.1")
            assert told.value.reason is TransportReason.TOO_MANY_CONNECTIONS
            assert told.value.close is CloseReason.TOO_MANY_PENDING_FROM_ADDRESS
            await eventually(lambda: ts.slots.refusing == 0)
            with idle(target, "127.0.0.1", 10) as more:
                # Two more hold this address's share of TLS refusals; the rest are closed at once.
                closed = await asyncio.gather(*(closed_at_once(s) for s in more[2:]))
                assert all(closed)
                await eventually(lambda: ts.metrics().refusals(Refusal.TOO_MANY_PENDING_FROM_ADDRESS) == 11)
                # A peer from another address connects while the first one holds all of that.
                await connects(ts, tmp_path, "elsewhere", "127.0.0.2")
                # Past the refusal budget, a client from the busy address is closed without a
                # word and its error still says what failed and why.
                with pytest.raises(TlsPeerError) as closed_on:
                    await connects(ts, tmp_path, "same-again", "127.0.0.1")
                assert closed_on.value.reason is TransportReason.CONNECT_FAILED
                assert closed_on.value.detail.rsplit(":", 1)[1].strip()
            assert ts.metrics().refusals(Refusal.TOO_MANY_PENDING_FROM_ADDRESS) == 12
            assert ts.slots.pending == 2  # the idle ones still hold their share, no more
        assert ts.metrics().refusals(Refusal.TOO_MANY_CONNECTIONS) == 0


async def test_the_pending_share_is_bounded_across_addresses(tmp_path: Path) -> None:
    server = pinned_creds(new_node(tmp_path, "server"), frozenset())
    async with transport(server, max_pending=3, max_pending_per_address=2, handshake_timeout=60) as ts:
        target = endpoint_of(ts)
        with idle(target, "127.0.0.1", 2), idle(target, "127.0.0.2", 1):
            await eventually(lambda: ts.slots.pending == 3)
            with pytest.raises(TlsPeerError) as told:
                await connects(ts, tmp_path, "third", "127.0.0.3")
            assert told.value.close is CloseReason.TOO_MANY_PENDING
            assert ts.metrics().refusals(Refusal.TOO_MANY_PENDING) == 1
            assert ts.health().connections == 3  # nothing but the pending ones holds a slot


async def test_proven_peers_leave_the_pending_share_and_are_not_capped_per_address(
    tmp_path: Path,
) -> None:
    server = pinned_creds(new_node(tmp_path, "server"), frozenset())
    async with transport(server, max_pending=2, max_pending_per_address=1) as ts:
        target = endpoint_of(ts)
        links = []
        try:
            for i in range(6):  # six players behind one address, each handshake on its own
                creds = pinned_creds(new_node(tmp_path, f"player{i}"), frozenset())
                links.append(await dial(target, None, creds, ts.settings.link, source="127.0.0.1"))
            await eventually(lambda: len(ts.peers()) == 6)
            assert (ts.health().connections, ts.slots.pending, ts.metrics().pending) == (6, 0, 0)
            with idle(target, "127.0.0.1", 1):  # the address's pending share is free again
                await eventually(lambda: ts.slots.pending == 1)
        finally:
            for link in links:
                link.close()
        assert ts.metrics().refused == ()


async def test_pending_connections_give_their_share_back_at_the_handshake_timeout(tmp_path: Path) -> None:
    server = pinned_creds(new_node(tmp_path, "server"), frozenset())
    async with transport(server, max_pending_per_address=2, handshake_timeout=0.5) as ts:
        with idle(endpoint_of(ts), "127.0.0.1", 2):
            await eventually(lambda: ts.slots.pending == 2)
            await eventually(lambda: ts.slots.pending == 0 and ts.health().connections == 0)
            await connects(ts, tmp_path, "later", "127.0.0.1")
        assert ts.metrics().failures(TransportReason.CONNECT_TIMEOUT) == 2


async def test_a_connection_closed_before_tls_fails_with_a_detail(tmp_path: Path) -> None:
    """A server that ends the connection during the TLS handshake: the error used to read
    ``connect_failed: 127.0.0.1:36529:`` (uvloop raises ConnectionResetError() without text)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    loop = asyncio.get_running_loop()

    async def close_each() -> None:
        while True:
            conn, _ = await loop.sock_accept(listener)
            await loop.sock_recv(conn, 65536)  # the ClientHello, taken: the close is a FIN, not a RST
            conn.close()

    closer = asyncio.ensure_future(close_each())
    try:
        target = IpEndpoint(ipaddress.ip_address("127.0.0.1"), listener.getsockname()[1])
        creds = pinned_creds(new_node(tmp_path, "client"), frozenset())
        with pytest.raises(TlsPeerError) as failed:
            await dial(target, None, creds, transport(creds, listen=False).settings.link)
        assert failed.value.reason is TransportReason.CONNECT_FAILED
        assert not str(failed.value).rstrip().endswith(":")
        assert failed.value.detail.rsplit(":", 1)[1].strip()
    finally:
        closer.cancel()
        listener.close()
