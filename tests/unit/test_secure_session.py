"""The datagram secure session, two cores back to back in virtual time."""

from __future__ import annotations

import pytest

from node.proto.session.errors import (
    DropReason,
    HandshakeError,
    HandshakeFailure,
    SessionConfigError,
    SessionNotReady,
    SessionStateError,
    StateProblem,
)
from node.proto.session.messages import (
    AMPLIFICATION_FACTOR,
    INIT_SIZE,
    MAX_CREDENTIAL,
    MessageType,
    receiver_index,
)
from node.proto.session.secure_session import (
    DEFAULT_HANDSHAKE_TIMING,
    CloseReason,
    HandshakeFailed,
    KeyConfirmed,
    SecureSession,
    SessionClosed,
    SessionConfig,
    SessionEstablished,
    SessionState,
)
from node.proto.session.trust import PeerVerificationError, VerifyFailure
from tests.support.session_verifiers import DevVerifier, PinnedVerifier
from tests.unit.session_harness import established_pair, make_identity, make_pair, seeded


def kind(datagram: bytes) -> MessageType:
    return MessageType(int.from_bytes(datagram[:4], "little"))


def test_handshake_proves_both_ids_and_carries_data_both_ways() -> None:
    pair = established_pair()
    assert pair.alice.state is pair.bob.state is SessionState.ESTABLISHED
    assert pair.alice.peer_id == pair.bob_id.peer_id
    assert pair.bob.peer_id == pair.alice_id.peer_id
    assert pair.bob.peer_public_key == pair.alice_id.public_key
    assert [kind(d) for _, d in pair.wire] == [
        MessageType.INIT,
        MessageType.RESPONSE,
        MessageType.CONFIRM,
        MessageType.TRANSPORT,  # bob's key confirmation
    ]
    assert pair.of_type("alice", SessionEstablished) == [
        SessionEstablished(pair.bob_id.peer_id, pair.bob_id.public_key, 0, initiator=True)
    ]
    assert pair.of_type("bob", SessionEstablished) == [
        SessionEstablished(pair.alice_id.peer_id, pair.alice_id.public_key, 0, initiator=False)
    ]
    pair.alice.send(b"roll 7", pair.now)
    pair.bob.send(b"come out", pair.now)
    pair.flush()
    assert pair.received("bob") == [b"roll 7"]
    assert pair.received("alice") == [b"come out"]
    assert not pair.alice.drops and not pair.bob.drops


def test_the_init_is_fixed_size_and_the_response_within_the_amplification_limit() -> None:
    pair = make_pair(credentials=(b"a" * MAX_CREDENTIAL, b"b" * MAX_CREDENTIAL))
    pair.alice.connect(0.0)
    pair.flush()
    assert pair.bob.state is SessionState.ESTABLISHED
    init, response = pair.wire[0][1], pair.wire[1][1]
    assert len(init) == INIT_SIZE
    assert len(response) <= AMPLIFICATION_FACTOR * len(init)
    with pytest.raises(SessionConfigError):
        SecureSession(make_identity(3), DevVerifier(), credential=b"x" * (MAX_CREDENTIAL + 1))


def test_credentials_reach_the_verifier() -> None:
    alice_trust, bob_trust = DevVerifier(), DevVerifier()
    pair = make_pair(alice_verifier=alice_trust, bob_verifier=bob_trust, credentials=(b"cert-a", b"cert-b"))
    pair.alice.connect(0.0)
    pair.flush()
    assert alice_trust.calls == [(pair.bob_id.public_key, b"cert-b", pair.bob_id.peer_id)]
    assert bob_trust.calls == [(pair.alice_id.public_key, b"cert-a", None)]


def test_key_confirmation() -> None:
    """Bob confirms on CONFIRM; Alice only once a datagram opened under the new keys."""
    held: list[bytes] = []

    def hold_bobs_transport(sender: str, datagram: bytes) -> list[bytes]:
        if sender == "bob" and kind(datagram) is MessageType.TRANSPORT:
            held.append(datagram)
            return []
        return [datagram]

    pair = make_pair()
    pair.tap = hold_bobs_transport
    pair.alice.connect(0.0)
    pair.flush()
    assert pair.of_type("bob", KeyConfirmed) == [KeyConfirmed(0)]
    assert pair.alice.state is SessionState.ESTABLISHED
    assert pair.of_type("alice", KeyConfirmed) == []
    # Unconfirmed, Alice keeps retransmitting the CONFIRM; Bob answers each with a confirmation.
    pair.advance(DEFAULT_HANDSHAKE_TIMING.rto * 1.5)
    confirms = [d for s, d in pair.wire if s == "alice" and kind(d) is MessageType.CONFIRM]
    assert len(confirms) == 2 and confirms[0] == confirms[1]
    assert len(held) == 2
    pair.tap = None
    pair.alice.receive_datagram(held[1], pair.now)
    pair.drain()
    assert pair.of_type("alice", KeyConfirmed) == [KeyConfirmed(0)]
    before = len(pair.wire)
    pair.advance(60.0)
    assert not [d for s, d in pair.wire[before:] if kind(d) is MessageType.CONFIRM]


@pytest.mark.parametrize("lost", [MessageType.INIT, MessageType.RESPONSE, MessageType.CONFIRM])
def test_a_lost_handshake_message_is_retransmitted(lost: MessageType) -> None:
    dropped: list[bytes] = []

    def lose_first(sender: str, datagram: bytes) -> list[bytes]:
        if kind(datagram) is lost and not dropped:
            dropped.append(datagram)
            return []
        return [datagram]

    pair = make_pair()
    pair.tap = lose_first
    pair.alice.connect(0.0)
    pair.flush()
    while pair.alice.state is not SessionState.ESTABLISHED:
        pair.advance(pair.now + 0.1)
    pair.alice.send(b"early", pair.now)  # with a lost CONFIRM this overtakes it and waits at Bob
    pair.flush()
    pair.advance(10.0)
    assert dropped
    assert pair.alice.state is pair.bob.state is SessionState.ESTABLISHED
    assert pair.of_type("alice", KeyConfirmed) == [KeyConfirmed(0)]
    assert pair.received("bob") == [b"early"]
    assert not pair.of_type("alice", HandshakeFailed) and not pair.of_type("bob", HandshakeFailed)


@pytest.mark.parametrize("copied", [MessageType.INIT, MessageType.RESPONSE, MessageType.CONFIRM])
def test_a_duplicated_handshake_message_is_harmless(copied: MessageType) -> None:
    pair = make_pair()
    pair.tap = lambda sender, d: [d, d] if kind(d) is copied else [d]
    pair.alice.connect(0.0)
    pair.flush()
    pair.tap = None
    pair.advance(60.0)
    assert pair.alice.generation == pair.bob.generation == 0
    assert len(pair.of_type("alice", SessionEstablished)) == len(pair.of_type("bob", SessionEstablished)) == 1
    pair.alice.send(b"x", pair.now)
    pair.flush()
    assert pair.received("bob") == [b"x"]
    if copied is MessageType.RESPONSE:
        assert pair.alice.drops == {DropReason.UNEXPECTED: 1}


def test_early_datagrams_are_bounded() -> None:
    config = SessionConfig(max_early_datagrams=3)
    confirms: list[bytes] = []
    transports: list[bytes] = []

    def hold_confirm(sender: str, datagram: bytes) -> list[bytes]:
        if kind(datagram) is MessageType.CONFIRM:
            confirms.append(datagram)
            return []
        if sender == "alice" and kind(datagram) is MessageType.TRANSPORT:
            transports.append(datagram)
            if len(transports) == 2:  # a forgery waits among the early ones, and is caught later
                return [datagram[:-1] + bytes([datagram[-1] ^ 1])]
        return [datagram]

    pair = make_pair(config)
    pair.tap = hold_confirm
    pair.alice.connect(0.0)
    pair.flush()
    for i in range(4):
        pair.alice.send(b"%d" % i, pair.now)
    pair.flush()
    assert pair.bob.drops == {DropReason.EARLY_OVERFLOW: 1}
    pair.bob.receive_datagram(confirms[0], pair.now)
    pair.tap = None
    pair.flush()
    assert pair.received("bob") == [b"0", b"2"]
    assert pair.bob.drops == {DropReason.EARLY_OVERFLOW: 1, DropReason.DECRYPT_FAILED: 1}


def test_tampered_datagrams_are_dropped_and_counted() -> None:
    pair = established_pair()
    pair.alice.send(b"stake 10", pair.now)
    (datagram,) = pair.alice.datagrams_to_send(pair.now)
    for position in (0, 4, 8, 16, len(datagram) - 1):  # type, index, counter, body, tag
        forged = bytearray(datagram)
        forged[position] ^= 0x01
        pair.bob.receive_datagram(bytes(forged), pair.now)
    # A forged huge counter must not move the window either.
    forged = bytearray(datagram)
    forged[8:16] = (2**63).to_bytes(8, "little")
    pair.bob.receive_datagram(bytes(forged), pair.now)
    pair.drain()
    assert pair.received("bob") == []
    drops = pair.bob.drops
    assert drops[DropReason.DECRYPT_FAILED] == 4  # counter, body, tag, huge counter
    assert drops[DropReason.UNKNOWN_TYPE] == 1
    assert drops[DropReason.UNKNOWN_INDEX] == 1
    pair.bob.receive_datagram(datagram, pair.now)
    pair.drain()
    assert pair.received("bob") == [b"stake 10"]


def test_replayed_datagrams_are_dropped_and_counted() -> None:
    pair = established_pair()
    pair.alice.send(b"once", pair.now)
    (datagram,) = pair.alice.datagrams_to_send(pair.now)
    for _ in range(3):
        pair.bob.receive_datagram(datagram, pair.now)
    pair.drain()
    assert pair.received("bob") == [b"once"]
    assert pair.bob.drops == {DropReason.REPLAYED: 2}


def test_reordered_within_the_window_accepted_older_dropped() -> None:
    pair = established_pair(SessionConfig(replay_window_blocks=2))  # a 64-counter window
    datagrams = []
    for i in range(100):
        pair.alice.send(b"%d" % i, pair.now)
        datagrams += pair.alice.datagrams_to_send(pair.now)
    # Shuffled, reversed, and a jump ahead: every one is at most 63 behind the highest so far.
    order = [*range(10, 40), *reversed(range(10)), 60, *range(40, 60), *range(99, 60, -1)]
    for i in order:
        pair.bob.receive_datagram(datagrams[i], pair.now)
    pair.drain()
    assert pair.received("bob") == [b"%d" % i for i in order]
    assert not pair.bob.drops
    pair.bob.receive_datagram(datagrams[50], pair.now)  # seen, inside the window
    pair.bob.receive_datagram(datagrams[35], pair.now)  # seen, and 64 behind 99 by now
    assert pair.bob.drops == {DropReason.REPLAYED: 1, DropReason.TOO_OLD: 1}


def test_older_than_the_window_is_too_old() -> None:
    pair = established_pair(SessionConfig(replay_window_blocks=2))
    datagrams = []
    for i in range(70):
        pair.alice.send(b"%d" % i, pair.now)
        datagrams += pair.alice.datagrams_to_send(pair.now)
    pair.bob.receive_datagram(datagrams[69], pair.now)
    pair.bob.receive_datagram(datagrams[5], pair.now)  # 64 behind: never seen, but too old
    pair.bob.receive_datagram(datagrams[6], pair.now)  # 63 behind: inside the window
    pair.drain()
    assert pair.received("bob") == [b"69", b"6"]
    assert pair.bob.drops == {DropReason.TOO_OLD: 1}


def test_dialling_one_peer_and_meeting_another_is_refused() -> None:
    carol = make_identity(3)
    pair = make_pair(expected=carol.peer_id)  # Alice dials Carol's id; Bob answers with his valid key
    pair.alice.connect(0.0)
    pair.flush()
    (failed,) = pair.of_type("alice", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed)
    assert failed.reason is HandshakeFailure.REFUSED_BY_TRUST
    assert isinstance(failed.error, PeerVerificationError)
    assert failed.error.reason is VerifyFailure.WRONG_PEER
    assert pair.of_type("alice", SessionClosed) == [SessionClosed(CloseReason.HANDSHAKE_FAILED)]
    assert pair.alice.state is SessionState.CLOSED and pair.alice.peer_id is None
    # Alice never proved herself to the wrong peer: no CONFIRM left her.
    assert [kind(d) for _, d in pair.wire] == [MessageType.INIT, MessageType.RESPONSE]
    with pytest.raises(SessionNotReady) as info:
        pair.alice.send(b"x", pair.now)
    assert info.value.problem is StateProblem.CLOSED


def test_the_core_holds_a_lax_verifier_to_the_dialled_id() -> None:
    class AnyoneIsWelcome:
        def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
            from node.proto.identity import peer_id_of

            return peer_id_of(public_key)

    pair = make_pair(expected=make_identity(3).peer_id, alice_verifier=AnyoneIsWelcome())
    pair.alice.connect(0.0)
    pair.flush()
    (failed,) = pair.of_type("alice", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and isinstance(failed.error, PeerVerificationError)
    assert failed.error.reason is VerifyFailure.WRONG_PEER


def test_a_responder_refuses_an_untrusted_initiator() -> None:
    pair = make_pair(bob_verifier=PinnedVerifier([make_identity(3).peer_id]))
    pair.alice.connect(0.0)
    pair.flush()
    (failed,) = pair.of_type("bob", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and isinstance(failed.error, PeerVerificationError)
    assert failed.error.reason is VerifyFailure.NOT_TRUSTED
    assert pair.bob.state is SessionState.CLOSED
    # Alice has keys but never gets them confirmed: she gives up when the CONFIRM schedule ends.
    pair.advance(60.0)
    assert pair.of_type("alice", KeyConfirmed) == []
    (alice_failed,) = pair.of_type("alice", HandshakeFailed)
    assert isinstance(alice_failed, HandshakeFailed) and alice_failed.reason is HandshakeFailure.TIMEOUT
    assert pair.alice.state is SessionState.CLOSED


def test_a_verifier_that_crashes_refuses() -> None:
    class Broken:
        def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
            raise ValueError("cannot parse certificate")

    pair = make_pair(alice_verifier=Broken())
    pair.alice.connect(0.0)
    pair.flush()
    (failed,) = pair.of_type("alice", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and isinstance(failed.error, PeerVerificationError)
    assert failed.error.reason is VerifyFailure.NOT_TRUSTED


def test_a_bad_transcript_signature_fails_the_handshake() -> None:
    real = make_identity(2)

    class WrongSigner:
        public_key = real.public_key
        peer_id = real.peer_id

        def sign(self, data: bytes) -> bytes:
            return real.sign(data + b"!")  # a valid signature, over the wrong transcript

    pair = make_pair(bob_identity=WrongSigner())  # type: ignore[arg-type]
    pair.alice.connect(0.0)
    pair.flush()
    (failed,) = pair.of_type("alice", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and failed.reason is HandshakeFailure.BAD_SIGNATURE
    assert isinstance(failed.error, HandshakeError)


def test_no_answer_times_out_on_the_retransmission_schedule() -> None:
    pair = make_pair()
    pair.tap = lambda sender, d: []
    pair.alice.connect(0.0)
    pair.advance(100.0)
    inits = [d for s, d in pair.wire if s == "alice"]
    assert len(inits) == DEFAULT_HANDSHAKE_TIMING.rc and len(set(inits)) == 1
    (failed,) = pair.of_type("alice", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and failed.reason is HandshakeFailure.TIMEOUT
    assert pair.of_type("alice", SessionClosed) == [SessionClosed(CloseReason.HANDSHAKE_FAILED)]
    assert pair.alice.get_timer() is None


def test_a_responder_forgets_an_unconfirmed_response() -> None:
    pair = make_pair()
    pair.tap = lambda sender, d: [] if kind(d) is MessageType.CONFIRM else [d]
    pair.alice.connect(0.0)
    pair.flush()
    assert pair.bob.get_timer() == SessionConfig().responder_timeout
    pair.advance(SessionConfig().responder_timeout)
    assert pair.bob.state is SessionState.CLOSED
    (failed,) = pair.of_type("bob", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and failed.reason is HandshakeFailure.TIMEOUT


def test_both_sides_dialling_at_once_end_with_one_session() -> None:
    pair = make_pair()
    bob = SecureSession(
        pair.bob_id, DevVerifier(), expected_peer_id=pair.alice_id.peer_id, random_bytes=seeded(22)
    )
    pair.bob = bob
    pair.alice.connect(0.0)
    pair.bob.connect(0.0)
    (init_a,), (init_b,) = pair.alice.datagrams_to_send(0.0), pair.bob.datagrams_to_send(0.0)
    pair.bob.receive_datagram(init_a, 0.0)  # the two INITs cross on the wire
    pair.alice.receive_datagram(init_b, 0.0)
    pair.flush()
    pair.advance(60.0)
    assert pair.alice.state is pair.bob.state is SessionState.ESTABLISHED
    roles = {
        e.initiator for e in pair.of_type("alice", SessionEstablished) if isinstance(e, SessionEstablished)
    }
    roles_b = {
        e.initiator for e in pair.of_type("bob", SessionEstablished) if isinstance(e, SessionEstablished)
    }
    assert len(roles) == len(roles_b) == 1 and roles != roles_b
    assert pair.alice.drops + pair.bob.drops == {DropReason.GLARE_LOST: 1}
    loser_init = init_a if pair.bob.drops else init_b  # a late copy of the losing INIT
    (pair.bob if pair.bob.drops else pair.alice).receive_datagram(loser_init, pair.now)
    assert pair.alice.drops + pair.bob.drops == {DropReason.GLARE_LOST: 2}
    pair.alice.send(b"hi", pair.now)
    pair.bob.send(b"ho", pair.now)
    pair.flush()
    assert pair.received("bob") == [b"hi"] and pair.received("alice") == [b"ho"]


def test_misuse_raises_typed_local_errors() -> None:
    pair = make_pair()
    with pytest.raises(SessionNotReady) as info:
        pair.alice.send(b"too soon", 0.0)
    assert info.value.problem is StateProblem.NOT_ESTABLISHED
    pair.alice.connect(0.0)
    with pytest.raises(SessionStateError):
        pair.alice.connect(0.0)
    pair.flush()
    with pytest.raises(SessionNotReady) as info:
        pair.alice.send(bytes(SessionConfig().max_payload + 1), 0.0)
    assert info.value.problem is StateProblem.TOO_LARGE
    pair.alice.close(0.0)
    pair.alice.close(0.0)  # closing twice is harmless
    pair.drain()
    assert pair.of_type("alice", SessionClosed) == [SessionClosed(CloseReason.CLOSED_LOCALLY)]
    pair.alice.receive_datagram(pair.wire[-1][1], 0.0)
    assert pair.alice.drops == {DropReason.CLOSED: 1}


@pytest.mark.parametrize(
    "bad",
    [
        {"rekey_after_time": 0.0},
        {"reject_after_time": float("nan")},
        {"rekey_after_time": 175.0},
        {"rekey_after_messages": 10, "reject_after_messages": 10},
        {"reject_after_messages": 2**64},
        {"replay_window_blocks": 1},
        {"max_early_datagrams": -1},
        {"max_payload": 70_000},
    ],
)
def test_config_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(SessionConfigError):
        SessionConfig(**bad)  # type: ignore[arg-type]


def test_receiver_index_routes_without_an_address() -> None:
    pair = established_pair()
    pair.alice.send(b"x", pair.now)
    (datagram,) = pair.alice.datagrams_to_send(pair.now)
    assert receiver_index(datagram) in pair.bob.local_indices()
    assert receiver_index(pair.wire[0][1]) is None  # an INIT starts a session
    assert receiver_index(b"\x09\x00\x00\x00abcd") is None
    assert receiver_index(b"\x04\x00") is None


@pytest.mark.parametrize("target", [MessageType.INIT, MessageType.RESPONSE, MessageType.CONFIRM])
@pytest.mark.parametrize("position", [4, 12, 40, -1])
def test_a_tampered_handshake_message_is_a_drop_and_the_genuine_one_still_wins(
    target: MessageType, position: int
) -> None:
    """A forged copy first, the genuine one after it (as an on-path attacker racing the peer)."""

    def forge_first(sender: str, datagram: bytes) -> list[bytes]:
        if kind(datagram) is not target:
            return [datagram]
        forged = bytearray(datagram)
        forged[position] ^= 0x80
        return [bytes(forged), datagram]

    pair = make_pair()
    pair.tap = forge_first
    pair.alice.connect(0.0)
    pair.flush()
    pair.tap = None
    pair.advance(30.0)
    assert pair.alice.state is pair.bob.state is SessionState.ESTABLISHED
    assert pair.of_type("alice", KeyConfirmed) == [KeyConfirmed(0)]
    assert not pair.of_type("alice", HandshakeFailed) and not pair.of_type("bob", HandshakeFailed)
    assert sum((pair.alice.drops + pair.bob.drops).values()) >= 1


def test_handshake_messages_of_an_old_session_establish_nothing() -> None:
    old = established_pair()
    recorded = [(s, d) for s, d in old.wire if kind(d) is not MessageType.TRANSPORT]
    pair = make_pair()
    pair.alice = SecureSession(
        pair.alice_id, DevVerifier(), expected_peer_id=pair.bob_id.peer_id, random_bytes=seeded(99)
    )
    pair.bob = SecureSession(pair.bob_id, DevVerifier(), random_bytes=seeded(98))
    pair.alice.connect(0.0)
    # The recorded RESPONSE and CONFIRM are replayed at the new sessions before the real ones.
    for sender, datagram in recorded[1:]:
        (pair.alice if sender == "bob" else pair.bob).receive_datagram(datagram, 0.0)
    assert pair.alice.drops == {DropReason.UNEXPECTED: 1}
    assert pair.bob.drops == {DropReason.UNEXPECTED: 1}
    pair.flush()
    assert pair.alice.state is pair.bob.state is SessionState.ESTABLISHED
    # And an old INIT replayed at an established responder only costs it a RESPONSE.
    pair.bob.receive_datagram(recorded[0][1], pair.now)
    pair.flush()
    assert pair.alice.drops[DropReason.UNEXPECTED] == 2
    assert pair.bob.generation == 0
    pair.alice.send(b"unaffected", pair.now)
    pair.flush()
    assert pair.received("bob") == [b"unaffected"]


def test_late_timers_do_not_let_expired_keys_seal_or_open() -> None:
    config = SessionConfig(rekey_after_time=20.0, reject_after_time=40.0, responder_rekey_delay=5.0)
    pair = established_pair(config)
    pair.alice.send(b"x", 39.0)
    (datagram,) = pair.alice.datagrams_to_send(39.0)
    pair.bob.receive_datagram(datagram, 40.0)  # Bob's timer has not fired yet
    assert pair.bob.drops == {DropReason.UNKNOWN_INDEX: 1}
    with pytest.raises(SessionNotReady) as info:
        pair.alice.send(b"y", 40.0)  # Alice's neither
    assert info.value.problem is StateProblem.CLOSED


def test_a_verifier_that_renames_the_key_is_refused() -> None:
    class Renamer:
        def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
            return "somebody-else"

    pair = make_pair(bob_verifier=Renamer())
    pair.alice.connect(0.0)
    pair.flush()
    (failed,) = pair.of_type("bob", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and isinstance(failed.error, PeerVerificationError)
    assert failed.error.reason is VerifyFailure.CREDENTIAL_MISMATCH


def test_low_order_ephemeral_keys_are_dropped() -> None:
    from node.proto.session.messages import encode_init, encode_response_header

    pair = make_pair()
    pair.bob.receive_datagram(encode_init(7, bytes(32)), 0.0)
    assert pair.bob.drops == {DropReason.BAD_EPHEMERAL: 1}
    assert pair.bob.state is SessionState.IDLE
    pair.alice.connect(0.0)
    (init,) = pair.alice.datagrams_to_send(0.0)
    index = int.from_bytes(init[4:8], "little")
    forged = encode_response_header(9, index, bytes(32)) + bytes(16 + 98)
    pair.alice.receive_datagram(forged, 0.0)
    assert pair.alice.drops == {DropReason.BAD_EPHEMERAL: 1}
    assert pair.alice.state is SessionState.HANDSHAKING


@pytest.mark.parametrize(
    "proof",
    [bytes(32) + b"\x00\x05" + bytes(64), bytes(32) + b"\xff\xff" + bytes(90)],  # length disagrees
)
def test_a_responder_that_seals_a_malformed_proof_fails_the_handshake(proof: bytes) -> None:
    """Mallory runs the key schedule honestly but seals garbage: the AEAD opens, the proof does not."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from node.proto.session import keys as ks
    from node.proto.session.messages import encode_response_header

    pair = make_pair()
    pair.alice.connect(0.0)
    (init,) = pair.alice.datagrams_to_send(0.0)
    ephemeral = X25519PrivateKey.generate()
    public = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    header = encode_response_header(5, int.from_bytes(init[4:8], "little"), public)
    h2 = ks.mix_hash(ks.mix_hash(ks.INITIAL_HASH, init), header)
    prk = ks.extract(h2, ephemeral.exchange(X25519PublicKey.from_public_bytes(init[8:40])))
    key_r, _ = ks.handshake_keys(prk, h2)
    sealed = ChaCha20Poly1305(key_r).encrypt(ks.nonce(0), proof, h2)
    pair.alice.receive_datagram(header + sealed, 0.0)
    pair.drain()
    (failed,) = pair.of_type("alice", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and failed.reason is HandshakeFailure.MALFORMED_PROOF


def test_decode_handshake_refuses_transport_datagrams() -> None:
    from node.proto.session.errors import SessionDecodeError
    from node.proto.session.messages import decode_handshake, decode_proof

    with pytest.raises(SessionDecodeError) as info:
        decode_handshake(bytes(40), MessageType.TRANSPORT)
    assert info.value.reason is DropReason.UNKNOWN_TYPE
    with pytest.raises(SessionDecodeError):
        decode_proof(bytes(10))
    with pytest.raises(SessionDecodeError):
        decode_proof(bytes(32) + b"\x00\x01" + bytes(64))


def test_the_fast_datagram_event_is_the_dataclass_it_stands_for() -> None:
    """The receive path builds DatagramReceived by setting its slot; the result must be the same
    frozen value the dataclass would make (equal, hashable, immutable)."""
    import dataclasses

    from node.proto.session import secure_session as ss

    fast = ss._new(ss.DatagramReceived)
    ss._SET_PAYLOAD(fast, b"payload")
    assert fast == ss.DatagramReceived(b"payload")
    assert hash(fast) == hash(ss.DatagramReceived(b"payload"))
    assert [f.name for f in dataclasses.fields(ss.DatagramReceived)] == ["payload"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.payload = b"other"  # type: ignore[misc]
