"""Length-prefixed frames for stream transports (TCP-TLS): the wire format and a capped decoder;
``decode_datagram`` for a datagram that carries one DATA frame whole (the TURN relay's).

Every frame is a 14-byte header and a payload::

    length: u32   payload bytes that follow the header
    kind:   u8    FrameKind
    prio:   u8    Priority of a DATA frame (0 for control frames)
    id:     u64   message id of a DATA frame; the token of a PING/PONG; 0 otherwise

The decoder keeps one receive buffer. A header announcing more than the limit for its kind (the
configured message maximum for DATA, CONTROL_MAX for the rest) is refused as soon as the header
has arrived, before any of the payload is buffered, so the buffer never holds more than one
frame's worth plus one read. Framing errors are fatal to the stream (there is no way to find the
next frame boundary): the decoder stays broken and the connection must close.
"""

from __future__ import annotations

import struct
from collections import deque
from enum import Enum, IntEnum
from typing import NamedTuple, NoReturn, TypeAlias

from node.errors import ReasonError, RemoteError
from node.proto.vocabulary import FRAME_SETTERS, Frame, Priority, make_frame

HEADER = struct.Struct("!IBBQ")
HEADER_SIZE = HEADER.size
CONTROL_MAX = 4096  # the largest control payload (a PROOF with a node certificate: ~600 bytes)
MAX_MESSAGE_ID = (1 << 64) - 1
PRIORITIES = len(Priority)  # node.transports.base.Priority has values 0..3


class FrameKind(IntEnum):
    HELLO = 1  # server -> client: version, server nonce
    PROOF = 2  # client -> server: client nonce, public key, signature
    ACCEPT = 3  # server -> client: the proof was accepted
    REFUSE = 4  # either way: a refusal reason, then the sender closes
    DATA = 5  # an application message
    PING = 6  # keepalive and round-trip sample; answered by PONG with the same id
    PONG = 7
    CLOSE = 8  # an orderly or error close with a reason


class FrameErrorReason(Enum):
    TOO_LARGE = "too_large"  # a frame above the limit for its kind
    UNKNOWN_KIND = "unknown_kind"
    BAD_PRIORITY = "bad_priority"
    BROKEN = "broken"  # fed again after a framing error
    BAD_LENGTH = "bad_length"  # a datagram's frame: the header's length is not the datagram's
    NOT_DATA = "not_data"  # a datagram's frame: a control kind where only DATA is carried


class FrameError(ReasonError[FrameErrorReason], RemoteError):
    """The peer's byte stream cannot be framed; the connection must close."""


class RawFrame(NamedTuple):
    """One decoded control frame (every kind but DATA). A NamedTuple, not a frozen dataclass:
    a tuple is built in C while a frozen dataclass sets each field through object.__setattr__."""

    kind: FrameKind
    priority: int
    message_id: int
    payload: bytes


Decoded: TypeAlias = Frame | RawFrame
"""What the decoder yields: a DATA frame as the Transport interface's Frame, the rest as RawFrame."""


def encode(kind: FrameKind, payload: bytes = b"", message_id: int = 0, priority: int = 0) -> bytes:
    return HEADER.pack(len(payload), kind, priority, message_id) + payload


_KINDS = {int(k): k for k in FrameKind}
_DATA = int(FrameKind.DATA)
_PRIORITY = tuple(Priority)  # wire value -> Priority, without an enum call per message
_UNPACK_FROM = HEADER.unpack_from


def decode_datagram(data: bytes) -> Frame:
    """The one DATA frame that fills ``data`` (a datagram: one frame each, nothing buffered).
    Raises FrameError when it is anything else."""
    size = len(data)
    if size < HEADER_SIZE:
        raise FrameError(FrameErrorReason.BAD_LENGTH, f"{size} bytes, shorter than a frame header")
    length, kind, priority, message_id = _UNPACK_FROM(data)
    if kind != _DATA:
        reason = FrameErrorReason.NOT_DATA if kind in _KINDS else FrameErrorReason.UNKNOWN_KIND
        raise FrameError(reason, f"frame kind {kind}")
    if priority >= PRIORITIES:
        raise FrameError(FrameErrorReason.BAD_PRIORITY, f"priority {priority}")
    if length != size - HEADER_SIZE:
        raise FrameError(
            FrameErrorReason.BAD_LENGTH, f"header says {length} bytes, the datagram has {size - HEADER_SIZE}"
        )
    return make_frame(message_id, data[HEADER_SIZE:], _PRIORITY[priority])


class FrameDecoder:
    """Feed stream bytes, get complete frames.

    Each read is parsed in one pass in place (a header unpacked at an offset, the payload sliced
    out: its one copy). Only a frame that spans reads is buffered, as the list of reads not yet
    consumed and an offset into the first: nothing is copied while it is incomplete, and its
    payload is copied exactly once, out of however many reads it spans. The held bytes never
    exceed one frame plus one read, since a header above the limit is refused before its payload
    is waited for.

    A DATA frame comes out as ``node.transports.base.Frame`` (plain data, no I/O), the message
    the transport hands to its consumer, so that a message is one object from the wire on.
    """

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.controls = 0  # control frames (RawFrame) in what the last feed returned
        self._pieces: deque[bytes] = deque()
        self._offset = 0  # consumed bytes of _pieces[0]
        self._held = 0  # unconsumed bytes in _pieces
        self._wanted = HEADER_SIZE  # held bytes needed before parsing can go on
        self._broken: FrameError | None = None

    @property
    def buffered(self) -> int:
        return self._held

    def feed(self, data: bytes) -> list[Decoded]:
        """Every frame completed by ``data`` in order; raises FrameError on a framing error."""
        if self._broken is not None:
            raise FrameError(FrameErrorReason.BROKEN, str(self._broken))
        self.controls = 0
        frames: list[Decoded] = []
        if not data:
            return frames
        try:
            if self._held:
                rest = self._resume(data, frames)
                if rest is None:
                    return frames  # still inside a frame that spans reads
                data, pos = rest
            else:
                pos = 0
            self._parse(data, pos, frames)
        except FrameError:
            self._pieces.clear()  # nothing after a framing error is worth keeping
            self._held = self._offset = 0
            raise
        return frames

    def _parse(self, buf: bytes, pos: int, frames: list[Decoded]) -> None:
        """The one pass over a read from ``pos``: every whole frame in it, the tail kept."""
        end = len(buf)
        max_message = self.max_message
        append = frames.append
        new, (set_id, set_payload, set_priority) = object.__new__, FRAME_SETTERS  # make_frame, inlined
        unpack_from, header_size, data, priorities = _UNPACK_FROM, HEADER_SIZE, _DATA, _PRIORITY
        while end - pos >= header_size:
            length, kind, priority, message_id = unpack_from(buf, pos)
            start = pos + header_size
            stop = start + length
            if kind == data and length <= max_message and priority < PRIORITIES:
                if stop > end:
                    break
                frame = new(Frame)  # = make_frame(message_id, payload, priority)
                set_id(frame, message_id)
                set_payload(frame, buf[start:stop])
                set_priority(frame, priorities[priority])
                append(frame)
            else:
                frame_kind = self._check(length, kind, priority)  # raises unless a valid control
                if stop > end:
                    break
                append(RawFrame(frame_kind, priority, message_id, buf[start:stop]))
                self.controls += 1
            pos = stop
        left = end - pos
        if left:
            self._pieces.append(buf)
            self._offset = pos
            self._held = left
            # a whole header is there (and was checked): wait for its payload
            self._wanted = HEADER_SIZE + length if left >= HEADER_SIZE else HEADER_SIZE

    def _resume(self, data: bytes, frames: list[Decoded]) -> tuple[bytes, int] | None:
        """Append ``data`` to the held reads and finish the frames that span them. The read and
        the offset where the rest lies in it alone (for ``_parse``), or None when nothing is left to
        parse (a frame still incomplete, or the reads used up exactly)."""
        pieces = self._pieces
        pieces.append(data)
        self._held += len(data)
        while self._held >= self._wanted:
            if len(pieces) == 1:
                offset = self._offset
                pieces.clear()
                self._held = self._offset = 0
                self._wanted = HEADER_SIZE
                return data, offset
            length, kind, priority, message_id = HEADER.unpack(self._peek_header())
            frame_kind = self._check(length, kind, priority)
            total = HEADER_SIZE + length
            if self._held < total:
                self._wanted = total
                return None
            self._skip(HEADER_SIZE)
            payload = self._take(length)
            if frame_kind is FrameKind.DATA:
                frames.append(make_frame(message_id, payload, _PRIORITY[priority]))
            else:
                frames.append(RawFrame(frame_kind, priority, message_id, payload))
                self.controls += 1
            self._wanted = HEADER_SIZE
        return None

    def _peek_header(self) -> bytes | memoryview:
        first, offset = self._pieces[0], self._offset
        if len(first) - offset >= HEADER_SIZE:
            return memoryview(first)[offset : offset + HEADER_SIZE]
        out = bytearray()  # a header split across reads: rare, and 14 bytes
        for piece in self._pieces:
            out += memoryview(piece)[offset:]
            offset = 0
            if len(out) >= HEADER_SIZE:
                break
        return bytes(out[:HEADER_SIZE])

    def _skip(self, size: int) -> None:
        self._held -= size
        while size:
            first = self._pieces[0]
            left = len(first) - self._offset
            if size < left:
                self._offset += size
                return
            size -= left
            self._pieces.popleft()
            self._offset = 0

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes as one new bytes object (the only copy a payload costs)."""
        if not size:
            return b""
        first, offset = self._pieces[0], self._offset
        if len(first) - offset >= size:
            out = first[offset : offset + size] if offset or size != len(first) else first
            self._skip(size)
            return out
        views: list[memoryview] = []
        need = size
        for piece in self._pieces:
            part = memoryview(piece)[offset : offset + need]
            views.append(part)
            need -= len(part)
            offset = 0
            if not need:
                break
        self._skip(size)
        return b"".join(views)

    def _check(self, length: int, kind: int, priority: int) -> FrameKind:
        frame_kind = _KINDS.get(kind)
        if frame_kind is None:
            self._fail(FrameError(FrameErrorReason.UNKNOWN_KIND, f"frame kind {kind}"))
        limit = self.max_message if frame_kind is FrameKind.DATA else CONTROL_MAX
        if length > limit:
            self._fail(
                FrameError(FrameErrorReason.TOO_LARGE, f"{frame_kind.name} of {length} bytes > {limit}")
            )
        if priority >= PRIORITIES:
            self._fail(FrameError(FrameErrorReason.BAD_PRIORITY, f"priority {priority}"))
        return frame_kind

    def _fail(self, error: FrameError) -> NoReturn:
        self._broken = error
        raise error
