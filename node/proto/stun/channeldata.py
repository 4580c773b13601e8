"""TURN ChannelData messages (RFC 8656 §12.4, §12.5)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from node.proto.stun.errors import DecodeReason, StunDecodeError, StunEncodeError

CHANNEL_MIN = 0x4000  # RFC 8656 §12: channel numbers 0x4000 through 0x4FFF
CHANNEL_MAX = 0x4FFF
CHANNEL_HEADER_SIZE = 4
_HEADER = struct.Struct("!HH")  # channel number, length (RFC 8656 §12.4)
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")


@dataclass(frozen=True, slots=True)
class ChannelData:
    channel: int
    data: bytes


def is_channel_data(data: bytes) -> bool:
    """The one test that tells ChannelData from STUN on the TURN path (a datagram from the server,
    the first bytes of a stream frame): ChannelData's first byte is 0x40-0x4F, its channel number
    0x4000-0x4FFF (RFC 8656 §12, RFC 7983 §7); STUN's first two bits are 00 (RFC 8489 §5). What
    is not ChannelData is decoded as STUN, which refuses bytes that are neither."""
    return len(data) >= CHANNEL_HEADER_SIZE and 0x40 <= data[0] <= 0x4F


def encode_channel_data(channel: int, data: bytes, *, pad: bool = False) -> bytes:
    """One ChannelData message. ``pad`` (needed over TCP/TLS, optional over UDP, RFC 8656
    §12.4) adds zero bytes up to a multiple of 4."""
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise StunEncodeError(f"channel {channel:#x} outside 0x4000-0x4FFF (RFC 8656 §12)")
    if len(data) > 0xFFFF:
        raise StunEncodeError("ChannelData payload longer than 65535 bytes")
    head = _HEADER.pack(channel, len(data))
    return head + data + _PAD[len(data) & 3] if pad else head + data


def decode_channel_data(data: bytes) -> ChannelData:
    """Parse one ChannelData message from a datagram or a stream frame. Up to 3 bytes of
    padding after the payload are accepted, whatever their value (RFC 8656 §12.5)."""
    size = len(data)
    if size < CHANNEL_HEADER_SIZE:
        raise StunDecodeError(DecodeReason.TOO_SHORT, f"{size} bytes")
    channel, length = _HEADER.unpack_from(data)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise StunDecodeError(DecodeReason.BAD_CHANNEL, f"{channel:#06x}")
    end = CHANNEL_HEADER_SIZE + length
    if not end <= size <= end + 3:
        raise StunDecodeError(DecodeReason.BAD_LENGTH, f"header says {length}, got {size - 4}")
    return ChannelData(channel, bytes(data[CHANNEL_HEADER_SIZE:end]))
