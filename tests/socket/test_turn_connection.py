"""The asyncio TURN driver over real loopback sockets (UDP, TCP, TLS) against the TURN server
model served on them; the model's peers echo. coturn itself is in tests/lab."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from netlink.lab.coturn import write_certificate
from node.proto import stun
from node.proto.identity import Identity
from node.proto.stun.stream import StreamFramer, StunFrame
from node.proto.stun.transaction import Timing
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import TurnAuthError, TurnError, TurnUnreachableError
from node.proto.turn.liveness import Liveness
from node.proto.turn.uri import TurnServerAddress, TurnTransport
from node.proto.vocabulary import (
    DisconnectReason,
    Frame,
    IpEndpoint,
    MessageReceived,
    PeerConnected,
    PeerDisconnected,
    Priority,
    RelayEndpoint,
    TransportReason,
    TransportState,
)
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.base import TransportUsageError
from node.transports.turn.allocator import RelayAllocation
from node.transports.turn.connection import HOLD_MAX, READ_BATCH, TurnConnection, tls_context
from node.transports.turn.relay import RelaySettings, TurnRelayTransport
from tests.fakes.stun_server import Datagram
from tests.fakes.turn_server import Address, TurnServerModel
from tests.support.tlsnodes import eventually

GOOD = Credentials("alice", "wonderland")
PEER = (ipaddress.IPv4Address("192.0.2.7"), 7000)


class ModelServer:
    """The model on 127.0.0.1: one UDP endpoint and one TCP (optionally TLS) listener."""

    def __init__(self, model: TurnServerModel) -> None:
        self.model = model
        self.udp: asyncio.DatagramTransport | None = None
        self.writers: dict[Address, asyncio.StreamWriter] = {}
        self.echo = True
        self.silent = False  # UDP: drop everything, as a SIGKILLed server behind a router
        self.relayed: list[tuple[Address, Address, bytes]] = []  # relay to relay: (from, to, data)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def deliver(self, datagrams: list[Datagram]) -> None:
        for out in datagrams:
            if out.src == self.model.primary:
                writer = self.writers.get(out.dst)
                if writer is not None:
                    writer.write(out.data)
                elif self.udp is not None:
                    self.udp.sendto(out.data, (str(out.dst[0]), out.dst[1]))
            elif out.dst in {a.relayed for a in self.model.allocations.values()}:
                # relay to relay: both clients' allocations live on this one server
                self.relayed.append((out.src, out.dst, out.data))
                self.deliver(self.model.receive_from_peer(out.dst, out.src, out.data, self.now()))
            elif self.echo:
                self.deliver(self.model.receive_from_peer(out.src, out.dst, out.data, self.now()))

    def receive(self, data: bytes, client: Address) -> None:
        self.deliver(self.model.receive(data, client, self.model.primary, self.now()))

    async def handle_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        client = (ipaddress.ip_address(host), port)
        self.writers[client] = writer
        self.model.stream_clients.add(client)
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                framer.feed(data)
                while (frame := framer.next_frame()) is not None:
                    raw = (
                        frame.raw
                        if isinstance(frame, StunFrame)
                        else stun.encode_channel_data(frame.channel, frame.data)
                    )
                    self.receive(raw, client)
        finally:
            del self.writers[client]
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: ModelServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.server.silent:
            return
        client = (ipaddress.ip_address(str(addr[0])), int(addr[1]))
        self.server.receive(data, client)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ModelServer, dict[TurnTransport, int]]]:
    async with serve_model(tmp_path) as pair:
        yield pair


@contextlib.asynccontextmanager
async def serve_model(tmp_path: Path) -> AsyncIterator[tuple[ModelServer, dict[TurnTransport, int]]]:
    """A model server on loopback UDP, TCP and TLS (ephemeral ports), closed on exit."""
    loop = asyncio.get_running_loop()
    server = ModelServer(TurnServerModel())
    udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(server), local_addr=("127.0.0.1", 0))
    server.udp = udp
    cert, key = write_certificate(tmp_path, "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    tcp = await asyncio.start_server(server.handle_stream, "127.0.0.1", 0)
    tls = await asyncio.start_server(server.handle_stream, "127.0.0.1", 0, ssl=context)
    ports = {
        TurnTransport.UDP: udp.get_extra_info("sockname")[1],
        TurnTransport.TCP: tcp.sockets[0].getsockname()[1],
        TurnTransport.TLS: tls.sockets[0].getsockname()[1],
    }
    try:
        yield server, ports
    finally:
        udp.close()
        for listener in (tcp, tls):
            listener.close()
        for writer in list(server.writers.values()):
            writer.close()


@pytest.mark.parametrize("transport", list(TurnTransport), ids=lambda t: t.value)
async def test_allocate_relay_and_release_over_each_transport(
    served: tuple[ModelServer, dict[TurnTransport, int]], transport: TurnTransport, tmp_path: Path
) -> None:
    server, ports = served
    address = TurnServerAddress("127.0.0.1", ports[transport], transport)
    async with TurnConnection(address, GOOD, ssl_context=tls_context(tmp_path / "turn-cert.pem")) as conn:
        assert conn.relayed[0] == server.model.relay_ip
        assert conn.lifetime == 600
        # Odd sizes: padding on streams; more than READ_BATCH: UDP reads drain in several turns.
        payloads = [bytes([i]) * (i % 7 + 1) for i in range(READ_BATCH * 2 + 22)]
        for payload in payloads:
            conn.send(PEER, payload)
        got = []
        async with asyncio.timeout(5):
            while len(got) < len(payloads):
                got.append((await conn.recv()).data)
        assert got == payloads
        assert conn.counters.sent_indications > 0
        assert conn.alive
    assert not server.model.allocations  # released with LIFETIME 0


async def test_data_sent_from_on_data_during_a_drain_is_all_written_in_order(
    served: tuple[ModelServer, dict[TurnTransport, int]],
) -> None:
    # Each echo sends the next datagram from inside the read callback: those writes are held
    # and go out in batches (HOLD_MAX at a time, and at the end of each drain).
    _, ports = served
    total, window = 600, HOLD_MAX * 3
    got: list[bytes] = []
    done = asyncio.Event()
    sent = window

    def on_data(_peer: Address, data: bytes) -> None:
        nonlocal sent
        got.append(data)
        if sent < total:
            conn.send(PEER, sent.to_bytes(4, "big") * 50)
            sent += 1
        if len(got) == total:
            done.set()

    address = TurnServerAddress("127.0.0.1", ports[TurnTransport.UDP], TurnTransport.UDP)
    async with TurnConnection(address, GOOD, on_data=on_data) as conn:
        conn.open_peer(PEER)
        await conn.peer_ready(PEER)
        for i in range(window):
            conn.send(PEER, i.to_bytes(4, "big") * 50)
        async with asyncio.timeout(10):
            await done.wait()
    assert got == [i.to_bytes(4, "big") * 50 for i in range(total)]
    counters = conn.counters
    assert counters.sent_channel_data + counters.sent_indications == total
    assert counters.sent_channel_data > 0 and counters.received_channel_data > 0


async def test_wrong_password_raises_the_typed_auth_error(
    served: tuple[ModelServer, dict[TurnTransport, int]],
) -> None:
    _, ports = served
    address = TurnServerAddress("127.0.0.1", ports[TurnTransport.UDP], TurnTransport.UDP)
    with pytest.raises(TurnAuthError):
        async with TurnConnection(address, Credentials("alice", "nope")):
            pass


async def test_nobody_listening_is_unreachable() -> None:
    closed = TurnServerAddress("127.0.0.1", 9, TurnTransport.TCP)
    with pytest.raises(TurnUnreachableError):
        async with TurnConnection(closed, GOOD):
            pass
    silent = TurnServerAddress("127.0.0.1", 9, TurnTransport.UDP)
    with pytest.raises(TurnUnreachableError):
        async with TurnConnection(silent, GOOD, timing=Timing(rto=0.05, rc=2, rm=2)):
            pass


async def test_a_refused_udp_port_is_unreachable_at_once() -> None:
    # Default timing would wait 39.5 s: the ICMP port unreachable read from the connected
    # socket ends the Allocate instead.
    with pytest.raises(TurnUnreachableError):
        async with asyncio.timeout(10):
            async with TurnConnection(TurnServerAddress("127.0.0.1", 9, TurnTransport.UDP), GOOD):
                pass


async def test_a_closed_stream_is_a_lost_allocation(
    served: tuple[ModelServer, dict[TurnTransport, int]],
) -> None:
    server, ports = served
    address = TurnServerAddress("127.0.0.1", ports[TurnTransport.TCP], TurnTransport.TCP)
    async with TurnConnection(address, GOOD) as conn:
        for writer in list(server.writers.values()):
            writer.close()
        assert conn.lost is not None
        async with asyncio.timeout(5):
            error = await conn.lost
        assert isinstance(error, TurnError)
        assert not conn.alive


def _udp(port: int) -> TurnServerAddress:
    return TurnServerAddress("127.0.0.1", port, TurnTransport.UDP)


async def test_the_relay_skips_a_dead_server_and_uses_the_next(
    served: tuple[ModelServer, dict[TurnTransport, int]],
) -> None:
    server, ports = served
    relays: list[Address | None] = []
    async with RelayAllocation(
        [_udp(9), _udp(ports[TurnTransport.UDP])], lambda: GOOD, on_relay=relays.append
    ) as relay:
        assert relay.relayed is not None and relays == [relay.relayed]
        assert relay.counters.failed_attempts == 1
        assert relay.counters.servers_used == [str(_udp(ports[TurnTransport.UDP]))]
    assert not server.model.allocations


async def test_a_lost_allocation_is_made_again_with_its_peers(
    served: tuple[ModelServer, dict[TurnTransport, int]],
) -> None:
    server, ports = served
    relays: list[Address | None] = []
    changed = asyncio.Event()

    def on_relay(address: Address | None) -> None:
        relays.append(address)
        changed.set()

    async with RelayAllocation([_udp(ports[TurnTransport.UDP])], lambda: GOOD, on_relay=on_relay) as relay:
        relay.open_peer(PEER)
        await relay.peer_ready(PEER)
        first = relay.relayed
        changed.clear()
        server.model.forget_everything()  # a server restart
        assert relay.connection is not None
        relay.connection.refresh()  # the next refresh finds out
        async with asyncio.timeout(5):
            while relay.counters.allocations < 2:
                await changed.wait()
                changed.clear()
        second = relay.relayed
        assert second is not None and second != first
        assert relays == [first, None, second]
        await relay.peer_ready(PEER)  # restored on the new allocation
        (alloc,) = server.model.allocations.values()
        assert PEER[0] in alloc.permissions
        relay.send(PEER, b"after")
        async with asyncio.timeout(5):
            assert relay.connection is not None
            assert (await relay.connection.recv()).data == b"after"
        assert relay.counters.losses == 1


async def test_a_server_that_falls_silent_moves_the_relay_to_the_next_one(
    served: tuple[ModelServer, dict[TurnTransport, int]], tmp_path: Path
) -> None:
    """The first server stops answering on UDP (no ICMP, as a SIGKILLed coturn behind a router):
    the relay's sends go unanswered, its probe too, and it moves to the second server at once
    (not at the next refresh, minutes away), with the peer's permission re-made there."""
    first, ports = served
    (tmp_path / "second").mkdir()
    async with serve_model(tmp_path / "second") as (second, second_ports):
        relays: list[Address | None] = []
        quick = Liveness(server_silence_s=0.3, probe_interval_s=0.1, idle_probe_s=60.0)
        servers = [_udp(ports[TurnTransport.UDP]), _udp(second_ports[TurnTransport.UDP])]
        async with RelayAllocation(servers, lambda: GOOD, on_relay=relays.append, liveness=quick) as relay:
            relay.open_peer(PEER)
            await relay.peer_ready(PEER)
            first.silent = True
            async with asyncio.timeout(30):
                while relay.counters.allocations < 2 or relay.relayed is None:
                    relay.send(PEER, b"into the void")
                    await asyncio.sleep(0.02)
            assert relay.counters.losses == 1
            assert isinstance(relay.last_error, TurnUnreachableError)
            assert relay.counters.servers_used == [str(s) for s in servers]
            assert relays == [relays[0], None, relay.relayed]
            await relay.peer_ready(PEER)  # re-opened on the second server
            (alloc,) = second.model.allocations.values()
            assert PEER[0] in alloc.permissions
            relay.send(PEER, b"after")
            assert relay.connection is not None
            async with asyncio.timeout(5):
                assert (await relay.connection.recv()).data == b"after"


async def test_the_relay_transport_moves_its_peers_paths_with_the_allocation(
    served: tuple[ModelServer, dict[TurnTransport, int]], tmp_path: Path
) -> None:
    """When the relay moves to another server, each proven peer's path is announced again
    (PeerConnected at the endpoint via the new server), so the coordinator's path follows it
    with fresh breakers instead of staying failed on the dead server."""
    first, ports = served
    (tmp_path / "second").mkdir()
    async with serve_model(tmp_path / "second") as (_, second_ports):
        servers = [_udp(ports[TurnTransport.UDP]), _udp(second_ports[TurnTransport.UDP])]
        quick = Liveness(server_silence_s=0.3, probe_interval_s=0.1, idle_probe_s=60.0)
        alice, bob = _identity(), _identity()
        async with (
            TurnRelayTransport(servers, lambda: GOOD, alice, _dev(), liveness=quick) as a,
            TurnRelayTransport(servers, lambda: GOOD, bob, _dev(), liveness=quick) as b,
        ):
            assert a.relayed is not None and b.relayed is not None
            a_at = RelayEndpoint(IpEndpoint(*ports_endpoint(ports)), IpEndpoint(*a.relayed))
            b_at = RelayEndpoint(IpEndpoint(*ports_endpoint(ports)), IpEndpoint(*b.relayed))
            await asyncio.gather(a.connect(bob.peer_id, b_at), b.connect(alice.peer_id, a_at))
            events = a.events()
            assert await anext(events) == PeerConnected(bob.peer_id, b_at)
            first.silent = True
            async with asyncio.timeout(30):
                while a.relay.counters.allocations < 2:
                    await a.send(bob.peer_id, Frame(1, b"into the void"))
                    await asyncio.sleep(0.02)
                moved = await anext(events)
            via_second = RelayEndpoint(IpEndpoint(*ports_endpoint(second_ports)), b_at.peer)
            assert moved == PeerConnected(bob.peer_id, via_second)


async def test_a_relay_with_no_working_server_raises_the_last_error() -> None:
    with pytest.raises(TurnUnreachableError):
        async with RelayAllocation([_udp(9), _udp(10)], lambda: GOOD):
            pass


async def test_the_relay_transport_carries_frames_between_two_nodes(
    served: tuple[ModelServer, dict[TurnTransport, int]],
) -> None:
    _, ports = served
    servers = [_udp(ports[TurnTransport.UDP])]
    alice, bob = _identity(), _identity()
    peer_a, peer_b = alice.peer_id, bob.peer_id
    async with (
        TurnRelayTransport(servers, lambda: GOOD, alice, _dev()) as a,
        TurnRelayTransport(servers, lambda: GOOD, bob, _dev()) as b,
    ):
        assert a.relayed is not None and b.relayed is not None
        a_at = RelayEndpoint(IpEndpoint(*ports_endpoint(ports)), IpEndpoint(*a.relayed))
        b_at = RelayEndpoint(IpEndpoint(*ports_endpoint(ports)), IpEndpoint(*b.relayed))
        await asyncio.gather(a.connect(peer_b, b_at), b.connect(peer_a, a_at))
        events_b = b.events()
        assert await anext(events_b) == PeerConnected(peer_a, RelayEndpoint(b_at.server, a_at.peer))
        for i in range(20):
            await a.send(peer_b, Frame(i, b"move %d" % i, Priority.HIGH))
        got = []
        async with asyncio.timeout(5):
            while len(got) < 20:
                event = await anext(events_b)
                assert isinstance(event, MessageReceived) and event.peer == peer_a
                got.append(event.frame)
        assert got == [Frame(i, b"move %d" % i, Priority.HIGH) for i in range(20)]
        with pytest.raises(TransportUsageError) as too_big:
            await a.send(peer_b, Frame(99, b"x" * (a.capabilities.max_message_size + 1)))
        assert too_big.value.reason is TransportReason.MESSAGE_TOO_LARGE
        with pytest.raises(TransportUsageError):
            await a.send("nobody", Frame(1, b"x"))
        # A datagram that is not a session message is a counted drop, not an event.
        assert a.relay.connection is not None
        a.relay.connection.send(b.relayed, b"garbage")
        await a.send(peer_b, Frame(100, b"after"))
        async with asyncio.timeout(5):
            event = await anext(events_b)
        assert isinstance(event, MessageReceived) and event.frame.message_id == 100
        assert b.health().malformed_dropped == 1
        assert b.health().messages_received == 21 and a.health().messages_sent == 21
        assert a.health().state is TransportState.READY and a.health().connections == 1
        await b.disconnect(peer_a)
        assert await anext(events_b) == PeerDisconnected(peer_a, DisconnectReason.CLOSED_LOCALLY)
    assert [e async for e in a.events()][-1] == PeerDisconnected(peer_b, DisconnectReason.SHUTDOWN)


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def _dev() -> SessionVerifier:
    return SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))


def ports_endpoint(ports: dict[TurnTransport, int]) -> tuple[ipaddress.IPv4Address, int]:
    return ipaddress.IPv4Address("127.0.0.1"), ports[TurnTransport.UDP]


@pytest.mark.parametrize("transport", [TurnTransport.UDP, TurnTransport.TCP], ids=lambda t: t.value)
async def test_a_lost_local_address_remakes_the_allocation_at_once(
    served: tuple[ModelServer, dict[TurnTransport, int]], transport: TurnTransport
) -> None:
    _, ports = served
    relays: list[Address | None] = []
    changed = asyncio.Event()

    def on_relay(address: Address | None) -> None:
        relays.append(address)
        changed.set()

    server = TurnServerAddress("127.0.0.1", ports[transport], transport)
    async with RelayAllocation([server], lambda: GOOD, on_relay=on_relay) as relay:
        relay.open_peer(PEER)
        await relay.peer_ready(PEER)
        assert relay.connection is not None
        assert relay.connection.local_ip == ipaddress.ip_address("127.0.0.1")
        # Another address going changes nothing.
        assert not relay.network_down({ipaddress.ip_address("192.0.2.9")})
        assert relay.counters.losses == 0
        changed.clear()
        assert relay.network_down({ipaddress.ip_address("127.0.0.1")})
        async with asyncio.timeout(5):
            while relay.counters.allocations < 2:
                await changed.wait()
                changed.clear()
        assert relay.counters.losses == 1
        assert relays[1] is None and relays[-1] is not None
        await relay.peer_ready(PEER)  # its peers restored on the new allocation


async def test_the_relay_transport_probes_its_peers_by_itself(
    served: tuple[ModelServer, dict[TurnTransport, int]],
) -> None:
    """Health over TURN is measured as on UDP: each peer probed every health_check_interval on
    the path's own timer, so health() has an RTT and a loss figure without anyone calling ping."""
    _, ports = served
    servers = [_udp(ports[TurnTransport.UDP])]
    alice, bob = _identity(), _identity()
    often = RelaySettings(health_check_interval=0.05)
    async with (
        TurnRelayTransport(servers, lambda: GOOD, alice, _dev(), settings=often) as a,
        TurnRelayTransport(servers, lambda: GOOD, bob, _dev(), settings=often) as b,
    ):
        assert a.relayed is not None and b.relayed is not None
        a_at = RelayEndpoint(IpEndpoint(*ports_endpoint(ports)), IpEndpoint(*a.relayed))
        b_at = RelayEndpoint(IpEndpoint(*ports_endpoint(ports)), IpEndpoint(*b.relayed))
        await asyncio.gather(a.connect(bob.peer_id, b_at), b.connect(alice.peer_id, a_at))
        await eventually(lambda: a.health().loss is not None and b.health().loss is not None)
        health = a.health()
        assert health.rtt_ms is not None and health.loss == 0.0
