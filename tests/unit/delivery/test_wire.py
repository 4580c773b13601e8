"""The DATA/ACK codec: round trips, and strict decoding (any bytes: a frame or WireError)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.proto.delivery.errors import WireError, WireProblem
from node.proto.delivery.wire import MAX_ACK_RANGES, AckFrame, DataFrame, decode, encode_ack, encode_data
from node.proto.vocabulary import Priority

U64 = st.integers(0, 2**64 - 1)
LIMIT = 1 << 20


@st.composite
def data_frames(draw: st.DrawFn) -> DataFrame:
    reliable = draw(st.booleans())
    sequence = draw(U64)
    floor = draw(st.integers(max(0, sequence - 2**32 + 1), sequence)) if reliable else sequence
    return DataFrame(draw(U64), draw(st.sampled_from(Priority)), sequence, reliable, draw(st.binary()), floor)


@st.composite
def ack_frames(draw: st.DrawFn) -> AckFrame:
    next_ = draw(st.integers(0, 2**40))
    ranges = []
    end = next_
    for i in range(draw(st.integers(0, MAX_ACK_RANGES))):
        first = end + draw(st.integers(0 if i == 0 else 1, 1000))
        last = first + draw(st.integers(0, 1000))
        ranges.append((first, last))
        end = last + 1
    return AckFrame(draw(U64), draw(st.sampled_from(Priority)), next_, tuple(ranges), draw(st.booleans()))


@given(data_frames())
def test_data_round_trip(frame: DataFrame) -> None:
    raw = encode_data(
        frame.epoch, frame.priority, frame.sequence, frame.reliable, frame.payload, floor=frame.floor
    )
    assert decode(raw, LIMIT) == frame


@given(ack_frames())
def test_ack_round_trip(frame: AckFrame) -> None:
    assert (
        decode(encode_ack(frame.epoch, frame.priority, frame.next, frame.ranges, frame.busy), LIMIT) == frame
    )


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_wire_error(raw: bytes) -> None:
    with contextlib.suppress(WireError):
        decode(raw, 64)


@given(st.one_of(data_frames(), ack_frames()), st.data())
def test_mutated_frames_decode_or_raise_wire_error(frame: DataFrame | AckFrame, data: st.DataObject) -> None:
    if isinstance(frame, DataFrame):
        raw = bytearray(
            encode_data(
                frame.epoch, frame.priority, frame.sequence, frame.reliable, frame.payload, floor=frame.floor
            )
        )
    else:
        raw = bytearray(encode_ack(frame.epoch, frame.priority, frame.next, frame.ranges, frame.busy))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(WireError):
        decode(bytes(raw[:cut]), LIMIT)


def ack_with(count: int, pairs: list[tuple[int, int]], flags: int = 0, trailing: bytes = b"") -> bytes:
    body = b"".join(struct.pack(">II", gap, length) for gap, length in pairs)
    return struct.pack(">BBBQQB", 2, flags, 1, 7, 10, count) + body + trailing


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", WireProblem.TRUNCATED),
        (b"\x09", WireProblem.UNKNOWN_TYPE),
        (encode_data(1, Priority.HIGH, 5, True, b"", floor=5)[:-1], WireProblem.TRUNCATED),
        (b"\x01\x02" + encode_data(1, Priority.HIGH, 5, True, b"", floor=5)[2:], WireProblem.RESERVED_FLAGS),
        (
            b"\x01\x01\x04" + encode_data(1, Priority.HIGH, 5, True, b"", floor=5)[3:],
            WireProblem.BAD_PRIORITY,
        ),
        (struct.pack(">BBBQQI", 1, 1, 0, 1, 5, 6), WireProblem.BAD_FLOOR),
        (struct.pack(">BBBQQI", 1, 0, 0, 1, 5, 1), WireProblem.BAD_FLOOR),
        (encode_data(1, Priority.BULK, 0, True, b"x" * (LIMIT + 1), floor=0), WireProblem.PAYLOAD_TOO_LARGE),
        (ack_with(1, [(1, 1)], flags=2), WireProblem.RESERVED_FLAGS),
        (ack_with(MAX_ACK_RANGES + 1, [(1, 1)] * (MAX_ACK_RANGES + 1)), WireProblem.TOO_MANY_RANGES),
        (ack_with(2, [(1, 1)]), WireProblem.TRUNCATED),
        (ack_with(1, [(1, 1)], trailing=b"\x00"), WireProblem.TRAILING_BYTES),
        (ack_with(2, [(1, 1), (0, 1)]), WireProblem.BAD_RANGE),  # adjacent ranges
        (ack_with(1, [(1, 0)]), WireProblem.BAD_RANGE),  # empty
        (struct.pack(">BBBQQBII", 2, 0, 1, 7, 2**64 - 2, 1, 1, 2), WireProblem.BAD_RANGE),  # past 64 bits
    ],
)
def test_malformed_frames_name_their_problem(raw: bytes, problem: WireProblem) -> None:
    with pytest.raises(WireError) as caught:
        decode(raw, LIMIT)
    assert caught.value.reason is problem
