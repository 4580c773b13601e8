import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.proto.link.frames import (
    CONTROL_MAX,
    HEADER,
    HEADER_SIZE,
    FrameDecoder,
    FrameError,
    FrameErrorReason,
    FrameKind,
    RawFrame,
    decode_datagram,
    encode,
)
from node.proto.vocabulary import Frame, Priority


def flat(frames: list[Frame | RawFrame]) -> list[tuple[FrameKind, int, int, bytes]]:
    """(kind, message id, priority, payload) of each frame: DATA comes out as the interface's Frame."""
    return [
        (FrameKind.DATA, f.message_id, f.priority, f.payload)
        if isinstance(f, Frame)
        else (f.kind, f.message_id, f.priority, f.payload)
        for f in frames
    ]


def test_frames_round_trip_across_any_split() -> None:
    wire = (
        encode(FrameKind.DATA, b"hello", 7, 2)
        + encode(FrameKind.PING, b"", 9)
        + encode(FrameKind.DATA, b"x" * 1000, 8)
    )
    for cut in range(len(wire) + 1):
        decoder = FrameDecoder(max_message=4096)
        frames = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert flat(frames) == [
            (FrameKind.DATA, 7, 2, b"hello"),
            (FrameKind.PING, 9, 0, b""),
            (FrameKind.DATA, 8, 0, b"x" * 1000),
        ]
        assert decoder.buffered == 0


def test_oversized_data_frame_refused_on_its_header_before_buffering_the_payload() -> None:
    decoder = FrameDecoder(max_message=1 << 20)
    header = HEADER.pack(2 << 20, FrameKind.DATA, 0, 1)
    with pytest.raises(FrameError) as err:
        decoder.feed(header)
    assert err.value.reason is FrameErrorReason.TOO_LARGE
    assert decoder.buffered == 0
    with pytest.raises(FrameError) as again:
        decoder.feed(b"more")
    assert again.value.reason is FrameErrorReason.BROKEN


def test_exactly_the_maximum_is_accepted() -> None:
    decoder = FrameDecoder(max_message=100)
    assert decoder.feed(encode(FrameKind.DATA, b"a" * 100))[0].payload == b"a" * 100


def test_control_frames_have_their_own_small_limit() -> None:
    decoder = FrameDecoder(max_message=1 << 20)
    with pytest.raises(FrameError) as err:
        decoder.feed(encode(FrameKind.PING, b"x" * (CONTROL_MAX + 1)))
    assert err.value.reason is FrameErrorReason.TOO_LARGE


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (HEADER.pack(0, 0, 0, 0), FrameErrorReason.UNKNOWN_KIND),
        (HEADER.pack(0, 99, 0, 0), FrameErrorReason.UNKNOWN_KIND),
        (HEADER.pack(0, FrameKind.DATA, 4, 0), FrameErrorReason.BAD_PRIORITY),
    ],
)
def test_bad_headers(header: bytes, reason: FrameErrorReason) -> None:
    with pytest.raises(FrameError) as err:
        FrameDecoder(1024).feed(header)
    assert err.value.reason is reason


def test_partial_header_waits() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(encode(FrameKind.DATA, b"abc")[: HEADER_SIZE - 1]) == []
    assert decoder.buffered == HEADER_SIZE - 1


@given(st.binary(max_size=4096), st.integers(min_value=1, max_value=64))
def test_garbage_either_frames_or_raises_a_frame_error_and_the_buffer_stays_capped(
    data: bytes, chunk: int
) -> None:
    decoder = FrameDecoder(max_message=512)
    try:
        for i in range(0, len(data), chunk):
            decoder.feed(data[i : i + chunk])
            assert decoder.buffered <= HEADER_SIZE + 512 + chunk
    except FrameError:
        pass


def test_many_frames_in_one_read_come_out_in_order_as_interface_frames() -> None:
    decoder = FrameDecoder(max_message=2048)
    wire = b"".join(encode(FrameKind.DATA, bytes([i % 256]) * i, i, i % 4) for i in range(300))
    frames = decoder.feed(wire)
    assert all(type(f) is Frame for f in frames)
    assert [(f.message_id, f.payload, f.priority) for f in frames if isinstance(f, Frame)] == [
        (i, bytes([i % 256]) * i, Priority(i % 4)) for i in range(300)
    ]
    assert all(type(f.priority) is Priority for f in frames if isinstance(f, Frame))
    assert decoder.controls == 0
    assert decoder.buffered == 0


def test_controls_counts_the_control_frames_of_the_last_feed_only() -> None:
    decoder = FrameDecoder(max_message=64)
    wire = encode(FrameKind.DATA, b"a", 1) + encode(FrameKind.PING, b"", 5) + encode(FrameKind.PONG, b"", 6)
    assert flat(decoder.feed(wire)) == [
        (FrameKind.DATA, 1, 0, b"a"),
        (FrameKind.PING, 5, 0, b""),
        (FrameKind.PONG, 6, 0, b""),
    ]
    assert decoder.controls == 2
    decoder.feed(encode(FrameKind.DATA, b"b", 2))
    assert decoder.controls == 0


def test_a_frame_split_across_reads_then_more_frames_in_the_last_read() -> None:
    decoder = FrameDecoder(max_message=4096)
    big = encode(FrameKind.DATA, b"B" * 3000, 1)
    tail = encode(FrameKind.DATA, b"t", 2) + encode(FrameKind.CLOSE, b"\x01")
    reads = [big[:5], big[5:1000], big[1000:2000], big[2000:] + tail + encode(FrameKind.DATA, b"p", 3)[:9]]
    out: list[Frame | RawFrame] = []
    for read in reads[:-1]:
        assert decoder.feed(read) == []
    out += decoder.feed(reads[-1])
    assert flat(out) == [
        (FrameKind.DATA, 1, 0, b"B" * 3000),
        (FrameKind.DATA, 2, 0, b"t"),
        (FrameKind.CLOSE, 0, 0, b"\x01"),
    ]
    assert decoder.buffered == 9  # the start of the next header, kept
    assert flat(decoder.feed(encode(FrameKind.DATA, b"p", 3)[9:])) == [(FrameKind.DATA, 3, 0, b"p")]
    assert decoder.buffered == 0


def test_a_payload_arriving_as_its_own_read_is_not_copied() -> None:
    decoder = FrameDecoder(max_message=1 << 20)
    payload = b"z" * 100_000
    assert decoder.feed(HEADER.pack(len(payload), FrameKind.DATA, 1, 9)) == []
    [frame] = decoder.feed(payload)
    assert isinstance(frame, Frame) and frame.payload is payload


def test_oversize_behind_good_frames_in_one_read_is_refused() -> None:
    decoder = FrameDecoder(max_message=100)
    wire = encode(FrameKind.DATA, b"ok", 1) + HEADER.pack(101, FrameKind.DATA, 0, 2)
    with pytest.raises(FrameError) as err:
        decoder.feed(wire)
    assert err.value.reason is FrameErrorReason.TOO_LARGE
    assert decoder.buffered == 0


def test_oversize_header_split_across_reads_is_refused_before_its_payload() -> None:
    decoder = FrameDecoder(max_message=100)
    header = HEADER.pack(1 << 20, FrameKind.DATA, 0, 2)
    assert decoder.feed(encode(FrameKind.DATA, b"ok", 1) + header[:6]) != []
    with pytest.raises(FrameError) as err:
        decoder.feed(header[6:])
    assert err.value.reason is FrameErrorReason.TOO_LARGE
    assert decoder.buffered == 0


def test_oversize_control_frame_behind_a_split_frame_is_refused() -> None:
    decoder = FrameDecoder(max_message=1000)
    first = encode(FrameKind.DATA, b"x" * 500, 1)
    assert decoder.feed(first[:100]) == []
    with pytest.raises(FrameError) as err:
        decoder.feed(first[100:] + HEADER.pack(CONTROL_MAX + 1, FrameKind.PING, 0, 0))
    assert err.value.reason is FrameErrorReason.TOO_LARGE


_frames = st.lists(
    st.tuples(
        st.sampled_from([FrameKind.DATA, FrameKind.DATA, FrameKind.PING, FrameKind.CLOSE]),
        st.integers(min_value=0, max_value=(1 << 64) - 1),
        st.integers(min_value=0, max_value=3),
        st.binary(max_size=700),
    ),
    max_size=30,
)


@given(_frames, st.lists(st.integers(min_value=0, max_value=8000), max_size=12))
def test_any_frames_cut_anywhere_decode_to_the_same_frames(
    frames: list[tuple[FrameKind, int, int, bytes]], cuts: list[int]
) -> None:
    """The one-pass parse and the spanning-frame path agree with the wire, whatever the reads."""
    wire = b"".join(encode(k, p, i, prio) for k, i, prio, p in frames)
    bounds = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    decoder = FrameDecoder(max_message=700)
    out: list[Frame | RawFrame] = []
    controls = 0
    for a, b in itertools.pairwise(bounds):
        out += decoder.feed(wire[a:b])
        controls += decoder.controls
        assert decoder.buffered <= HEADER_SIZE + 700 + (b - a)
    assert flat(out) == [(k, i, prio, p) for k, i, prio, p in frames]
    assert controls == sum(k is not FrameKind.DATA for k, *_ in frames)
    assert decoder.buffered == 0


def test_a_datagram_decodes_to_the_one_data_frame_that_fills_it() -> None:
    wire = encode(FrameKind.DATA, b"move 7", 7, Priority.HIGH)
    assert decode_datagram(wire) == Frame(7, b"move 7", Priority.HIGH)
    assert decode_datagram(encode(FrameKind.DATA, b"", 1)) == Frame(1, b"", Priority(0))


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"garbage", FrameErrorReason.BAD_LENGTH),  # shorter than a header
        (encode(FrameKind.DATA, b"abc", 1)[:-1], FrameErrorReason.BAD_LENGTH),  # cut short
        (encode(FrameKind.DATA, b"abc", 1) + b"x", FrameErrorReason.BAD_LENGTH),  # bytes after it
        (encode(FrameKind.DATA, b"a", 1) + encode(FrameKind.DATA, b"b", 2), FrameErrorReason.BAD_LENGTH),
        (encode(FrameKind.PING, b"", 9), FrameErrorReason.NOT_DATA),
        (HEADER.pack(0, 99, 0, 0), FrameErrorReason.UNKNOWN_KIND),
        (HEADER.pack(0, FrameKind.DATA, 4, 0), FrameErrorReason.BAD_PRIORITY),
    ],
)
def test_a_datagram_that_is_not_one_whole_data_frame_is_refused(
    datagram: bytes, reason: FrameErrorReason
) -> None:
    with pytest.raises(FrameError) as err:
        decode_datagram(datagram)
    assert err.value.reason is reason
