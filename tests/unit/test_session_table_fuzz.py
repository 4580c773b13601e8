"""Arbitrary datagrams from arbitrary addresses never raise out of the table and never disturb an
established pair: its traffic still flows both ways, to the same addresses."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.proto.session.messages import INIT_SIZE, MessageType
from node.proto.session.table_types import PeerGone, PeerRoamed
from tests.unit.table_harness import Addr, addr, connected


def _captured() -> list[bytes]:
    net, alice, bob = connected(salt=1)  # the same peers, other keys: well formed, never authentic
    alice.table.send(bob.peer_id, b"payload", net.now)
    bob.table.send(alice.peer_id, b"answer", net.now)
    net.run_until(net.now + 1.0)
    return [w[4] for w in net.wire]


CAPTURED = _captured()
SOURCES = [addr(1001), addr(2002), addr(6666), addr(7777), ("::1", 1001)]


@st.composite
def hostile(draw: st.DrawFn) -> bytes | int:
    """Real datagrams replayed, mutated or cut; noise behind a valid type word; plain noise.

    An int is a replay of that datagram of the pair's own wire (modulo its length)."""
    choice = draw(st.integers(0, 5))
    if choice == 5:
        return draw(st.integers(0, 1000))
    if choice == 0:
        return draw(st.binary(max_size=300))
    if choice == 1:
        kind = draw(st.sampled_from(list(MessageType)))
        size = INIT_SIZE - 4 if kind is MessageType.INIT else draw(st.integers(0, 300))
        return kind.to_bytes(4, "little") + draw(st.binary(min_size=size, max_size=size))
    data = bytearray(draw(st.sampled_from(CAPTURED)))
    if choice == 2:
        return bytes(data)
    if choice == 3:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return bytes(data)
    return bytes(data[: draw(st.integers(0, len(data)))]) + draw(st.binary(max_size=8))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SOURCES), st.booleans(), hostile()), min_size=1, max_size=30))
def test_hostile_datagrams_never_raise_and_never_disturb_a_pair(
    attacks: list[tuple[Addr, bool, bytes | int]],
) -> None:
    net, alice, bob = connected()
    alice.table.send(bob.peer_id, b"before", net.now)
    bob.table.send(alice.peer_id, b"before", net.now)
    net.run_until(net.now + 1.0)
    for source, to_bob, attack in attacks:
        data = net.wire[attack % len(net.wire)][4] if isinstance(attack, int) else attack
        net.inject(source, net.public["bob" if to_bob else "alice"], data)
    net.run_until(net.now + 1.0)
    alice.table.send(bob.peer_id, b"after", net.now)
    bob.table.send(alice.peer_id, b"still", net.now)
    net.run_until(net.now + 1.0)
    assert bob.received() == [b"before", b"after"] and alice.received() == [b"before", b"still"]
    assert bob.table.peer_address(alice.peer_id) == addr(1001)
    assert alice.table.peer_address(bob.peer_id) == addr(2002)
    for node in (alice, bob):
        assert not node.of_type(PeerRoamed) and not node.of_type(PeerGone)
