"""A bug met on one TCP-TLS connection ends that connection only: the transport keeps serving."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from node.transports.tcp_tls.link import TlsLink, TlsPeerError, dial
from node.transports.tcp_tls.transport import TcpTlsTransport
from tests.support.tlsnodes import endpoint_of, eventually, new_node, pinned_creds, transport


async def test_a_fault_in_one_connection_is_contained_counted_and_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, first, second = (new_node(tmp_path, n) for n in ("server", "first", "second"))
    register = TcpTlsTransport._register
    tripped: list[str] = []

    def buggy_register(self: TcpTlsTransport, link: TlsLink) -> bool:
        if not tripped:  # a handler bug that the first connection happens to reach
            tripped.append(link.peer)
            raise RuntimeError("a bug in a connection handler")
        return register(self, link)

    monkeypatch.setattr(TcpTlsTransport, "_register", buggy_register)
    async with transport(pinned_creds(server, frozenset())) as ts:
        target = endpoint_of(ts)
        victim = await dial(target, server.ident.peer_id, pinned_creds(first, frozenset()), ts.settings.link)
        # The server's handler failed after accepting: the connection is closed on the victim...
        with pytest.raises(TlsPeerError):
            await victim.ping()
            await victim.ping()
        victim.close()
        await eventually(lambda: ts.isolation.snapshot() == {"RuntimeError": 1})
        # ... its slot is free again, and everyone else is served as before.
        await eventually(lambda: ts.health().connections == 0)
        async with transport(pinned_creds(second, frozenset()), listen=False) as tc:
            assert await tc.dial(target, server.ident.peer_id) == server.ident.peer_id
            assert await tc.ping(server.ident.peer_id) >= 0
        assert tripped == [first.ident.peer_id]


async def test_a_connection_whose_task_never_ran_gives_back_its_socket_and_slot(tmp_path: Path) -> None:
    """The transport stops right after an accept: the connection's task is cancelled before its
    first step, so its work (and the work's finally) never runs; the socket and the slot it held
    are given back all the same, and no coroutine is left never awaited."""
    server = new_node(tmp_path, "server")
    ts = transport(pinned_creds(server, frozenset()))
    await ts.__aenter__()
    ours, theirs = socket.socketpair()
    try:
        ts._on_tcp(ours, ipaddress.ip_address("127.0.0.1"), "connection from a test")
        assert ts.slots.in_use == 1 and ts.slots.pending == 1
        await ts.__aexit__(None, None, None)  # before the loop ran the connection's task
        assert ours.fileno() == -1
        assert ts.slots.in_use == 0 and ts.slots.pending == 0
        assert theirs.recv(1) == b""  # the client sees the close
    finally:
        ours.close()
        theirs.close()
