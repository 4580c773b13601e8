"""Fragmentation and reassembly of one message: every size up to 1 MiB, with loss, duplication
and reordering; the wire format's checks; expiry and the timer."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from node.proto.datagram.errors import FragmentDrop, FragmentError, FragmentMisuse, FragmentUsageError
from node.proto.datagram.fragments import (
    HEADER_SIZE,
    MIN_CHUNK,
    PATH_BUDGET,
    TURN_PLAINTEXT,
    UDP_PLAINTEXT,
    chunk_size,
    fragment,
    plaintext_budget,
)
from node.proto.datagram.reassembly import Reassembler, ReassemblyLimits
from node.proto.session.messages import TRANSPORT_OVERHEAD
from node.proto.session.secure_session import DatagramReceived
from node.proto.vocabulary import Frame, Priority
from tests.unit.session_harness import established_pair

MIB = 1 << 20
CHUNK = chunk_size(UDP_PLAINTEXT)
LIMITS = ReassemblyLimits()


def payload_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def fed(reassembler: Reassembler[str], fragments: list[bytes], now: float = 0.0) -> list[Frame]:
    out = []
    for data in fragments:
        frame = reassembler.receive("peer", data, now)
        if frame is not None:
            out.append(frame)
    return out


def sizes() -> st.SearchStrategy[int]:
    """Any size up to 1 MiB, weighted towards a multiple of the chunk size and its neighbours."""
    near_boundary = st.builds(
        lambda k, d: min(MIB, max(0, k * CHUNK + d)), st.integers(0, MIB // CHUNK + 1), st.integers(-2, 2)
    )
    return st.one_of(st.integers(0, MIB), near_boundary, st.sampled_from([0, 1, CHUNK, MIB - 1, MIB]))


def test_udp_fragments_sealed_by_the_session_are_at_most_1200_bytes() -> None:
    pair = established_pair()
    message = payload_of(3 * CHUNK + 7)
    parts = fragment(Frame(5, message), UDP_PLAINTEXT, MIB)
    for data in parts:
        pair.alice.send(data, pair.now)
    sent_before = len(pair.wire)
    pair.flush()
    wire = [datagram for name, datagram in pair.wire[sent_before:] if name == "alice"]
    assert [len(d) for d in wire] == [PATH_BUDGET] * 3 + [7 + HEADER_SIZE + TRANSPORT_OVERHEAD]
    reassembler: Reassembler[str] = Reassembler()
    received = [e.payload for e in pair.events["bob"] if isinstance(e, DatagramReceived)]
    got = fed(reassembler, [p for p in received if p])  # b"": the session's key confirmation
    assert got == [Frame(5, message)]


def test_the_turn_budget_leaves_room_for_channel_data() -> None:
    assert TURN_PLAINTEXT == UDP_PLAINTEXT - 4 == PATH_BUDGET - 4 - 32
    assert plaintext_budget(247 - 3) == 247 - 3 - 32  # a BLE ATT MTU of 247
    assert max(map(len, fragment(Frame(1, bytes(5000)), TURN_PLAINTEXT, MIB))) == TURN_PLAINTEXT


@settings(max_examples=60, deadline=None)
@given(size=sizes(), seed=st.integers(0, 2**32 - 1))
@example(size=MIB, seed=0)
@example(size=0, seed=1)
def test_every_size_arrives_whole_once_despite_duplication_and_reordering(size: int, seed: int) -> None:
    rng = random.Random(seed)
    priority = Priority(rng.randrange(4))
    message_id = rng.choice([0, (1 << 64) - 1, rng.getrandbits(64)])
    message = payload_of(size, seed)
    parts = fragment(Frame(message_id, message, priority), UDP_PLAINTEXT, MIB)
    assert all(len(p) <= UDP_PLAINTEXT for p in parts)
    copies = parts + rng.sample(parts, k=rng.randint(0, len(parts)))  # duplicates
    rng.shuffle(copies)
    reassembler: Reassembler[str] = Reassembler()
    assert fed(reassembler, copies) == [Frame(message_id, message, priority)]
    stats = reassembler.stats()
    assert (stats.reassemblies, stats.buffered_bytes, stats.delivered) == (0, 0, 1)
    assert stats.drops.get(FragmentDrop.DUPLICATE, 0) == len(copies) - len(parts)


@settings(max_examples=40, deadline=None)
@given(size=sizes().filter(lambda s: s > CHUNK), seed=st.integers(0, 2**32 - 1))
def test_a_lost_fragment_means_never_delivered_then_expired_and_counted(size: int, seed: int) -> None:
    rng = random.Random(seed)
    parts = fragment(Frame(9, payload_of(size, seed)), UDP_PLAINTEXT, MIB)
    lost = rng.randrange(len(parts))
    kept = parts[:lost] + parts[lost + 1 :]
    rng.shuffle(kept)
    kept += rng.sample(kept, k=min(3, len(kept)))
    reassembler: Reassembler[str] = Reassembler()
    assert fed(reassembler, kept, now=1.0) == []
    assert reassembler.stats().reassemblies == 1
    deadline = reassembler.get_timer()
    assert deadline == 1.0 + LIMITS.max_age
    reassembler.handle_timer(deadline - 0.001)
    assert reassembler.stats().reassemblies == 1
    reassembler.handle_timer(deadline)
    stats = reassembler.stats()
    assert (stats.reassemblies, stats.buffered_bytes, stats.delivered) == (0, 0, 0)
    assert stats.drops[FragmentDrop.EXPIRED] == 1
    assert reassembler.get_timer() is None
    # The lost fragment arriving after expiry starts afresh; it completes nothing.
    assert reassembler.receive("peer", parts[lost], deadline) is None


def test_every_small_size_round_trips_at_the_smallest_chunk() -> None:
    budget = HEADER_SIZE + MIN_CHUNK
    reassembler: Reassembler[str] = Reassembler()
    for size in range(5 * MIN_CHUNK + 2):
        message = payload_of(size, size)
        parts = fragment(Frame(size, message), budget, MIB)
        assert len(parts) == max(1, -(-size // MIN_CHUNK))
        assert fed(reassembler, parts[::-1]) == [Frame(size, message)]


def test_progress_keeps_a_slow_message_alive() -> None:
    parts = fragment(Frame(1, payload_of(5 * CHUNK)), UDP_PLAINTEXT, MIB)
    reassembler: Reassembler[str] = Reassembler()
    now = 0.0
    for data in parts[:-1]:
        assert reassembler.receive("peer", data, now) is None
        now += LIMITS.max_age - 1  # the whole message takes far longer than max_age
    assert reassembler.receive("peer", parts[-1], now) == Frame(1, payload_of(5 * CHUNK))


def test_late_duplicates_of_a_delivered_message_are_ignored_until_it_is_forgotten() -> None:
    parts = fragment(Frame(3, payload_of(2 * CHUNK)), UDP_PLAINTEXT, MIB)
    reassembler: Reassembler[str] = Reassembler()
    assert len(fed(reassembler, parts)) == 1
    assert fed(reassembler, parts[:1], now=1.0) == []
    assert reassembler.stats().reassemblies == 0  # no reassembly that could only expire
    assert reassembler.stats().drops[FragmentDrop.DUPLICATE] == 1
    later = LIMITS.max_age + 1
    assert len(fed(reassembler, parts, now=later)) == 1  # remembered for max_age only


def test_senders_with_the_same_message_id_do_not_mix() -> None:
    a = fragment(Frame(1, b"a" * 3 * CHUNK), UDP_PLAINTEXT, MIB)
    b = fragment(Frame(1, b"b" * 3 * CHUNK), UDP_PLAINTEXT, MIB)
    reassembler: Reassembler[str] = Reassembler()
    out = [
        reassembler.receive(sender, data, 0.0)
        for pair in zip(a, b, strict=True)
        for sender, data in zip("ab", pair, strict=True)
    ]
    assert [f.payload[:1] for f in out if f is not None] == [b"a", b"b"]


def test_the_fragmenter_refuses_what_it_cannot_do() -> None:
    cases = [
        (Frame(1, bytes(MIB + 1)), UDP_PLAINTEXT, FragmentMisuse.MESSAGE_TOO_LARGE),
        (Frame(1 << 64, b"x"), UDP_PLAINTEXT, FragmentMisuse.BAD_MESSAGE_ID),
        (Frame(-1, b"x"), UDP_PLAINTEXT, FragmentMisuse.BAD_MESSAGE_ID),
        (Frame(1, b"x"), HEADER_SIZE + MIN_CHUNK - 1, FragmentMisuse.BUDGET_TOO_SMALL),
    ]
    for frame, budget, reason in cases:
        with pytest.raises(FragmentUsageError) as caught:
            fragment(frame, budget, MIB)
        assert caught.value.reason is reason
    assert len(fragment(Frame(1, bytes(200_000)), 100_000, MIB)[0]) == HEADER_SIZE + 0xFFFF  # u16 chunk


_HEADER = struct.Struct("!BQIHI")


def raw(header: tuple[int, int, int, int, int], size: int) -> bytes:
    """A fragment with any header (flags, id, length, chunk, index) and ``size`` payload bytes."""
    return _HEADER.pack(*header) + bytes(size)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(HEADER_SIZE - 1), FragmentDrop.TRUNCATED),
        (raw((0x04, 1, 10, 64, 0), 10), FragmentDrop.RESERVED_BITS),
        (raw((0, 1, MIB + 1, 1024, 0), 1024), FragmentDrop.TOO_LARGE),
        (raw((0, 1, 100, MIN_CHUNK - 1, 0), MIN_CHUNK - 1), FragmentDrop.BAD_GEOMETRY),
        (raw((0, 1, 100, 64, 2), 36), FragmentDrop.BAD_GEOMETRY),  # count is 2
        (raw((0, 1, 100, 64, 1), 35), FragmentDrop.BAD_GEOMETRY),  # the last carries 36
        (raw((0, 1, 100, 64, 0), 63), FragmentDrop.BAD_GEOMETRY),  # the others carry the chunk
        (raw((0, 1, MIB, MIN_CHUNK, 0), MIN_CHUNK), FragmentDrop.TOO_LARGE),  # too costly for a share
    ],
)
def test_a_malformed_fragment_is_a_typed_counted_error(data: bytes, reason: FragmentDrop) -> None:
    reassembler: Reassembler[str] = Reassembler()
    with pytest.raises(FragmentError) as caught:
        reassembler.receive("peer", data, 0.0)
    assert caught.value.reason is reason
    assert str(caught.value).startswith(f"{reason.value}: ")
    assert reassembler.stats().drops == {reason: 1}
    assert reassembler.stats().reassemblies == 0


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (raw((1, 7, 200, 64, 1), 64), FragmentDrop.INCONSISTENT),  # another priority
        (raw((0, 7, 201, 64, 1), 64), FragmentDrop.INCONSISTENT),  # another length
        (raw((0, 7, 200, 100, 1), 100), FragmentDrop.INCONSISTENT),  # another chunk size
        (raw((0, 7, 200, 64, 4), 8), FragmentDrop.BAD_GEOMETRY),  # index past the count
        (raw((0, 7, 200, 64, 1), 63), FragmentDrop.BAD_GEOMETRY),
        (raw((0, 7, 200, 64, 0), 64)[:-1] + b"\x01", FragmentDrop.CONFLICTING_DUPLICATE),
    ],
)
def test_a_fragment_contradicting_its_message_drops_the_reassembly(
    second: bytes, reason: FragmentDrop
) -> None:
    reassembler: Reassembler[str] = Reassembler()
    assert reassembler.receive("peer", raw((0, 7, 200, 64, 0), 64), 0.0) is None
    assert reassembler.stats().reassemblies == 1
    with pytest.raises(FragmentError) as caught:
        reassembler.receive("peer", second, 0.0)
    assert caught.value.reason is reason
    stats = reassembler.stats()
    assert (stats.reassemblies, stats.buffered_bytes, stats.drops) == (0, 0, {reason: 1})
    # The message's other fragments now start a new reassembly: nothing delivers a mixed message.
    assert fed(reassembler, [raw((0, 7, 200, 64, i), 64 if i < 3 else 8) for i in (1, 2, 3)]) == []


def test_limits_are_checked() -> None:
    for bad in (
        {"sender_max_reassemblies": 0},
        {"sender_max_reassemblies": 200},
        {"sender_max_bytes": 8 * MIB},
        {"max_message": 3 * MIB},
        {"max_age": 0.0},
        {"max_completed": -1},
    ):
        with pytest.raises(FragmentUsageError) as caught:
            ReassemblyLimits(**bad)  # type: ignore[arg-type]
        assert caught.value.reason is FragmentMisuse.BAD_LIMITS


def test_each_receive_expires_what_is_due_without_the_timer() -> None:
    stale = fragment(Frame(1, bytes(2 * CHUNK)), UDP_PLAINTEXT, MIB)
    fresh = fragment(Frame(2, bytes(2 * CHUNK)), UDP_PLAINTEXT, MIB)
    reassembler: Reassembler[str] = Reassembler()
    reassembler.receive("peer", stale[0], 0.0)
    reassembler.receive("peer", fresh[0], LIMITS.max_age)  # no handle_timer: the caps still hold
    stats = reassembler.stats()
    assert (stats.reassemblies, stats.drops) == (1, {FragmentDrop.EXPIRED: 1})
    assert reassembler.get_timer() == 2 * LIMITS.max_age


def test_delivered_messages_are_remembered_up_to_max_completed() -> None:
    messages = [fragment(Frame(i, bytes(2 * CHUNK)), UDP_PLAINTEXT, MIB) for i in range(3)]
    for remembered in (0, 1):
        reassembler: Reassembler[str] = Reassembler(ReassemblyLimits(max_completed=remembered))
        for parts in messages:
            assert len(fed(reassembler, parts)) == 1
        fed(reassembler, [messages[-1][0], messages[0][0]])  # late duplicates
        assert reassembler.stats().reassemblies == 2 - remembered  # only the last is remembered


def test_each_delivered_message_is_forgotten_max_age_after_its_own_delivery() -> None:
    a = fragment(Frame(1, bytes(2 * CHUNK)), UDP_PLAINTEXT, MIB)
    b = fragment(Frame(2, bytes(2 * CHUNK)), UDP_PLAINTEXT, MIB)
    reassembler: Reassembler[str] = Reassembler()
    fed(reassembler, a, now=0.0)
    fed(reassembler, b, now=20.0)
    fed(reassembler, [b[0], a[0]], now=LIMITS.max_age)
    stats = reassembler.stats()
    assert stats.drops == {FragmentDrop.DUPLICATE: 1}  # b's; a's starts a reassembly again
    assert stats.reassemblies == 1


# -- messages of one fragment (the reassembler's fast path: no reassembly state) -----------------


def test_single_fragment_messages_interleaved_with_multi_fragment_ones_each_arrive_once() -> None:
    reassembler: Reassembler[str] = Reassembler()
    big = [Frame(100 + i, payload_of(3 * CHUNK + i, seed=i), Priority.BULK) for i in range(3)]
    small = [Frame(i, payload_of(i * 7, seed=i), Priority(i % 4)) for i in range(12)]
    pieces = {frame.message_id: fragment(frame, UDP_PLAINTEXT, MIB) for frame in big}
    stream: list[bytes] = []
    for i, frame in enumerate(small):  # a small message between every two fragments of the big ones
        stream += fragment(frame, UDP_PLAINTEXT, MIB)
        for frags in pieces.values():
            if i < len(frags):
                stream.append(frags[i])
    out = fed(reassembler, stream)
    assert sorted(out, key=lambda f: f.message_id) == small + big
    assert all(type(f.priority) is Priority for f in out)
    stats = reassembler.stats()
    assert (stats.reassemblies, stats.buffered_bytes, stats.delivered) == (0, 0, len(small) + len(big))


def test_a_repeated_single_fragment_message_is_a_counted_duplicate() -> None:
    reassembler: Reassembler[str] = Reassembler()
    (data,) = fragment(Frame(9, b"move e2e4"), UDP_PLAINTEXT, MIB)
    assert fed(reassembler, [data, data, data]) == [Frame(9, b"move e2e4")]
    assert reassembler.stats().drops == {FragmentDrop.DUPLICATE: 2}
    assert reassembler.receive("other peer", data, 0.0) == Frame(9, b"move e2e4")  # not the same sender's


def test_single_fragment_duplicates_are_only_remembered_when_max_completed_allows() -> None:
    reassembler: Reassembler[str] = Reassembler(ReassemblyLimits(max_completed=0))
    (data,) = fragment(Frame(9, b"x"), UDP_PLAINTEXT, MIB)
    assert fed(reassembler, [data, data]) == [Frame(9, b"x"), Frame(9, b"x")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (raw((0, 1, 10, 64, 0), 9), FragmentDrop.BAD_GEOMETRY),  # one fragment, one byte short
        (raw((0, 1, 10, 64, 0), 11), FragmentDrop.BAD_GEOMETRY),  # one fragment, one byte over
        (raw((0, 1, 64, 64, 0), 63), FragmentDrop.BAD_GEOMETRY),  # exactly one chunk, short
        (raw((0, 1, 0, 64, 0), 1), FragmentDrop.BAD_GEOMETRY),  # empty message with a byte
        (raw((0, 1, 10, 64, 1), 10), FragmentDrop.BAD_GEOMETRY),  # index 1 of one fragment
        (raw((0x80, 1, 10, 64, 0), 10), FragmentDrop.RESERVED_BITS),
        (raw((0, 1, 10, MIN_CHUNK - 1, 0), 10), FragmentDrop.BAD_GEOMETRY),
    ],
)
def test_a_header_claiming_one_fragment_with_the_wrong_size_is_refused(
    data: bytes, reason: FragmentDrop
) -> None:
    reassembler: Reassembler[str] = Reassembler()
    with pytest.raises(FragmentError) as caught:
        reassembler.receive("peer", data, 0.0)
    assert caught.value.reason is reason
    stats = reassembler.stats()
    assert (stats.drops, stats.delivered, stats.reassemblies) == ({reason: 1}, 0, 0)


def test_a_single_fragment_message_over_max_message_is_refused() -> None:
    reassembler: Reassembler[str] = Reassembler(ReassemblyLimits(max_message=100))
    (data,) = fragment(Frame(1, bytes(101)), UDP_PLAINTEXT, MIB)
    with pytest.raises(FragmentError) as caught:
        reassembler.receive("peer", data, 0.0)
    assert caught.value.reason is FragmentDrop.TOO_LARGE
    assert reassembler.receive("peer", fragment(Frame(2, bytes(100)), UDP_PLAINTEXT, MIB)[0], 0.0) == Frame(
        2, bytes(100)
    )
