"""One generation of transport keys on its own: the wire layout ``seal`` builds (the counter's bytes
shared by header and nonce), and ``open`` with the anti-replay window folded in (the newest counter
skips the ring check; only authentic datagrams move the window)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto.session import keys
from node.proto.session.errors import DropReason, SessionDecodeError
from node.proto.session.keypair import Keypair
from node.proto.session.messages import TRANSPORT_HEADER, MessageType

KEY_A, KEY_B = bytes(range(32)), bytes(range(32, 64))


def _pair(blocks: int = 2) -> tuple[Keypair, Keypair]:
    sender = Keypair(
        local_index=7, remote_index=0xA1B2C3D4, send_key=KEY_A, receive_key=KEY_B,
        initiator=True, created_at=0.0, replay_blocks=blocks,
    )  # fmt: skip
    receiver = Keypair(
        local_index=0xA1B2C3D4, remote_index=7, send_key=KEY_B, receive_key=KEY_A,
        initiator=False, created_at=0.0, replay_blocks=blocks,
    )  # fmt: skip
    return sender, receiver


def _counter(datagram: bytes) -> int:
    counter: int = TRANSPORT_HEADER.unpack_from(datagram)[2]
    return counter


def _reason(receiver: Keypair, datagram: bytes) -> DropReason:
    with pytest.raises(SessionDecodeError) as caught:
        receiver.open(datagram, _counter(datagram))
    reason: DropReason = caught.value.reason
    return reason


@pytest.mark.parametrize("counter", [0, 1, 255, 2**32 + 5, 2**63 + 1])
def test_seal_is_the_documented_layout(counter: int) -> None:
    """Header = type, receiver index, counter (the AEAD's associated data); nonce = keys.nonce."""
    sender, _ = _pair()
    sender.send_counter = counter
    payload = os.urandom(1200)
    datagram = sender.seal(payload)
    header = TRANSPORT_HEADER.pack(MessageType.TRANSPORT, 0xA1B2C3D4, counter)
    assert datagram[: TRANSPORT_HEADER.size] == header
    opened = ChaCha20Poly1305(KEY_A).decrypt(keys.nonce(counter), datagram[TRANSPORT_HEADER.size :], header)
    assert opened == payload
    assert sender.send_counter == counter + 1  # never the same nonce twice


def test_open_accepts_each_datagram_once() -> None:
    sender, receiver = _pair()
    datagrams = [sender.seal(b"%d" % i) for i in range(5)]
    assert [receiver.open(d, _counter(d)) for d in datagrams] == [b"%d" % i for i in range(5)]
    # The newest (the fast path: no look at the ring) and older ones alike.
    assert {_reason(receiver, d) for d in datagrams} == {DropReason.REPLAYED}


def test_open_drops_what_fell_behind_the_window() -> None:
    sender, receiver = _pair(blocks=2)  # a 64-counter window
    old = sender.seal(b"old")
    sender.send_counter = 1000
    new = sender.seal(b"new")
    assert receiver.open(new, 1000) == b"new"
    assert _reason(receiver, old) is DropReason.TOO_OLD


def test_the_window_slides_in_order_across_words_and_around_the_ring() -> None:
    """Counters in order over several turns of a 2-word ring: each word the window enters is
    cleared first (RFC 6479 §2), so no bit left by a counter 128 behind reads as a replay."""
    sender, receiver = _pair(blocks=2)
    datagrams = [sender.seal(b"%d" % i) for i in range(400)]
    for i in (*range(0, 6), 140, 130, *range(141, 400)):
        assert receiver.open(datagrams[i], i) == b"%d" % i
    assert _reason(receiver, datagrams[399]) is DropReason.REPLAYED
    assert _reason(receiver, datagrams[392]) is DropReason.REPLAYED


def test_a_forged_datagram_moves_nothing() -> None:
    sender, receiver = _pair()
    genuine = sender.seal(b"genuine")
    ahead = bytearray(sender.seal(b"ahead"))
    ahead[-1] ^= 1  # counter 1, tag broken
    huge = bytearray(genuine)
    huge[8:16] = (2**62).to_bytes(8, "little")  # a counter far ahead, not authentic
    for forged in (bytes(ahead), bytes(huge)):
        assert _reason(receiver, forged) is DropReason.DECRYPT_FAILED
    assert receiver.replay.next_counter == 0
    assert receiver.open(genuine, 0) == b"genuine"  # still fresh: nothing forged counted


@settings(max_examples=200)
@given(
    order=st.lists(st.integers(0, 150), max_size=120),
    forged=st.sets(st.integers(0, 150), max_size=20),
)
def test_open_matches_a_set_of_seen_counters(order: list[int], forged: set[int]) -> None:
    """Any delivery order, duplicates and forgeries: a datagram opens iff authentic, never seen,
    and less than the window's size behind the highest accepted."""
    sender, receiver = _pair(blocks=2)
    datagrams = [sender.seal(b"%d" % i) for i in range(151)]
    seen: set[int] = set()
    for counter in order:
        datagram = datagrams[counter]
        if counter in forged:
            datagram = datagram[:-1] + bytes([datagram[-1] ^ 1])
        expected: DropReason | None = None
        if seen and max(seen) - counter >= receiver.replay.size:
            expected = DropReason.TOO_OLD
        elif counter in seen:
            expected = DropReason.REPLAYED
        elif counter in forged:
            expected = DropReason.DECRYPT_FAILED
        if expected is None:
            assert receiver.open(datagram, counter) == b"%d" % counter
            seen.add(counter)
        else:
            assert _reason(receiver, datagram) is expected
