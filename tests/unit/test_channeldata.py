"""ChannelData (RFC 8656 §12.4, §12.5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto import stun

channels = st.integers(stun.CHANNEL_MIN, stun.CHANNEL_MAX)


@settings(max_examples=200, deadline=None)
@given(channel=channels, data=st.binary(max_size=200), pad=st.booleans())
def test_round_trip(channel: int, data: bytes, pad: bool) -> None:
    raw = stun.encode_channel_data(channel, data, pad=pad)
    assert len(raw) % 4 == 0 if pad else len(raw) == 4 + len(data)
    assert stun.is_channel_data(raw) and not stun.is_stun(raw)
    assert stun.decode_channel_data(raw) == stun.ChannelData(channel, data)


def test_padding_is_zeros_and_any_padding_is_accepted() -> None:
    assert stun.encode_channel_data(0x4001, b"abcde", pad=True) == b"\x40\x01\x00\x05abcde\0\0\0"
    frame = stun.decode_channel_data(b"\x40\x01\x00\x05abcde\xff\xee\xdd")
    assert frame == stun.ChannelData(0x4001, b"abcde")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x40\x00\x00", stun.DecodeReason.TOO_SHORT),
        (b"\x50\x00\x00\x00", stun.DecodeReason.BAD_CHANNEL),
        (b"\x3f\xff\x00\x00", stun.DecodeReason.BAD_CHANNEL),
        (b"\x40\x00\x00\x05abcd", stun.DecodeReason.BAD_LENGTH),  # short datagram (§12.5)
        (b"\x40\x00\x00\x01a\0\0\0\0", stun.DecodeReason.BAD_LENGTH),  # more than padding
    ],
)
def test_decode_reasons(data: bytes, reason: stun.DecodeReason) -> None:
    with pytest.raises(stun.StunDecodeError) as caught:
        stun.decode_channel_data(data)
    assert caught.value.reason is reason


@pytest.mark.parametrize(("channel", "size"), [(0x3FFF, 1), (0x5000, 1), (0x4000, 65536)])
def test_encode_errors(channel: int, size: int) -> None:
    with pytest.raises(stun.StunEncodeError):
        stun.encode_channel_data(channel, bytes(size))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_decode_errors(data: bytes) -> None:
    try:
        frame = stun.decode_channel_data(data)
    except stun.StunDecodeError:
        return
    assert stun.CHANNEL_MIN <= frame.channel <= stun.CHANNEL_MAX


@pytest.mark.parametrize("first", range(256))
def test_datagrams_and_stream_frames_tell_channel_data_from_stun_by_the_same_first_byte(first: int) -> None:
    """RFC 7983 §7: 0x40-0x4F is ChannelData, 0x00-0x3F (top bits 00) STUN, the rest neither."""
    head = bytes([first, 0x01, 0x00, 0x00])  # a ChannelData header of an empty payload, if it is one
    framer = stun.StreamFramer()
    framer.feed(head)
    if 0x40 <= first <= 0x4F:
        assert stun.is_channel_data(head)
        assert framer.next_frame() == stun.ChannelData((first << 8) | 0x01, b"")
    elif first < 0x40:
        assert not stun.is_channel_data(head)
        assert framer.next_frame() is None  # a STUN header: 20 bytes wanted
    else:
        assert not stun.is_channel_data(head)
        with pytest.raises(stun.StunDecodeError):
            framer.next_frame()
