"""The session table: many secure sessions over one socket, in memory and virtual time."""

from __future__ import annotations

import itertools
import random

import pytest

from node.proto.session.errors import HandshakeFailure
from node.proto.session.messages import INIT_SIZE, MessageType
from node.proto.session.table_types import (
    DialFailed,
    GoneReason,
    PeerEstablished,
    PeerGone,
    PeerRoamed,
    TableConfig,
    TableCount,
    TableError,
    TableProblem,
)
from node.proto.session.trust import PeerVerificationError, VerifyFailure
from node.proto.vocabulary import DisconnectReason
from tests.unit.session_harness import make_identity
from tests.unit.table_harness import Addr, Net, addr, connected, pair

FORGER = addr(6666)


def _transport_from(net: Net, name: str) -> list[bytes]:
    return [d for _, _, d in net.sent_by(name) if d[0] == MessageType.TRANSPORT]


def test_handshake_then_data_both_ways() -> None:
    net, alice, bob = connected()
    assert alice.of_type(PeerEstablished) == [PeerEstablished(bob.peer_id, addr(2002), initiator=True)]
    assert bob.of_type(PeerEstablished) == [PeerEstablished(alice.peer_id, addr(1001), initiator=False)]
    for i in range(5):
        alice.table.send(bob.peer_id, b"a%d" % i, net.now)
        bob.table.send(alice.peer_id, b"b%d" % i, net.now)
    net.run_until(net.now + 1.0)
    assert bob.received() == [b"a%d" % i for i in range(5)]
    assert alice.received() == [b"b%d" % i for i in range(5)]
    assert alice.table.status().sessions == bob.table.status().sessions == 1
    assert alice.table.counts[TableCount.DIALLED] == 1
    assert bob.table.counts[TableCount.INITS_ACCEPTED] == 1


def test_send_without_a_session_is_a_typed_error() -> None:
    net, alice, bob = pair()
    with pytest.raises(TableError) as caught:
        alice.table.send(bob.peer_id, b"x", net.now)
    assert caught.value.reason is TableProblem.NO_SESSION


def test_dialling_the_wrong_peer_is_refused_with_a_typed_reason() -> None:
    net, alice, bob = pair()
    wanted = make_identity(99).peer_id
    alice.table.connect(wanted, net.public["bob"], net.now)
    net.run_until(net.now + 1.0)
    [failed] = alice.of_type(DialFailed)
    assert isinstance(failed, DialFailed)
    assert failed.expected_peer_id == wanted
    assert failed.reason is HandshakeFailure.REFUSED_BY_TRUST
    assert isinstance(failed.error, PeerVerificationError)
    assert failed.error.reason is VerifyFailure.WRONG_PEER
    assert not alice.of_type(PeerEstablished) and not bob.of_type(PeerEstablished)
    assert alice.table.status().sessions == 0
    net.run_until(net.now + 60.0)  # bob's half-open responder session times out and goes
    assert bob.table.status().sessions == 0


def test_a_silent_address_fails_the_dial_with_timeout() -> None:
    net, alice, _ = pair()
    alice.table.connect(make_identity(2).peer_id, addr(4444), net.now)  # nobody there
    net.run_until(net.now + 60.0)
    [failed] = alice.of_type(DialFailed)
    assert isinstance(failed, DialFailed) and failed.reason is HandshakeFailure.TIMEOUT
    assert alice.table.get_timer() is None


def test_abandoning_an_address_fails_its_dials_now_and_leaves_others() -> None:
    net, alice, _ = pair()
    gone, other = make_identity(2).peer_id, make_identity(3).peer_id
    alice.table.connect(gone, addr(4444), net.now)  # nobody answers at either
    alice.table.connect(other, addr(5555), net.now)
    net.run_until(net.now + 0.1)
    alice.table.abandon(lambda at: at == addr(4444), net.now)
    net.run_until(net.now + 0.001)  # the harness collects the table's events
    [failed] = alice.of_type(DialFailed)
    assert isinstance(failed, DialFailed) and failed.expected_peer_id == gone
    assert failed.reason is HandshakeFailure.PATH_GONE and failed.addr == addr(4444)
    assert alice.table.status().sessions == 1  # the dial elsewhere goes on
    sent_before = len([d for d in net.sent_by("alice") if d[1] == addr(4444)])
    net.run_until(net.now + 60.0)
    assert len([d for d in net.sent_by("alice") if d[1] == addr(4444)]) == sent_before  # no retries
    late = alice.of_type(DialFailed)
    assert [f.expected_peer_id for f in late if isinstance(f, DialFailed)] == [gone, other]


def test_roaming_moves_the_peer_and_replies_follow() -> None:
    net, alice, bob = connected()
    net.rebind("alice", 1077)  # alice's NAT gives her a new mapping mid-session
    alice.table.send(bob.peer_id, b"from the new port", net.now)
    net.run_until(net.now + 1.0)
    assert bob.received() == [b"from the new port"]
    assert bob.of_type(PeerRoamed) == [PeerRoamed(alice.peer_id, addr(1001), addr(1077))]
    assert bob.table.peer_address(alice.peer_id) == addr(1077)
    assert bob.table.counts[TableCount.ROAMED] == 1
    bob.table.send(alice.peer_id, b"reply", net.now)
    net.run_until(net.now + 1.0)
    assert alice.received() == [b"reply"]  # delivered: sent to 1077, as 1001 no longer reaches her
    assert net.sent_by("bob")[-1][1] == addr(1077)


def test_a_replayed_datagram_from_a_third_address_does_not_move_the_peer() -> None:
    net, alice, bob = connected()
    alice.table.send(bob.peer_id, b"once", net.now)
    net.run_until(net.now + 1.0)
    captured = _transport_from(net, "alice")[-1]
    net.inject(FORGER, net.public["bob"], captured)
    net.run_until(net.now + 1.0)
    assert bob.received() == [b"once"]
    assert bob.table.peer_address(alice.peer_id) == addr(1001)
    assert not bob.of_type(PeerRoamed)
    assert bob.table.counts[TableCount.UNAUTHENTICATED] == 1
    assert bob.table.counts[TableCount.ROAMED] == 0


def test_garbage_with_a_valid_index_from_a_third_address_does_not_move_the_peer() -> None:
    net, alice, bob = connected()
    alice.table.send(bob.peer_id, b"real", net.now)
    net.run_until(net.now + 1.0)
    header = _transport_from(net, "alice")[-1][:16]  # type, bob's receiver index, a counter
    rng = random.Random(5)
    for counter in range(20):
        forged = header[:8] + (1000 + counter).to_bytes(8, "little") + rng.randbytes(40)
        net.inject(FORGER, net.public["bob"], forged)
    net.run_until(net.now + 1.0)
    assert bob.table.peer_address(alice.peer_id) == addr(1001)
    assert bob.table.counts[TableCount.UNAUTHENTICATED] == 20
    alice.table.send(bob.peer_id, b"still here", net.now)
    bob.table.send(alice.peer_id, b"and here", net.now)
    net.run_until(net.now + 1.0)
    assert bob.received() == [b"real", b"still here"] and alice.received() == [b"and here"]


def test_unknown_index_and_garbage_are_counted_without_reply() -> None:
    net, _, bob = connected()
    before = len(net.wire)
    unknown = MessageType.TRANSPORT.to_bytes(4, "little") + b"\x99\x99\x99\x99" + bytes(40)
    for data in (unknown, b"", b"\x00", b"\x07\x00\x00\x00junk", MessageType.CONFIRM.to_bytes(4, "little")):
        net.inject(FORGER, net.public["bob"], data)
    net.inject(FORGER, net.public["bob"], MessageType.INIT.to_bytes(4, "little") + bytes(10))  # not INIT_SIZE
    net.run_until(net.now + 0.5)
    assert bob.table.counts[TableCount.UNKNOWN_INDEX] == 1
    assert bob.table.counts[TableCount.MALFORMED] == 5
    assert not [w for w in net.wire[before:] if w[3] == FORGER]
    assert bob.table.status().sessions == 1


def test_a_low_order_init_makes_no_session() -> None:
    net, _, bob = pair()
    init = (MessageType.INIT.to_bytes(4, "little") + bytes(4) + bytes(32)).ljust(INIT_SIZE, b"\0")
    net.inject(FORGER, net.public["bob"], init)
    net.run_until(1.0)
    assert bob.table.status().sessions == 0
    assert bob.table.counts[TableCount.MALFORMED] == 1


def test_capacity_refuses_new_inits_and_dials() -> None:
    config = TableConfig(max_sessions=2)
    net, alice, bob = pair(config)
    carol = net.add("carol", seed=3, port=3003, config=config)
    dave = net.add("dave", seed=4, port=4004, config=config)
    for node in (alice, carol, dave):
        node.table.connect(bob.peer_id, net.public["bob"], net.now)
        net.run_until(net.now + 1.0)
    assert [len(n.of_type(PeerEstablished)) for n in (alice, carol, dave)] == [1, 1, 0]
    assert bob.table.status().sessions == 2
    assert bob.table.counts[TableCount.REFUSED_AT_CAPACITY] >= 1
    with pytest.raises(TableError) as caught:
        bob.table.connect(dave.peer_id, net.public["dave"], net.now)
    assert caught.value.reason is TableProblem.AT_CAPACITY
    net.run_until(net.now + 60.0)
    [failed] = dave.of_type(DialFailed)
    assert isinstance(failed, DialFailed) and failed.reason is HandshakeFailure.TIMEOUT


def test_a_duplicated_init_makes_one_responder_session() -> None:
    net, alice, bob = pair(tap=lambda name, data: [0.0, 0.001] if data[0] == MessageType.INIT else [0.0])
    alice.table.connect(bob.peer_id, net.public["bob"], net.now)
    net.run_until(1.0)
    assert bob.table.counts[TableCount.INITS_ACCEPTED] == 1
    assert bob.table.status().sessions == 1
    assert len(alice.of_type(PeerEstablished)) == len(bob.of_type(PeerEstablished)) == 1


def test_a_lost_response_is_sent_again_to_the_retransmitted_inits_source() -> None:
    lost: list[bytes] = []

    def tap(name: str, data: bytes) -> list[float]:
        if data[0] == MessageType.RESPONSE and not lost:
            lost.append(data)
            return []
        return [0.0]

    net, alice, bob = pair(tap=tap)
    alice.table.connect(bob.peer_id, net.public["bob"], net.now)
    net.run_until(0.1)
    net.rebind("alice", 1055)  # and her mapping changes before she retransmits
    net.run_until(5.0)
    assert bob.table.counts[TableCount.INITS_ACCEPTED] == 1
    assert [len(n.of_type(PeerEstablished)) for n in (alice, bob)] == [1, 1]
    assert bob.table.peer_address(alice.peer_id) == addr(1055)


def test_lossy_reordering_duplicating_wire_still_connects_and_delivers() -> None:
    rng = random.Random(7)

    def tap(name: str, data: bytes) -> list[float]:
        roll = rng.random()
        if roll < 0.2:
            return []
        if roll < 0.35:
            return [rng.random() * 0.05, rng.random() * 0.05]
        return [rng.random() * 0.05]

    net, alice, bob = pair(tap=tap)
    alice.table.connect(bob.peer_id, net.public["bob"], net.now)
    net.run_until(30.0)
    assert alice.table.peer_address(bob.peer_id) == addr(2002)
    sent = [b"m%d" % i for i in range(200)]
    for payload in sent:
        alice.table.send(bob.peer_id, payload, net.now)
        net.run_until(net.now + 0.001)
    net.run_until(net.now + 1.0)
    got = bob.received()
    assert len(got) == len(set(got)) and set(got) <= set(sent)  # never duplicated, never forged
    assert len(got) > 100  # 20 % loss
    assert got != sorted(got, key=lambda p: int(p[1:]))  # and it really was reordered


def test_simultaneous_dials_end_in_one_session_each() -> None:
    net, alice, bob = pair()
    alice.table.connect(bob.peer_id, net.public["bob"], net.now)
    bob.table.connect(alice.peer_id, net.public["alice"], net.now)
    net.run_until(2.0)
    assert alice.table.status().sessions == bob.table.status().sessions == 1
    alice.table.send(bob.peer_id, b"hi bob", net.now)
    bob.table.send(alice.peer_id, b"hi alice", net.now)
    net.run_until(3.0)
    assert bob.received() == [b"hi bob"] and alice.received() == [b"hi alice"]


@pytest.mark.parametrize("salt", range(4))  # either side's ephemeral wins the glare
def test_simultaneous_dials_when_one_init_leaves_through_another_mapping(salt: int) -> None:
    """Bob's INIT leaves through another NAT mapping than the one Alice dials: one handshake wins,
    and the other side's redundant dial ends quietly, not as a DialFailed."""
    net, alice, bob = pair(salt=salt)
    net.source = lambda name, data: addr(2003) if name == "bob" and data[0] == MessageType.INIT else None
    net.aliases[addr(2003)] = "bob"
    alice.table.connect(bob.peer_id, net.public["bob"], net.now)
    bob.table.connect(alice.peer_id, net.public["alice"], net.now)
    net.run_until(60.0)
    for node in (alice, bob):
        assert node.table.status().sessions == 1
        assert not node.of_type(DialFailed) and not node.of_type(PeerGone)
    alice.table.send(bob.peer_id, b"hi bob", net.now)
    bob.table.send(alice.peer_id, b"hi alice", net.now)
    net.run_until(61.0)
    assert bob.received() == [b"hi bob"] and alice.received() == [b"hi alice"]


def test_simultaneous_dials_through_two_mappings_each_keep_both_sessions_alive() -> None:
    """Both INITs leave through second mappings: two handshakes complete, each side sends on its
    newest session and receives on the other; the peer's consent counts every session of it."""
    net, alice, bob = pair()
    second = {"alice": addr(1003), "bob": addr(2003)}
    net.source = lambda name, data: second[name] if data[0] == MessageType.INIT else None
    net.aliases.update({a: n for n, a in second.items()})
    alice.table.connect(bob.peer_id, net.public["bob"], net.now)
    bob.table.connect(alice.peer_id, net.public["alice"], net.now)
    net.run_until(2.0)
    assert alice.table.status().sessions == bob.table.status().sessions == 2
    for t in range(100):
        alice.table.send(bob.peer_id, b"a%d" % t, net.now)
        bob.table.send(alice.peer_id, b"b%d" % t, net.now)
        net.run_until(net.now + 1.0)
    assert len(bob.received()) == len(alice.received()) == 100
    assert not alice.of_type(PeerGone) and not bob.of_type(PeerGone)


def test_one_table_keeps_indices_unique_across_sessions() -> None:
    """Every session draws its receiver index from the same (here: repeating) random source."""
    source = random.Random(3)

    def repeating(n: int) -> bytes:
        return b"\x01\x00\x00\x00" if n == 4 and source.random() < 0.8 else source.randbytes(n)

    net = Net()
    hub = net.add("hub", seed=1, port=1001, random_bytes=repeating)
    spokes = [net.add(f"s{i}", seed=10 + i, port=2000 + i) for i in range(4)]
    for spoke in spokes:
        hub.table.connect(spoke.peer_id, net.public[spoke.name], net.now)
    net.run_until(2.0)
    assert {e.peer_id for e in hub.events if isinstance(e, PeerEstablished)} == {s.peer_id for s in spokes}
    for spoke in spokes:
        spoke.table.send(hub.peer_id, spoke.name.encode(), net.now)
    net.run_until(3.0)
    assert sorted(hub.received()) == sorted(s.name.encode() for s in spokes)


def test_idle_peers_send_keepalives_and_stay_up() -> None:
    config = TableConfig(keepalive_after=10.0, consent_timeout=30.0)
    net, alice, bob = connected(config)
    start = net.now
    net.run_until(start + 300.0)
    assert not alice.of_type(PeerGone) and not bob.of_type(PeerGone)
    assert alice.received() == [] and bob.received() == []  # keepalives deliver nothing
    for node in (alice, bob):
        assert node.table.counts[TableCount.KEEPALIVES] >= 25
        times = [start] + [t for t, _, _ in net.sent_by(node.name) if t > start] + [net.now]
        assert max(b - a for a, b in itertools.pairwise(times)) <= 10.0 + 1e-9
    alice.table.send(bob.peer_id, b"after the quiet", net.now)
    net.run_until(net.now + 1.0)
    assert bob.received() == [b"after the quiet"]


def test_keepalives_follow_the_configured_interval() -> None:
    net, alice, _ = connected(TableConfig(keepalive_after=25.0, consent_timeout=30.0))
    start = net.now
    net.run_until(start + 200.0)
    assert 7 <= alice.table.counts[TableCount.KEEPALIVES] <= 8  # one per 25 s of silence


def test_a_silent_path_is_dead_after_consent_timeout() -> None:
    net, alice, bob = connected()
    net.tap = lambda name, data: []  # the path breaks both ways
    last = net.now
    net.run_until(last + 100.0)
    for node, other in ((alice, bob), (bob, alice)):
        [gone] = node.of_type(PeerGone)
        assert isinstance(gone, PeerGone)
        assert gone.peer_id == other.peer_id and gone.reason is GoneReason.CONSENT_EXPIRED
        assert gone.reason.disconnect_reason is DisconnectReason.TIMEOUT
        assert node.table.status().sessions == 0
        assert node.table.counts[TableCount.CONSENT_EXPIRED] == 1
        assert node.table.get_timer() is None
    with pytest.raises(TableError):
        alice.table.send(bob.peer_id, b"late", net.now)


def test_one_way_traffic_keeps_only_the_receiving_side_up() -> None:
    """Bob's datagrams never reach Alice: her steady sending does not keep her side alive."""
    net, alice, bob = connected()
    net.tap = lambda name, data: [] if name == "bob" else [0.0]
    cut = net.now
    while net.now < cut + 29.0:
        alice.table.send(bob.peer_id, b"tick", net.now)
        net.run_until(net.now + 1.0)
    assert not alice.of_type(PeerGone) and not bob.of_type(PeerGone)
    for _ in range(5):
        if alice.of_type(PeerGone):
            break
        alice.table.send(bob.peer_id, b"tick", net.now)
        net.run_until(net.now + 1.0)
    [gone] = alice.of_type(PeerGone)
    assert isinstance(gone, PeerGone) and gone.reason is GoneReason.CONSENT_EXPIRED
    assert not bob.of_type(PeerGone)  # bob heard alice until she gave up
    heard_last = net.now
    net.run_until(heard_last + 31.0)
    assert bob.of_type(PeerGone)


def test_a_peer_restarting_at_the_same_address_rekeys_the_session() -> None:
    net, alice, bob = connected()
    reborn = net.add("bob", seed=2, port=2002, identity=bob.identity)  # same identity and port, new state
    reborn.table.connect(alice.peer_id, net.public["alice"], net.now)
    net.run_until(net.now + 1.0)
    assert reborn.of_type(PeerEstablished)
    assert alice.table.status().sessions == 1
    assert alice.table.counts[TableCount.REKEYED] == 1
    alice.table.send(bob.peer_id, b"welcome back", net.now)
    net.run_until(net.now + 1.0)
    assert reborn.received() == [b"welcome back"]


def test_a_peer_restarting_elsewhere_takes_over_and_the_old_session_retires_quietly() -> None:
    net, alice, bob = connected()
    del net.nodes["bob"], net.public["bob"]
    reborn = net.add("bob2", seed=2, port=2099, identity=bob.identity)
    reborn.table.connect(alice.peer_id, net.public["alice"], net.now)
    net.run_until(net.now + 1.0)
    assert [e for e in alice.of_type(PeerEstablished) if isinstance(e, PeerEstablished)][-1].addr == addr(
        2099
    )
    assert alice.table.status().sessions == 2
    alice.table.send(bob.peer_id, b"to the new one", net.now)
    net.run_until(net.now + 60.0)
    assert reborn.received() == [b"to the new one"]
    assert alice.table.status().sessions == 1
    assert alice.table.counts[TableCount.RETIRED] == 1
    assert not alice.of_type(PeerGone)


def test_close_reports_the_peer_gone_locally() -> None:
    net, alice, bob = connected()
    alice.table.close(bob.peer_id, net.now)
    net.run_until(net.now + 0.1)
    assert alice.of_type(PeerGone) == [PeerGone(bob.peer_id, addr(2002), GoneReason.CLOSED_LOCALLY)]
    assert alice.table.status().sessions == 0


def test_admission_hook_can_refuse_or_answer_instead() -> None:
    seen: list[tuple[int, Addr]] = []

    def admit(init: bytes, source: Addr, now: float) -> bool | bytes:
        seen.append((len(init), source))
        return b"cookie" if source == addr(1001) else False

    net, alice, bob = pair()
    bob = net.add("bob", seed=2, port=2002, admit_init=admit)
    carol = net.add("carol", seed=3, port=3003)
    alice.table.connect(bob.peer_id, net.public["bob"], net.now)
    carol.table.connect(bob.peer_id, net.public["bob"], net.now)
    net.run_until(0.1)
    assert bob.table.status().sessions == 0
    assert (INIT_SIZE, addr(1001)) in seen and (INIT_SIZE, addr(3003)) in seen
    assert [d for _, dst, d in net.sent_by("bob")] == [b"cookie"]
    assert bob.table.counts[TableCount.ADMISSION_REPLIES] == 1
    assert bob.table.counts[TableCount.REFUSED_BY_ADMISSION] == 1
    assert alice.table.counts[TableCount.MALFORMED] == 1  # no session message (the cookie code's)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_sessions": 0},
        {"keepalive_after": 0.0},
        {"consent_timeout": float("inf")},
        {"keepalive_after": 30.0},
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(TableError) as caught:
        TableConfig(**kwargs)  # type: ignore[arg-type]
    assert caught.value.reason is TableProblem.BAD_CONFIG


def test_a_newer_session_is_used_only_once_the_peer_confirmed_its_keys() -> None:
    """Alice dials Bob again on a second path whose CONFIRM never arrives: she keeps sending on
    the first session (Bob could not open the new keys), and the new one ends quietly."""
    net, alice, bob = connected()
    net.aliases[addr(2003)] = "bob"
    net.tap = lambda name, data: [] if name == "alice" and data[0] == MessageType.CONFIRM else [0.0]
    alice.table.connect(bob.peer_id, addr(2003), net.now)  # a second path: its CONFIRM never arrives
    net.run_until(net.now + 1.0)
    assert alice.table.status().sessions == 2
    alice.table.send(bob.peer_id, b"while it handshakes", net.now)
    net.run_until(net.now + 60.0)
    assert len(alice.of_type(PeerEstablished)) == 1  # the new session was never preferred
    assert not alice.of_type(PeerGone) and not bob.of_type(PeerGone)
    assert alice.table.status().sessions == 1
    alice.table.send(bob.peer_id, b"on the old path", net.now)
    net.run_until(net.now + 1.0)
    assert bob.received() == [b"while it handshakes", b"on the old path"]
