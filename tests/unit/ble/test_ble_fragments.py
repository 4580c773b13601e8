"""BLE link fragmentation (bluez.proto.fragments): round trips at every ATT MTU, each drop reason,
the caps (128 per link, 30 s, 1 MiB node-wide), and random bytes never raising."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bluez.proto.errors import BleProtoMisuse, BleProtoUsageError, ChunkDrop
from bluez.proto.fragments import (
    MAX_DATAGRAM,
    NUMBERS,
    WINDOW,
    ChunkLimits,
    Fragmenter,
    LinkReassembler,
    ReassemblyPool,
    chunk_capacity,
    chunk_count,
)

MTUS = (23, 185, 247, 517)


def link() -> LinkReassembler:
    return ReassemblyPool().open_link()


def feed(reassembler: LinkReassembler, chunks: list[bytes], now: float = 0.0) -> list[bytes]:
    return [d for chunk in chunks if (d := reassembler.receive(chunk, now)) is not None]


def first(number: int, length: int, data: bytes = b"x") -> bytes:
    return bytes((0x80 | number, length >> 8, length & 0xFF)) + data


@pytest.mark.parametrize("mtu", MTUS)
def test_1200_byte_datagram_round_trip_fits_each_write(mtu: int) -> None:
    datagram = random.Random(mtu).randbytes(1200)
    chunks = Fragmenter().fragment(datagram, mtu)
    assert all(len(c) <= chunk_capacity(mtu) for c in chunks)
    assert len(chunks) == chunk_count(1200, mtu)
    assert feed(link(), chunks) == [datagram]


def test_one_byte_header_costs_64_writes_at_mtu_23() -> None:
    # 17 bytes in the first chunk, 19 in each other: 64 writes (a 2-byte header would need 67).
    assert chunk_count(1200, 23) == 64


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, MAX_DATAGRAM), min_size=1, max_size=6),
    mtu=st.sampled_from(MTUS) | st.integers(23, 517),
    data=st.data(),
)
def test_interleaved_datagrams_round_trip(sizes: list[int], mtu: int, data: st.DataObject) -> None:
    """Any datagrams, any MTU, chunks of different datagrams interleaved in any way that keeps
    each datagram's chunks and the first chunks in order (what the link guarantees)."""
    fragmenter = Fragmenter()
    datagrams = [random.Random(i).randbytes(size) for i, size in enumerate(sizes)]
    queues = [fragmenter.fragment(d, mtu) for d in datagrams]
    started = 0
    order: list[bytes] = []
    while any(queues):
        choices = [i for i, q in enumerate(queues) if q and (i < started or i == started)]
        i = data.draw(st.sampled_from(choices))
        started = max(started, i + 1)
        order.append(queues[i].pop(0))
    reassembler = link()
    assert sorted(feed(reassembler, order)) == sorted(datagrams)
    assert reassembler.stats().drops == {}
    assert reassembler.stats().buffered_bytes == 0


def test_fragmenter_refuses_misuse() -> None:
    with pytest.raises(BleProtoUsageError) as error:
        Fragmenter().fragment(bytes(MAX_DATAGRAM + 1), 23)
    assert error.value.reason is BleProtoMisuse.DATAGRAM_TOO_LARGE
    with pytest.raises(BleProtoUsageError) as error:
        Fragmenter().fragment(b"", 23)
    assert error.value.reason is BleProtoMisuse.EMPTY_DATAGRAM
    for mtu in (22, 518):
        with pytest.raises(BleProtoUsageError) as error:
            Fragmenter().fragment(b"x", mtu)
        assert error.value.reason is BleProtoMisuse.BAD_MTU


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [
        ([b""], ChunkDrop.TRUNCATED),
        ([b"\x80\x00"], ChunkDrop.TRUNCATED),
        ([first(0, 0, b"")], ChunkDrop.BAD_LENGTH),
        ([first(0, 1, b"ab")], ChunkDrop.BAD_LENGTH),
        ([first(0, MAX_DATAGRAM + 1)], ChunkDrop.TOO_LARGE),
        ([b"\x05abc"], ChunkDrop.ORPHAN),
        ([first(3, 10, b"ab"), first(3, 10, b"ab")], ChunkDrop.DUPLICATE),
        ([first(3, 4, b"ab"), b"\x03abc"], ChunkDrop.OVERRUN),
        ([first(3, 4, b"ab"), b"\x03"], ChunkDrop.TRUNCATED),
    ],
)
def test_each_malformed_chunk_is_dropped_and_counted(chunks: list[bytes], reason: ChunkDrop) -> None:
    reassembler = link()
    assert feed(reassembler, chunks) == []
    assert reassembler.stats().drops == {reason: 1}


def test_lost_end_is_superseded_and_a_lost_first_chunk_orphans_its_rest() -> None:
    fragmenter = Fragmenter()
    a, b, c, d = (fragmenter.fragment(bytes([i]) * 100, 23) for i in range(4))
    reassembler = link()
    # a loses its end, b and c their first chunks: only d may be delivered.
    assert feed(reassembler, a[:-1] + b[1:] + c[1:] + d) == [bytes([3]) * 100]
    assert reassembler.stats().reassemblies == 1  # a: nothing has reused its number yet
    # The sender's next datagrams move the window on: a's number is reused, a is dropped.
    for _ in range(WINDOW - 4):  # numbers 4 .. 63
        feed(reassembler, fragmenter.fragment(b"s", 23))
    assert reassembler.stats().reassemblies == 1
    feed(reassembler, fragmenter.fragment(b"s", 23))  # 64: a (number 0) is WINDOW behind
    drops = reassembler.stats().drops
    assert drops[ChunkDrop.SUPERSEDED] == 1
    assert drops[ChunkDrop.ORPHAN] == len(b) - 1 + len(c) - 1
    assert reassembler.stats().buffered_bytes == 0


def test_a_skip_past_a_held_number_supersedes_it() -> None:
    reassembler = link()
    feed(reassembler, [first(5, 50), first(6, 50), first(9, 50)])
    assert reassembler.stats().reassemblies == 3
    feed(reassembler, [first(100, 50)])  # 10 .. 100: none held are in between, but 5, 6 and 9
    # are now more than WINDOW behind 100.
    assert reassembler.stats().drops == {ChunkDrop.SUPERSEDED: 3}
    feed(reassembler, [first(1, 50)])  # 101 .. 1: 100 is only 29 behind, kept
    assert reassembler.stats().drops == {ChunkDrop.SUPERSEDED: 3}
    feed(reassembler, [first(100, 50)])  # skipped 2 .. 100: the held 100 is stale, 1 too far behind
    assert reassembler.stats().drops == {ChunkDrop.SUPERSEDED: 5}
    assert reassembler.stats().reassemblies == 1


def test_a_number_reused_after_a_lost_first_chunk_never_completes_an_old_reassembly() -> None:
    fragmenter = Fragmenter()
    old = fragmenter.fragment(b"o" * 60, 23)
    others = [fragmenter.fragment(b"s", 23)[0] for _ in range(NUMBERS - 1)]
    new = fragmenter.fragment(b"n" * 60, 23)
    reassembler = link()
    # old's tail and new's first chunk are lost: new's rest must not finish old.
    delivered = feed(reassembler, old[:1] + others + new[1:])
    assert delivered == [b"s"] * (NUMBERS - 1)
    assert reassembler.stats().drops[ChunkDrop.ORPHAN] == len(new) - 1


def test_65th_concurrent_reassembly_on_a_link_drops_its_oldest() -> None:
    fragmenter = Fragmenter()
    datagrams = [fragmenter.fragment(bytes([i]) * 40, 23) for i in range(WINDOW + 1)]
    reassembler = link()
    feed(reassembler, [chunks[0] for chunks in datagrams])
    assert reassembler.stats().reassemblies == WINDOW
    # More than WINDOW behind the newest: dropped before the link cap has to bite.
    assert reassembler.stats().drops == {ChunkDrop.SUPERSEDED: 1}
    assert feed(reassembler, datagrams[0][1:]) == []
    assert feed(reassembler, datagrams[WINDOW][1:]) == [bytes([WINDOW]) * 40]


def test_129th_concurrent_reassembly_on_the_node_is_refused() -> None:
    pool = ReassemblyPool()
    links = [pool.open_link() for _ in range(3)]
    starts = {0: WINDOW, 1: WINDOW, 2: 1}
    queues = {}
    for i, count in starts.items():
        fragmenter = Fragmenter()
        queues[i] = [fragmenter.fragment(bytes([i]) * 40, 23) for _ in range(count)]
        feed(links[i], [chunks[0] for chunks in queues[i]])
    assert pool.stats().reassemblies == 128
    assert links[2].stats().drops == {ChunkDrop.NODE_FULL: 1}
    # Refused, not evicting: the other links' datagrams still complete.
    assert feed(links[0], [c for chunks in queues[0] for c in chunks[1:]]) == [bytes(40)] * WINDOW
    assert feed(links[2], queues[2][0][1:]) == []  # orphans of the refused one
    assert pool.stats().reassemblies == WINDOW


def test_lower_reassembly_cap() -> None:
    reassembler = ReassemblyPool(ChunkLimits(link_reassemblies=2)).open_link()
    fragmenter = Fragmenter()
    feed(reassembler, [fragmenter.fragment(bytes(50), 23)[0] for _ in range(5)])
    assert reassembler.stats().reassemblies == 2
    assert reassembler.stats().drops == {ChunkDrop.TOO_MANY: 3}


def test_reassembly_expires_30_s_after_its_first_chunk_in_virtual_time() -> None:
    reassembler = link()
    chunks = Fragmenter().fragment(bytes(100), 23)
    feed(reassembler, chunks[:2], now=100.0)
    assert reassembler.get_timer() == 130.0
    feed(reassembler, chunks[2:3], now=129.9)
    assert reassembler.stats().reassemblies == 1
    reassembler.handle_timer(130.0)
    assert reassembler.stats().drops == {ChunkDrop.EXPIRED: 1}
    assert reassembler.get_timer() is None
    assert feed(reassembler, chunks[3:], now=130.0) == []
    assert reassembler.stats().drops[ChunkDrop.ORPHAN] == len(chunks) - 3


def test_expiry_also_runs_on_receive_without_the_timer() -> None:
    reassembler = link()
    fragmenter = Fragmenter()
    feed(reassembler, fragmenter.fragment(bytes(100), 23)[:1], now=0.0)
    feed(reassembler, fragmenter.fragment(b"late", 23), now=31.0)
    assert reassembler.stats().drops == {ChunkDrop.EXPIRED: 1}


def test_node_caps_bytes_at_1_mib_across_links_and_gets_them_back_on_close() -> None:
    # With the node's count raised, 1 MiB binds: 8 links x 64 datagrams x 2048 bytes.
    pool = ReassemblyPool(ChunkLimits(max_reassemblies=1024))
    links = [pool.open_link() for _ in range(9)]
    for reassembler in links:
        fragmenter = Fragmenter()
        feed(reassembler, [fragmenter.fragment(bytes(MAX_DATAGRAM), 23)[0] for _ in range(WINDOW)])
    assert pool.stats().buffered_bytes == 1 << 20
    assert [r.stats().reassemblies for r in links] == [WINDOW] * 8 + [0]
    assert links[8].stats().drops == {ChunkDrop.BYTES_FULL: WINDOW}
    links[0].close()
    stats = pool.stats()
    assert stats.buffered_bytes == 7 << 17
    assert stats.links == 8
    assert stats.drops[ChunkDrop.LINK_CLOSED] == WINDOW
    assert feed(links[8], Fragmenter().fragment(bytes(1000), 23)) == [bytes(1000)]


def test_limits_refuse_a_link_cap_above_the_window() -> None:
    with pytest.raises(BleProtoUsageError) as error:
        ChunkLimits(link_reassemblies=WINDOW + 1)
    assert error.value.reason is BleProtoMisuse.BAD_LIMITS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=60), st.floats(0, 100))
def test_random_chunks_never_raise_and_never_leak_bytes(chunks: list[bytes], step: float) -> None:
    pool = ReassemblyPool()
    reassembler = pool.open_link()
    for i, chunk in enumerate(chunks):
        result = reassembler.receive(chunk, i * step)
        assert result is None or 0 < len(result) <= MAX_DATAGRAM
    assert pool.stats().buffered_bytes == reassembler.stats().buffered_bytes
    reassembler.close()
    assert pool.stats().buffered_bytes == 0
