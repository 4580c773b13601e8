"""A bug met on one TCP-TLS connection ends that connection only: the transport keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.transports.tcp_tls import TcpTlsTransport
from node.transports.tls_link import TlsLink, TlsPeerError, dial
from tests.socket.tlsnodes import endpoint_of, eventually, new_node, pinned_creds, transport


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
