"""Pinned-id and development modes over real TLS: the in-band proof binds the client to the
server certificate it saw, so a relay that terminates TLS on both sides (a man in the middle)
cannot pass a client's proof on, and cannot pose as the server to a client that pinned it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.proto.vocabulary import IpEndpoint, TransportReason
from node.security.trust import TrustReason
from node.transports.tcp_tls.link import TlsCredentials, TlsPeerError, dial
from tests.support.tlsnodes import endpoint_of, eventually, new_node, pinned_creds, transport


@contextlib.asynccontextmanager
async def relay(own: TlsCredentials, target: IpEndpoint) -> AsyncIterator[IpEndpoint]:
    """A TLS-terminating relay with its own identity: decrypts from the client, re-encrypts to
    the server, and copies the application bytes (HELLO, PROOF, REFUSE...) both ways unchanged."""
    pumps: set[asyncio.Task[None]] = set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def on_client(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection(
            str(target.ip), target.port, ssl=own.client_context
        )
        for task in (pump(c_reader, s_writer), pump(s_reader, c_writer)):
            pumps.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=own.server_context)
    try:
        host, port = server.sockets[0].getsockname()[:2]
        yield IpEndpoint(ipaddress.ip_address(host), port)
    finally:
        server.close()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


@pytest.mark.parametrize("mode", ["pinned", "development"])
async def test_in_band_proof_direct_and_through_a_relay(tmp_path: Path, mode: str) -> None:
    server, client, mallory = (new_node(tmp_path, n) for n in ("server", "client", "mallory"))
    pins = {
        "server": frozenset({client.ident.peer_id}) if mode == "pinned" else frozenset(),
        "client": frozenset({server.ident.peer_id}) if mode == "pinned" else frozenset(),
    }
    async with transport(pinned_creds(server, pins["server"])) as ts:
        target = endpoint_of(ts)
        client_creds = pinned_creds(client, pins["client"])
        settings = ts.settings.link

        # Direct: both ids proven.
        link = await dial(target, server.ident.peer_id, client_creds, settings)
        assert link.peer == server.ident.peer_id
        link.close()

        async with relay(pinned_creds(mallory, frozenset()), target) as mitm:
            # A client that knows whom it dials (pinned, or given the id) sees the relay's key.
            with pytest.raises(TlsPeerError) as posing:
                await dial(mitm, server.ident.peer_id, client_creds, settings)
            assert posing.value.trust in (TrustReason.PEER_MISMATCH, TrustReason.NOT_PINNED)
            if mode == "development":
                # A development client dialling any peer signs the relay's certificate; the relay
                # passes the proof on, and the real server refuses it: wrong certificate.
                with pytest.raises(TlsPeerError) as relayed:
                    await dial(mitm, None, client_creds, settings)
                assert relayed.value.reason is TransportReason.AUTH_FAILED
                assert relayed.value.trust is TrustReason.BAD_PROOF
                await eventually(lambda: ts.metrics().failures(TrustReason.BAD_PROOF) == 1)

        # The server keeps serving the real client.
        again = await dial(target, server.ident.peer_id, client_creds, settings)
        again.close()
        assert ts.metrics().handshakes == 2


async def test_pinned_server_refuses_an_unpinned_client(tmp_path: Path) -> None:
    server, client, stranger = (new_node(tmp_path, n) for n in ("server", "client", "stranger"))
    async with transport(pinned_creds(server, frozenset({client.ident.peer_id}))) as ts:
        with pytest.raises(TlsPeerError) as err:
            await dial(
                endpoint_of(ts), server.ident.peer_id, pinned_creds(stranger, frozenset()), ts.settings.link
            )
        assert err.value.trust is TrustReason.NOT_PINNED
        await eventually(lambda: ts.metrics().failures(TrustReason.NOT_PINNED) == 1)
