"""Reassembly caps hold under a flood of first fragments, and the eviction policy (max-min fair
shares, see node.proto.datagram.reassembly) keeps a legitimate sender's message going."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto.datagram.errors import FragmentDrop
from node.proto.datagram.fragments import UDP_PLAINTEXT, chunk_size, fragment
from node.proto.datagram.reassembly import FRAGMENT_OVERHEAD, Reassembler, ReassemblyLimits
from node.proto.vocabulary import Frame

MIB = 1 << 20
CHUNK = chunk_size(UDP_PLAINTEXT)
LIMITS = ReassemblyLimits()
_HEADER = struct.Struct("!BQIHI")


def first_fragment(message_id: int, total: int) -> bytes:
    """Fragment 0 of a message of ``total`` bytes (more than one chunk): all a flooder sends."""
    return _HEADER.pack(0, message_id, total, CHUNK, 0) + bytes(CHUNK)


def cost(total: int) -> int:
    return total + -(-total // CHUNK) * FRAGMENT_OVERHEAD


class Run:
    """Feeds a reassembler and checks the caps after every fragment."""

    def __init__(self, limits: ReassemblyLimits = LIMITS) -> None:
        self.limits = limits
        self.reassembler: Reassembler[str] = Reassembler(limits)
        self.delivered: list[tuple[str, Frame]] = []
        self.now = 0.0

    def feed(self, sender: str, data: bytes) -> None:
        frame = self.reassembler.receive(sender, data, self.now)
        if frame is not None:
            self.delivered.append((sender, frame))
        stats = self.reassembler.stats()
        assert stats.reassemblies <= self.limits.max_reassemblies
        assert stats.buffered_bytes <= self.limits.max_bytes
        assert stats.senders <= stats.reassemblies


@settings(max_examples=15, deadline=None)
@given(
    claims=st.lists(st.integers(CHUNK + 1, MIB), min_size=1, max_size=8),
    per_legit=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_flooding_sender_cannot_stop_another_senders_message(
    claims: list[int], per_legit: int, seed: int
) -> None:
    rng = random.Random(seed)
    run = Run()
    message = Frame(42, rng.randbytes(MIB))
    legit = fragment(message, UDP_PLAINTEXT, MIB)
    rng.shuffle(legit)
    flood_id = 0
    for data in legit:
        run.feed("legit", data)
        for _ in range(per_legit):
            flood_id += 1
            run.feed("flood", first_fragment(flood_id, claims[flood_id % len(claims)]))
            stats = run.reassembler.stats()
            # The flooder stays within its share: the rest is the legitimate message's.
            assert stats.reassemblies <= LIMITS.sender_max_reassemblies + 1
            assert stats.buffered_bytes <= LIMITS.sender_max_bytes + cost(MIB)
    assert run.delivered == [("legit", message)]
    drops = run.reassembler.stats().drops
    assert drops[FragmentDrop.EVICTED_OWN_SHARE] >= flood_id - LIMITS.sender_max_reassemblies
    assert FragmentDrop.EVICTED_FAIR_SHARE not in drops
    # Once the flood stops its reassemblies expire; nothing stays buffered.
    run.now += LIMITS.max_age
    run.reassembler.handle_timer(run.now)
    stats = run.reassembler.stats()
    assert (stats.reassemblies, stats.buffered_bytes, stats.senders) == (0, 0, 0)
    assert stats.drops[FragmentDrop.EXPIRED] > 0


@settings(max_examples=15, deadline=None)
@given(
    flooders=st.integers(2, 40),
    big=st.booleans(),
    per_legit=st.integers(3, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_many_flooding_senders_hold_the_caps_and_a_legitimate_message_completes(
    flooders: int, big: bool, per_legit: int, seed: int
) -> None:
    """Flooders claiming messages as large as the legitimate one (the bytes cap binds) or small
    ones (the count cap binds): the caps hold and the legitimate message completes."""
    rng = random.Random(seed)
    run = Run()
    message = Frame(7, rng.randbytes(MIB if big else 64 * CHUNK))
    legit = fragment(message, UDP_PLAINTEXT, MIB)
    flood_id = 0
    for data in legit:
        run.feed("legit", data)
        for _ in range(per_legit):
            flood_id += 1
            run.feed(f"flood{rng.randrange(flooders)}", first_fragment(flood_id, MIB if big else 2 * CHUNK))
    assert run.delivered == [("legit", message)]
    drops = run.reassembler.stats().drops
    refused = (FragmentDrop.REFUSED_FULL, FragmentDrop.EVICTED_FAIR_SHARE, FragmentDrop.EVICTED_OWN_SHARE)
    assert sum(drops.get(reason, 0) for reason in refused) > 0


def test_a_newcomer_evicts_from_whoever_holds_the_most_and_is_refused_among_equals() -> None:
    limits = ReassemblyLimits(max_reassemblies=4, sender_max_reassemblies=4)
    run = Run(limits)
    for message_id in (1, 2, 3):
        run.feed("a", first_fragment(message_id, 2 * CHUNK))
    run.feed("b", first_fragment(1, 2 * CHUNK))
    run.feed("c", first_fragment(1, 2 * CHUNK))  # a holds 3 > 1: a's stalest (1) goes
    run.feed("d", first_fragment(1, 2 * CHUNK))  # a holds 2 > 1: a's message 2 goes
    assert run.reassembler.stats().drops == {FragmentDrop.EVICTED_FAIR_SHARE: 2}
    run.feed("e", first_fragment(1, 2 * CHUNK))  # everyone holds 1: e is refused
    assert run.reassembler.stats().drops[FragmentDrop.REFUSED_FULL] == 1
    run.feed("a", first_fragment(4, 2 * CHUNK))  # a may replace its own
    assert run.reassembler.stats().drops[FragmentDrop.EVICTED_OWN_SHARE] == 1
    # Who is left completes: b, c and d's message 1, and a's message 4.
    for sender, message_id in (("b", 1), ("c", 1), ("d", 1), ("a", 4), ("a", 3), ("e", 1)):
        run.feed(sender, _HEADER.pack(0, message_id, 2 * CHUNK, CHUNK, 1) + bytes(CHUNK))
    assert [(s, f.message_id) for s, f in run.delivered] == [("b", 1), ("c", 1), ("d", 1), ("a", 4)]


def test_the_bytes_cap_evicts_from_the_largest_holder_only() -> None:
    half = 2 * MIB  # a sender's default byte share
    limits = ReassemblyLimits(max_bytes=3 * MIB, sender_max_bytes=half)
    run = Run(limits)
    run.feed("big", first_fragment(1, MIB))
    run.feed("big", first_fragment(2, MIB - 200 * CHUNK))
    run.feed("small", first_fragment(1, MIB // 2))
    before = run.reassembler.stats().buffered_bytes
    assert before + cost(MIB) > limits.max_bytes
    run.feed("other", first_fragment(1, MIB))  # short of bytes: big holds the most
    stats = run.reassembler.stats()
    assert stats.drops == {FragmentDrop.EVICTED_FAIR_SHARE: 1}
    assert stats.buffered_bytes == before  # big's stalest (1) went, other's as costly came


def test_a_sender_over_its_share_loses_its_stalest_message_not_its_oldest() -> None:
    run = Run(ReassemblyLimits(sender_max_reassemblies=2))
    message = Frame(1, bytes(3 * CHUNK))
    parts = fragment(message, UDP_PLAINTEXT, MIB)
    run.feed("s", parts[0])
    run.now = 1.0
    run.feed("s", first_fragment(2, 2 * CHUNK))
    run.now = 2.0
    run.feed("s", parts[1])  # message 1 progresses: message 2 is now the stalest
    run.feed("s", first_fragment(3, 2 * CHUNK))
    assert run.reassembler.stats().drops == {FragmentDrop.EVICTED_OWN_SHARE: 1}
    run.feed("s", parts[2])
    assert run.delivered == [("s", message)]
    assert run.reassembler.get_timer() == 2.0 + LIMITS.max_age  # message 3's, started at 2.0
