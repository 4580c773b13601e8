"""One peer reaching us over two live paths at once: its own address and its TURN relay's.

A ``udp://`` connect also dials the same address through the node's own relay (kind ``turn``),
so the peer's UDP socket holds two sessions with it: one from its direct address, one from its
relayed address. The relayed one must not replace the direct one while that is alive.
"""

from __future__ import annotations

from node.proto.session.table_types import PeerEstablished, PeerRoamed, TableCount
from tests.unit.table_harness import addr, connected

RELAYED = 3003  # the peer's relayed address (its TURN allocation)


def test_a_relayed_session_beside_a_live_direct_one_does_not_take_the_peer_over() -> None:
    net, alice, bob = connected()
    # Alice's TURN transport: her identity, its own session table, datagrams from the relay.
    relayed = net.add("alice-relayed", seed=11, port=RELAYED, identity=alice.identity)
    relayed.table.connect(bob.peer_id, net.public["bob"], net.now)
    net.run_until(net.now + 1.0)
    assert bob.table.status().sessions == 2  # both paths are up at Bob
    for t in range(20):  # both of Alice's paths keep talking, as the coordinator's do
        alice.table.send(bob.peer_id, b"direct %d" % t, net.now)
        relayed.table.send(bob.peer_id, b"relayed %d" % t, net.now)
        bob.table.send(alice.peer_id, b"to alice %d" % t, net.now)
        net.run_until(net.now + 0.5)
    # Bob answers on the direct path: once a datagram of Alice's proved it alive (the first
    # reply left before any did, on the newest session), his replies reach her own socket.
    assert alice.received() == [b"to alice %d" % t for t in range(1, 20)]
    assert relayed.received() == [b"to alice 0"]
    assert bob.table.peer_address(alice.peer_id) == addr(1001)
    # The two sessions never dragged each other's address back and forth, nor flapped: the
    # relayed one was preferred once (confirmed), the direct one again at its next datagram.
    assert not bob.of_type(PeerRoamed)
    assert bob.table.counts[TableCount.ROAMED] == 0
    assert [e.addr for e in bob.of_type(PeerEstablished)] == [addr(1001), addr(RELAYED), addr(1001)]
    assert sorted(bob.received()) == sorted(
        [b"direct %d" % t for t in range(20)] + [b"relayed %d" % t for t in range(20)]
    )


def test_when_the_direct_path_dies_the_relayed_session_carries_on() -> None:
    net, alice, bob = connected()
    relayed = net.add("alice-relayed", seed=11, port=RELAYED, identity=alice.identity)
    relayed.table.connect(bob.peer_id, net.public["bob"], net.now)
    net.run_until(net.now + 1.0)
    del net.nodes["alice"], net.public["alice"]  # the direct path is gone (her uplink died)
    for t in range(80):  # the relayed path keeps talking for 40 s: past the consent timeout
        relayed.table.send(bob.peer_id, b"relayed %d" % t, net.now)
        net.run_until(net.now + 0.5)
    bob.table.send(alice.peer_id, b"still there?", net.now)
    net.run_until(net.now + 1.0)
    assert relayed.received()[-1:] == [b"still there?"]
    assert bob.table.peer_address(alice.peer_id) == addr(RELAYED)
