import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.proto.frames import (
    CONTROL_MAX,
    HEADER,
    HEADER_SIZE,
    FrameDecoder,
    FrameError,
    FrameErrorReason,
    FrameKind,
    encode,
)


def test_frames_round_trip_across_any_split() -> None:
    wire = (
        encode(FrameKind.DATA, b"hello", 7, 2)
        + encode(FrameKind.PING, b"", 9)
        + encode(FrameKind.DATA, b"x" * 1000, 8)
    )
    for cut in range(len(wire) + 1):
        decoder = FrameDecoder(max_message=4096)
        frames = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert [(f.kind, f.message_id, f.priority, f.payload) for f in frames] == [
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
