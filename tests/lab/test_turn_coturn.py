"""The TURN client against real coturn from behind every NAT behaviour of the lab."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace

import pytest

from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from node.proto.turn.client import TurnTiming
from node.proto.turn.errors import TurnAuthError, TurnRefusedError, TurnUnreachableError
from node.proto.turn.events import Address
from node.proto.turn.uri import TurnTransport
from node.transports.turn.connection import TurnConnection
from tests.lab.conftest import LabFactory
from tests.lab.turn_helpers import connection, coturn, echo_peer, short_lifetimes

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("transport", list(TurnTransport), ids=lambda t: t.value)
@pytest.mark.parametrize("behaviour", list(NatBehaviour), ids=lambda b: b.value)
async def test_allocation_from_behind_each_nat(
    nat_lab: Lab, behaviour: NatBehaviour, transport: TurnTransport
) -> None:
    nat_lab.set_nat("A", behaviour)
    peer, echo, echo_transport = await echo_peer(nat_lab, "O1")
    try:
        if behaviour is NatBehaviour.UDP_BLOCKED and transport is TurnTransport.UDP:
            with pytest.raises(TurnUnreachableError):
                async with connection(nat_lab, "A1", transport):
                    pass
            return
        async with connection(nat_lab, "A1", transport) as conn:
            assert str(conn.relayed[0]) == str(coturn(nat_lab).primary)
            expected = (
                nat_lab.host("A1").address
                if behaviour is NatBehaviour.OPEN
                else nat_lab.topology.router("A").wan
            )
            assert conn.mapped is not None and str(conn.mapped[0]) == str(expected)
            conn.send(peer, b"through the relay")
            async with asyncio.timeout(5):
                answer = await conn.recv()
            assert (answer.peer, answer.data) == (peer, b"through the relay")
    finally:
        echo_transport.close()
    assert echo.count == 1


async def test_wrong_password_is_an_auth_error_after_two_allocate_requests(nat_lab: Lab) -> None:
    nat_lab.set_nat("A", NatBehaviour.SYMMETRIC)
    conn = connection(nat_lab, "A1", TurnTransport.UDP, password="not the password")
    with pytest.raises(TurnAuthError):
        async with asyncio.timeout(5), conn:
            pass
    assert conn.counters.allocate_requests == 2  # no retransmission was needed: an instant answer


async def test_quota_is_a_refusal_with_486(lab_factory: LabFactory) -> None:
    lab = lab_factory()
    lab.start_coturn(replace(coturn(lab), user_quota=1))
    async with connection(lab, "A1", TurnTransport.UDP):
        with pytest.raises(TurnRefusedError) as refused:
            async with connection(lab, "B1", TurnTransport.UDP):
                pass
    assert refused.value.code == 486


def _payload(seq: int) -> bytes:
    head = seq.to_bytes(4, "big")
    return head + hashlib.sha256(head).digest() * 6 + b"\x00" * 4  # 200 bytes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", [TurnTransport.UDP, TurnTransport.TCP], ids=lambda t: t.value)
async def test_two_symmetric_hosts_exchange_10000_datagrams_through_relays(
    lab_factory: LabFactory, transport: TurnTransport
) -> None:
    lab = lab_factory(nats=(("A", NatBehaviour.SYMMETRIC), ("B", NatBehaviour.SYMMETRIC)))
    lifetime = 3
    short_lifetimes(lab, lifetime)
    total, window = 10_000, 64
    returned: dict[int, int] = {}
    corrupt = 0
    slots = asyncio.Semaphore(window)

    def on_a(peer: Address, data: bytes) -> None:
        nonlocal corrupt
        seq = int.from_bytes(data[:4], "big")
        if data != _payload(seq):
            corrupt += 1
        returned[seq] = returned.get(seq, 0) + 1
        slots.release()

    b_conn: list[TurnConnection] = []

    def on_b(peer: Address, data: bytes) -> None:
        b_conn[0].send(peer, data)  # echo back through B's relay

    timing = TurnTiming(permission_lifetime=lifetime, channel_lifetime=lifetime, idle_after=lifetime)
    async with (
        connection(lab, "A1", transport, on_data=on_a, turn_timing=timing) as a,
        # B relays in Send and Data indications only, A moves to a channel: both exercised.
        connection(lab, "B1", transport, on_data=on_b, turn_timing=timing, use_channels=False) as b,
    ):
        b_conn.append(b)
        b.open_peer(a.relayed)  # B lets A's relay in (the relayed addresses are swapped by hand)
        async with asyncio.timeout(5):
            await b.peer_ready(a.relayed)
        async with asyncio.timeout(90):
            for seq in range(total):
                await slots.acquire()
                a.send(b.relayed, _payload(seq))
                if seq % 1000 == 999:
                    await asyncio.sleep(lifetime / 4)  # paced: the run spans several refreshes
            for _ in range(window):
                await slots.acquire()
        assert a.alive and b.alive
        lifetimes = (a.lifetime, b.lifetime)
        counters_a, counters_b = a.counters, b.counters
    assert corrupt == 0
    assert sorted(returned) == list(range(total)) and set(returned.values()) == {1}
    assert counters_a.sent_indications > 0 and counters_a.sent_channel_data > 0
    assert counters_a.received_channel_data > 0
    assert counters_b.sent_indications == total and counters_b.received_indications == total
    assert counters_a.refreshes > 0 and counters_b.refreshes > 0, lifetimes
    assert counters_a.channel_requests > 1  # the channel (and its permission) was refreshed
    assert counters_a.stale_nonces + counters_b.stale_nonces > 0  # 438s met on the way
