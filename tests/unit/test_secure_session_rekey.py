"""Rekeying: by message count and by time, traffic across it, the old keys' grace and expiry."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.proto.session.errors import DropReason, HandshakeFailure, SessionNotReady, StateProblem
from node.proto.session.messages import MessageType
from node.proto.session.secure_session import (
    CloseReason,
    HandshakeFailed,
    KeyConfirmed,
    SessionClosed,
    SessionConfig,
    SessionEstablished,
    SessionState,
)
from tests.unit.session_harness import Pair, established_pair, make_pair

FAST = SessionConfig(
    rekey_after_time=20.0,
    reject_after_time=40.0,
    responder_rekey_delay=5.0,
    previous_key_grace=3.0,
    rekey_after_messages=50,
    reject_after_messages=80,
)


def kind(datagram: bytes) -> MessageType:
    return MessageType(int.from_bytes(datagram[:4], "little"))


def generations(pair: Pair, name: str) -> list[int]:
    return [e.generation for e in pair.events[name] if isinstance(e, SessionEstablished)]


def test_rekey_by_message_count_keeps_traffic_flowing() -> None:
    pair = established_pair(FAST)
    sent = []
    for i in range(400):
        payload = b"a%d" % i
        pair.alice.send(payload, pair.now)
        sent.append(payload)
        pair.bob.send(b"b%d" % i, pair.now)
        pair.flush()
    assert pair.received("bob") == sent
    assert pair.received("alice") == [b"b%d" % i for i in range(400)]
    # Both sides send; about one rekey per 50 datagrams of the busier direction.
    assert pair.alice.generation == pair.bob.generation >= 400 // 50 - 1
    assert generations(pair, "alice") == list(range(pair.alice.generation + 1))
    assert not pair.alice.drops and not pair.bob.drops
    confirmed = [e.generation for e in pair.events["alice"] if isinstance(e, KeyConfirmed)]
    assert confirmed == list(range(pair.alice.generation + 1))


def test_rekey_by_time_keeps_traffic_flowing() -> None:
    pair = established_pair(FAST)
    for second in range(1, 100):
        pair.advance(float(second))
        pair.alice.send(b"t%d" % second, pair.now)
        pair.bob.send(b"u%d" % second, pair.now)
        pair.flush()
    assert pair.received("bob") == [b"t%d" % s for s in range(1, 100)]
    assert pair.received("alice") == [b"u%d" % s for s in range(1, 100)]
    # Alice initiated the session, so she rekeys every 20 s: 4 rekeys in 99 s.
    assert pair.alice.generation == pair.bob.generation == 4
    established = [e for e in pair.events["bob"] if isinstance(e, SessionEstablished)]
    assert all(not e.initiator for e in established)
    assert pair.alice.state is SessionState.ESTABLISHED
    assert not pair.alice.drops and not pair.bob.drops


def test_the_responder_rekeys_if_the_initiator_does_not() -> None:
    pair = established_pair(FAST)
    # Alice's rekey INITs are lost; Bob's INIT (later by responder_rekey_delay) goes through.
    pair.tap = lambda sender, d: [] if sender == "alice" and kind(d) is MessageType.INIT else [d]
    pair.advance(FAST.rekey_after_time + FAST.responder_rekey_delay + 1.0)
    assert pair.bob.generation == 1
    (rekey,) = [e for e in pair.events["bob"] if isinstance(e, SessionEstablished) and e.generation == 1]
    assert isinstance(rekey, SessionEstablished) and rekey.initiator


def test_previous_keys_open_in_flight_datagrams_for_a_grace_period_only() -> None:
    pair = established_pair(FAST)
    in_flight = []
    for i in range(3):
        pair.alice.send(b"old%d" % i, pair.now)
        in_flight += pair.alice.datagrams_to_send(pair.now)
    pair.advance(FAST.rekey_after_time + 0.5)  # alice rekeys; bob confirms at once
    assert pair.alice.generation == 1
    pair.bob.receive_datagram(in_flight[1], pair.now)  # reordered past the rekey: still opens
    pair.drain()
    assert pair.received("bob") == [b"old1"]
    pair.advance(pair.now + FAST.previous_key_grace)
    pair.bob.receive_datagram(in_flight[2], pair.now)  # the old keys are gone now
    pair.drain()
    assert pair.received("bob") == [b"old1"]
    assert pair.bob.drops == {DropReason.UNKNOWN_INDEX: 1}


def test_keys_expire_when_rekeys_fail() -> None:
    pair = established_pair(FAST)
    pair.tap = lambda sender, d: []  # the peer is gone
    pair.advance(FAST.reject_after_time + 1.0)
    for name in ("alice", "bob"):
        session = pair.session(name)
        assert session.state is SessionState.CLOSED
        assert pair.of_type(name, SessionClosed) == [SessionClosed(CloseReason.KEYS_EXPIRED)]
        assert session.get_timer() is None
    # Both tried to rekey (Alice at 20 s, Bob at 25 s) and were still retrying at 40 s.
    inits = [s for s, d in pair.wire if kind(d) is MessageType.INIT]
    assert inits.count("alice") > 1 + 1 and inits.count("bob") > 1
    try:
        pair.alice.send(b"x", pair.now)
    except SessionNotReady as exc:
        assert exc.problem is StateProblem.CLOSED
    else:
        raise AssertionError("sent on a closed session")


def test_sending_stops_at_reject_after_messages() -> None:
    pair = established_pair(FAST)
    pair.tap = lambda sender, d: [] if kind(d) is MessageType.INIT else [d]  # no rekey gets through
    for _ in range(FAST.reject_after_messages):
        pair.alice.send(b"x", pair.now)
    pair.flush()
    try:
        pair.alice.send(b"one too many", pair.now)
    except SessionNotReady as exc:
        assert exc.problem is StateProblem.KEYS_EXHAUSTED
    else:
        raise AssertionError("sealed past reject_after_messages")
    assert len(pair.received("bob")) == FAST.reject_after_messages


def test_a_receiver_refuses_counters_past_the_limit() -> None:
    pair = established_pair(FAST)
    pair.alice.send(b"x", pair.now)
    (datagram,) = pair.alice.datagrams_to_send(pair.now)
    forged = datagram[:8] + FAST.reject_after_messages.to_bytes(8, "little") + datagram[16:]
    pair.bob.receive_datagram(forged, pair.now)
    assert pair.bob.drops == {DropReason.COUNTER_LIMIT: 1}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(
        st.tuples(st.sampled_from(["alice", "bob"]), st.sampled_from(["send", "tick", "lose", "dup"])),
        min_size=1,
        max_size=120,
    )
)
def test_lossy_traffic_across_rekeys_never_delivers_twice_or_forged(plan: list[tuple[str, str]]) -> None:
    """Loss and duplication in any mix: nothing raises, every payload arrives at most once."""
    pair = make_pair(FAST)
    pair.alice.connect(0.0)
    pair.flush()
    mode = {"lose": False, "dup": False}
    pair.tap = lambda sender, d: [] if mode["lose"] else ([d, d] if mode["dup"] else [d])
    sent: dict[str, list[bytes]] = {"alice": [], "bob": []}
    for i, (name, action) in enumerate(plan):
        mode["lose"], mode["dup"] = action == "lose", action == "dup"
        session = pair.session(name)
        if action == "tick":
            pair.advance(pair.now + 7.0)
        elif session.state is SessionState.ESTABLISHED:
            try:
                session.send(b"%s%d" % (name.encode(), i), pair.now)
                sent[name].append(b"%s%d" % (name.encode(), i))
            except SessionNotReady:
                pass
        pair.flush()
    for sender, receiver in (("alice", "bob"), ("bob", "alice")):
        got = pair.received(receiver)
        assert len(got) == len(set(got))
        assert set(got) <= set(sent[sender])


def test_a_failed_rekey_falls_back_to_the_current_keys_and_retries() -> None:
    config = SessionConfig(
        rekey_after_time=30.0, reject_after_time=100.0, responder_rekey_delay=60.0, rekey_retry_interval=5.0
    )
    pair = established_pair(config)
    pair.tap = lambda sender, d: [] if kind(d) is MessageType.INIT else [d]
    pair.advance(30.0 + 21.5)  # the first rekey's schedule runs out
    (failed,) = pair.of_type("alice", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and failed.reason is HandshakeFailure.TIMEOUT
    assert pair.alice.state is SessionState.ESTABLISHED
    pair.alice.send(b"still here", pair.now)
    pair.flush()
    assert pair.received("bob") == [b"still here"]
    pair.tap = None
    pair.advance(30.0 + 21.5 + 5.0)  # retried after rekey_retry_interval
    assert pair.alice.generation == pair.bob.generation == 1
