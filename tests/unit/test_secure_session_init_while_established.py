"""An INIT proves nothing until its CONFIRM does: it never disturbs an established session (issue 13).

Anyone can send an INIT "from" a peer's address (a spoof, or a replay of one the peer once sent).
While a session has keys, such an INIT is answered as a separate pending handshake; the current
keys and any rekey in flight, ours or the peer's, stay as they are until it completes.
"""

from __future__ import annotations

import dataclasses
import random

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.proto.session.errors import DropReason
from node.proto.session.messages import MessageType, encode_init
from node.proto.session.secure_session import (
    HandshakeFailed,
    KeyConfirmed,
    SecureSession,
    SessionEstablished,
    SessionState,
)
from tests.support.session_verifiers import DevVerifier
from tests.unit.session_harness import Pair, established_pair, seeded
from tests.unit.test_secure_session_rekey import FAST, kind


def ephemeral_above(floor: bytes) -> bytes:
    """A real X25519 public key that sorts above ``floor``: a spoof that wins the glare rule."""
    for seed in range(1000):
        key = X25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32))
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if public > floor:
            return public
    raise AssertionError("no key above the floor in 1000 tries")


def exchange(pair: Pair, tag: bytes) -> None:
    pair.alice.send(b"a-" + tag, pair.now)
    pair.bob.send(b"b-" + tag, pair.now)
    pair.flush()
    assert pair.received("bob")[-1] == b"a-" + tag
    assert pair.received("alice")[-1] == b"b-" + tag


def test_a_spoofed_init_during_our_rekey_does_not_abort_it() -> None:
    pair = established_pair(FAST)
    spoofs: list[bytes] = []

    def spoof_on_rekey(sender: str, datagram: bytes) -> list[bytes]:
        if sender == "alice" and kind(datagram) is MessageType.INIT and not spoofs:
            # Before Bob answers Alice's rekey, a stranger's INIT "from Bob" reaches her, with an
            # ephemeral key that beats hers: a real peer's INIT would win this glare.
            spoofs.append(encode_init(0xBADC0DE, ephemeral_above(datagram[8:40])))
            pair.alice.receive_datagram(spoofs[0], pair.now)
            assert pair.alice.generation == 0  # answered, but nothing of hers changed
        return [datagram]

    pair.tap = spoof_on_rekey
    pair.advance(FAST.rekey_after_time + 0.5)
    assert spoofs
    assert pair.alice.generation == pair.bob.generation == 1
    established = pair.of_type("alice", SessionEstablished)
    assert [e.initiator for e in established if isinstance(e, SessionEstablished)] == [True, True]
    assert pair.of_type("alice", KeyConfirmed) == [KeyConfirmed(0), KeyConfirmed(1)]
    assert not pair.of_type("alice", HandshakeFailed) and not pair.of_type("bob", HandshakeFailed)
    assert pair.bob.drops == {DropReason.UNEXPECTED: 1}  # Alice's RESPONSE to the spoof
    exchange(pair, b"after")


def test_a_replayed_init_during_the_peers_rekey_does_not_abort_it() -> None:
    pair = established_pair(FAST)
    (first_init,) = [d for s, d in pair.wire if kind(d) is MessageType.INIT]
    replayed: list[bytes] = []

    def replay_before_confirm(sender: str, datagram: bytes) -> list[bytes]:
        if sender == "alice" and kind(datagram) is MessageType.CONFIRM and not replayed:
            # Bob holds a RESPONSE for Alice's rekey; Alice's INIT of the first handshake, replayed,
            # gets there before her CONFIRM. It must not replace the pending handshake.
            replayed.append(first_init)
            pair.bob.receive_datagram(first_init, pair.now)
        return [datagram]

    pair.tap = replay_before_confirm
    pair.advance(FAST.rekey_after_time + 0.5)
    assert replayed
    assert pair.alice.generation == pair.bob.generation == 1
    assert pair.of_type("alice", KeyConfirmed) == [KeyConfirmed(0), KeyConfirmed(1)]
    assert not pair.of_type("alice", HandshakeFailed) and not pair.of_type("bob", HandshakeFailed)
    exchange(pair, b"after")


def test_an_unconfirmed_init_while_established_leaves_the_keys_and_is_forgotten_quietly() -> None:
    config = dataclasses.replace(FAST, responder_timeout=5.0)  # it expires before the rekey is due
    pair = established_pair(config)
    pair.bob.receive_datagram(encode_init(77, ephemeral_above(bytes(32))), pair.now)
    pair.flush()  # Bob's RESPONSE reaches Alice, who never asked for it
    assert pair.alice.drops == {DropReason.UNEXPECTED: 1}
    assert len(pair.bob.local_indices()) == 2  # its keys' index and the pending answer's
    assert pair.bob.generation == 0 and pair.bob.state is SessionState.ESTABLISHED
    exchange(pair, b"during")
    pair.advance(config.responder_timeout + 1.0)
    assert len(pair.bob.local_indices()) == 1  # the answer to the spoof is forgotten
    assert not pair.of_type("bob", HandshakeFailed)  # a stranger's INIT is no failure of ours
    pair.advance(FAST.rekey_after_time + 1.0)
    assert pair.alice.generation == pair.bob.generation == 1
    exchange(pair, b"after")


def test_a_restarted_peer_still_replaces_the_session() -> None:
    pair = established_pair()
    pair.alice = SecureSession(
        pair.alice_id, DevVerifier(), expected_peer_id=pair.bob_id.peer_id, random_bytes=seeded(33)
    )
    pair.alice.connect(pair.now)
    pair.flush()
    assert pair.bob.generation == 1 and pair.alice.generation == 0
    exchange(pair, b"restarted")


def test_both_sides_rekeying_at_once_while_established_end_with_one_generation() -> None:
    pair = established_pair(FAST)
    for i in range(FAST.rekey_after_messages):  # both reach rekey-after-messages before a flush
        pair.alice.send(b"a%d" % i, pair.now)
        pair.bob.send(b"b%d" % i, pair.now)
    alice_out, bob_out = pair.alice.datagrams_to_send(pair.now), pair.bob.datagrams_to_send(pair.now)
    assert MessageType.INIT in map(kind, alice_out) and MessageType.INIT in map(kind, bob_out)
    for datagram in alice_out:  # the two INITs cross on the wire
        pair.bob.receive_datagram(datagram, pair.now)
    for datagram in bob_out:
        pair.alice.receive_datagram(datagram, pair.now)
    pair.flush()
    pair.advance(pair.now + FAST.previous_key_grace + 1.0)  # the old keys are gone
    assert pair.alice.generation == pair.bob.generation == 1
    assert (pair.alice.drops + pair.bob.drops)[DropReason.GLARE_LOST] >= 1
    assert not pair.of_type("alice", HandshakeFailed) and not pair.of_type("bob", HandshakeFailed)
    exchange(pair, b"after")
