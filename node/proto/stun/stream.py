"""Framing of STUN messages and ChannelData over a byte stream (TCP, TLS; RFC 8489 §6.2.2,
RFC 8656 §12.4), with one size-capped receive buffer that commits or rolls back on partial input
(the shape of wsproto's ``Buffer``)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NoReturn

from node.proto.stun.channeldata import ChannelData, is_channel_data
from node.proto.stun.errors import DecodeReason, StreamOverflowError, StunDecodeError
from node.proto.stun.message import Message, decode
from node.proto.stun.types import HEADER_SIZE, MAGIC_COOKIE

_PEEK = struct.Struct("!HH")  # STUN: type, length; ChannelData: channel, length
_COOKIE = struct.Struct("!I")
# Large enough for the largest STUN message (20 + 65535) and ChannelData (4 + 65535 + 3).
DEFAULT_MAX_BUFFER = 128 * 1024


class ReceiveBuffer:
    """Bytes in, exact slices out. ``take`` advances a cursor; ``commit`` drops what was taken,
    ``rollback`` returns it, so a parser can give up on a partial frame without copying."""

    def __init__(self, max_size: int) -> None:
        self._data = bytearray()
        self._cursor = 0
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self._data)

    def feed(self, data: bytes) -> None:
        wanted = len(self._data) + len(data)
        if wanted > self.max_size:
            raise StreamOverflowError(self.max_size, wanted)
        self._data += data

    def peek(self, size: int) -> bytes | None:
        end = self._cursor + size
        return bytes(self._data[self._cursor : end]) if end <= len(self._data) else None

    def take(self, size: int) -> bytes | None:
        out = self.peek(size)
        if out is not None:
            self._cursor += size
        return out

    def commit(self) -> None:
        del self._data[: self._cursor]
        self._cursor = 0

    def rollback(self) -> None:
        self._cursor = 0


@dataclass(frozen=True, slots=True)
class StunFrame:
    """A STUN message from the stream, with its raw bytes for ``verify_integrity``."""

    message: Message
    raw: bytes


class StreamFramer:
    """Feed stream bytes; take out complete frames one by one.

    Framing errors (bytes that are neither STUN nor ChannelData, a frame larger than the cap)
    are fatal: the stream cannot be resynchronised, every later call raises again and the
    connection must be closed. A STUN frame whose content is bad (e.g. a wrong FINGERPRINT) is
    consumed and reported by ``StunDecodeError``; the stream stays usable.
    """

    def __init__(self, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        self._buffer = ReceiveBuffer(max_buffer)
        self._broken: StunDecodeError | StreamOverflowError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def feed(self, data: bytes) -> None:
        """Buffer bytes from the stream. Raises ``StreamOverflowError`` past the cap."""
        self._check()
        try:
            self._buffer.feed(data)
        except StreamOverflowError as exc:
            self._broken = exc
            raise

    def next_frame(self) -> StunFrame | ChannelData | None:
        """The next complete frame, or None until more bytes arrive."""
        self._check()
        buffer = self._buffer
        head = buffer.peek(4)
        if head is None:
            return None
        first, length = _PEEK.unpack(head)
        if is_channel_data(head):
            size = 4 + length + (-length & 3)  # padded to 4 on streams (RFC 8656 §12.4)
        elif first < 0x4000:  # top bits 00: STUN (RFC 8489 §5)
            size = HEADER_SIZE + length
            cookie = buffer.peek(8)
            if cookie is not None and _COOKIE.unpack_from(cookie, 4)[0] != MAGIC_COOKIE:
                self._fail(StunDecodeError(DecodeReason.BAD_MAGIC, "stream framing lost"))
            if length & 3:
                self._fail(StunDecodeError(DecodeReason.BAD_LENGTH, "STUN length not 4n"))
        else:
            self._fail(StunDecodeError(DecodeReason.NOT_STUN, f"first bytes {first:#06x}"))
        if size > buffer.max_size:
            self._fail(StreamOverflowError(buffer.max_size, size))
        frame = buffer.take(size)
        if frame is None:
            buffer.rollback()
            return None
        buffer.commit()
        if first < 0x4000:
            return StunFrame(decode(frame), frame)
        return ChannelData(first, frame[4 : 4 + length])

    def _check(self) -> None:
        if self._broken is not None:
            raise StunDecodeError(DecodeReason.STREAM_BROKEN, str(self._broken))

    def _fail(self, error: StunDecodeError | StreamOverflowError) -> NoReturn:
        self._broken = error
        raise error
