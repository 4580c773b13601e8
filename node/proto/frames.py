"""Length-prefixed frames for stream transports (TCP-TLS): the wire format and a capped decoder.

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
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import NoReturn

from node.errors import RemoteError

HEADER = struct.Struct("!IBBQ")
HEADER_SIZE = HEADER.size
CONTROL_MAX = 4096  # the largest control payload (a PROOF with a node certificate: ~600 bytes)
MAX_MESSAGE_ID = (1 << 64) - 1
PRIORITIES = 4  # node.transports.base.Priority has values 0..3


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


class FrameError(RemoteError):
    """The peer's byte stream cannot be framed; the connection must close."""

    def __init__(self, reason: FrameErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RawFrame:
    kind: FrameKind
    priority: int
    message_id: int
    payload: bytes


def encode(kind: FrameKind, payload: bytes = b"", message_id: int = 0, priority: int = 0) -> bytes:
    return HEADER.pack(len(payload), kind, priority, message_id) + payload


_KINDS = {int(k): k for k in FrameKind}


class FrameDecoder:
    """Feed stream bytes, get complete frames.

    The receive buffer holds at most one incomplete frame, as the pieces that arrived: nothing
    is copied until the frame is complete (then the pieces are joined once), so a large frame
    spread over many reads costs one join and one payload copy, not one copy per read.
    """

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._pieces: list[bytes] = []
        self._held = 0  # bytes in _pieces
        self._wanted = HEADER_SIZE  # bytes needed before the held frame can be parsed further
        self._broken: FrameError | None = None

    @property
    def buffered(self) -> int:
        return self._held

    def feed(self, data: bytes) -> list[RawFrame]:
        """Every frame completed by ``data`` in order; raises FrameError on a framing error."""
        if self._broken is not None:
            raise FrameError(FrameErrorReason.BROKEN, str(self._broken))
        if self._pieces:
            self._pieces.append(data)
            self._held += len(data)
            if self._held < self._wanted:
                return []  # still incomplete: nothing copied
            data = b"".join(self._pieces)
            self._pieces.clear()
        frames: list[RawFrame] = []
        offset, end = 0, len(data)
        view = memoryview(data)  # a slice of a view copies once
        try:
            while True:
                if end - offset < HEADER_SIZE:
                    self._wanted = HEADER_SIZE
                    break
                length, kind, priority, message_id = HEADER.unpack_from(data, offset)
                frame_kind = self._check(length, kind, priority)
                start = offset + HEADER_SIZE
                stop = start + length
                if stop > end:
                    self._wanted = HEADER_SIZE + length
                    break
                frames.append(RawFrame(frame_kind, priority, message_id, bytes(view[start:stop])))
                offset = stop
            self._held = end - offset
            if self._held:
                self._pieces.append(bytes(view[offset:]) if offset else data)
        finally:
            view.release()
            if self._broken is not None:
                self._pieces.clear()  # nothing after a framing error is worth keeping
                self._held = 0
        return frames

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
