"""The sans-IO core of one TCP-TLS link: the in-band identity proof, data, keepalive, close.

It runs over an established TLS 1.3 channel (the driver does TLS). Python's ssl has no verify
callback and no keying-material exporter, so the client proves its identity inside the channel:

    server -> HELLO  (version, server nonce Ns)
    client -> PROOF  (client nonce Nc, client public key, Ed25519 signature over
                      PROOF_CONTEXT || SHA-256(server certificate DER) || Ns || Nc,
                      credential: the client's fleet certificate DER, or empty)
    server -> ACCEPT | REFUSE(reason)

The server's certificate carries the server's identity key and TLS 1.3's CertificateVerify proves
the server holds it; the signature over that certificate's fingerprint binds the client's proof
to this TLS session (a relay presents another certificate, so a proof it forwards fails), and Ns
makes every proof fresh. The client's certificate travels in the PROOF rather than in the TLS
handshake so that the server checks it in our code and can tell the client exactly why it is
refused (an OpenSSL verify failure on the server side reaches neither the app nor, reliably, the
client). Signing and checking are the trust policy's (node.security.trust); this core
only carries the messages and enforces their order.

Shape (aioquic): ``receive_data(data, now)``, ``data_to_send()``, ``next_event()``,
``get_timer()``, ``handle_timer(now)``. Every transition is in ``TRANSITIONS``, keyed by
(state, input). Bad input from the peer never raises: it closes the link with a typed reason
(a CLOSE frame is sent, ``LinkClosed`` is the last event). Local misuse raises LinkUsageError.

The server's decision on a proof (``accept``/``refuse``) comes after the driver has checked the
signature, and the peer's bytes may have closed the core meanwhile (a frame pipelined behind its
PROOF): a decision on a closed core is a no-op that says so (``Decision.LINK_CLOSED``), never an
error, so no sequence of peer bytes can make the driver's next call raise.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final, cast

from node.errors import LocalError
from node.proto.link.frames import (
    HEADER,
    HEADER_SIZE,
    FrameDecoder,
    FrameError,
    FrameErrorReason,
    FrameKind,
    RawFrame,
    encode,
)
from node.proto.vocabulary import Frame

PROTOCOL_VERSION = 1
NONCE_SIZE = 32
KEY_SIZE = 32
SIGNATURE_SIZE = 64
PROOF_CONTEXT = b"bitcraps tls proof v1\x00"
_HELLO = struct.Struct(f"!B{NONCE_SIZE}s")
_PROOF = struct.Struct(f"!{NONCE_SIZE}s{KEY_SIZE}s{SIGNATURE_SIZE}s")  # then the credential
_REASON = struct.Struct("!B")
MAX_PINGS_IN_FLIGHT = 8
LARGE_PIECE = 16 * 1024  # a payload this large is written as its own piece (chunks_to_send)
_HEADER_PACK = HEADER.pack
_DATA = FrameKind.DATA


def proof_message(server_certificate_der: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """The bytes the client signs: bound to the server certificate it saw and to both nonces."""
    return PROOF_CONTEXT + hashlib.sha256(server_certificate_der).digest() + server_nonce + client_nonce


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class CloseReason(IntEnum):
    """Why a link ended; sent on the wire in REFUSE and CLOSE frames (u8)."""

    CLOSED = 1  # an orderly close
    TOO_MANY_CONNECTIONS = 2
    NOT_TRUSTED = 3  # the identity proof or certificate did not verify
    NOT_PINNED = 4  # a valid proof for a peer id that is not pinned
    PEER_MISMATCH = 5  # a valid proof for another peer than the one expected
    PROTOCOL_ERROR = 6  # a frame out of order or malformed
    MESSAGE_TOO_LARGE = 7
    TIMEOUT = 8  # handshake not done in time, or the peer went silent
    SHUTDOWN = 9
    UNKNOWN_CA = 10  # the client's certificate is not from the fleet CA
    EXPIRED = 11
    NOT_YET_VALID = 12
    SAN_MISMATCH = 13  # the certificate names another peer than its key
    BAD_CERTIFICATE = 14
    BAD_PROOF = 15  # the signature does not verify for this session (a relay in between)
    TOO_MANY_PENDING = 16  # too many connections still proving an identity; retry shortly
    TOO_MANY_PENDING_FROM_ADDRESS = 17  # that, from the client's own address
    UNKNOWN = 255  # a reason code this version does not know


class LinkState(Enum):
    AWAIT_HELLO = "await_hello"  # client: TLS is up, waiting for the server's nonce
    HELLO_RECEIVED = "hello_received"  # client: the driver is signing the proof
    START = "start"  # server: about to send HELLO
    AWAIT_PROOF = "await_proof"  # server
    PROOF_SENT = "proof_sent"  # client
    VERIFYING = "verifying"  # server: the proof is with the trust policy
    OPEN = "open"
    CLOSED = "closed"


class LinkInput(Enum):
    RECV_HELLO = "recv_hello"
    RECV_PROOF = "recv_proof"
    RECV_ACCEPT = "recv_accept"
    RECV_REFUSE = "recv_refuse"
    RECV_DATA = "recv_data"
    RECV_PING = "recv_ping"
    RECV_PONG = "recv_pong"
    RECV_CLOSE = "recv_close"
    SEND_HELLO = "send_hello"
    SEND_PROOF = "send_proof"
    ACCEPT = "accept"
    REFUSE = "refuse"
    SEND_DATA = "send_data"
    SEND_PING = "send_ping"
    CLOSE = "close"
    FAIL = "fail"  # a framing error, a protocol violation or a timeout


_S, _I = LinkState, LinkInput
_ANY_LIVE = (
    _S.AWAIT_HELLO,
    _S.HELLO_RECEIVED,
    _S.START,
    _S.AWAIT_PROOF,
    _S.PROOF_SENT,
    _S.VERIFYING,
    _S.OPEN,
)

_OPEN = LinkState.OPEN

TRANSITIONS: Final[dict[tuple[LinkState, LinkInput], LinkState]] = {
    (_S.START, _I.SEND_HELLO): _S.AWAIT_PROOF,
    (_S.AWAIT_HELLO, _I.RECV_HELLO): _S.HELLO_RECEIVED,
    (_S.HELLO_RECEIVED, _I.SEND_PROOF): _S.PROOF_SENT,
    (_S.PROOF_SENT, _I.RECV_ACCEPT): _S.OPEN,
    (_S.AWAIT_PROOF, _I.RECV_PROOF): _S.VERIFYING,
    (_S.VERIFYING, _I.ACCEPT): _S.OPEN,
    (_S.OPEN, _I.SEND_DATA): _S.OPEN,
    (_S.OPEN, _I.RECV_DATA): _S.OPEN,
    (_S.OPEN, _I.SEND_PING): _S.OPEN,
    (_S.OPEN, _I.RECV_PING): _S.OPEN,
    (_S.OPEN, _I.RECV_PONG): _S.OPEN,
    # A refusal (either side, before OPEN) and a close or failure (any live state) end the link.
    **{(s, _I.REFUSE): _S.CLOSED for s in (_S.START, _S.AWAIT_PROOF, _S.VERIFYING)},
    **{(s, _I.RECV_REFUSE): _S.CLOSED for s in (_S.AWAIT_HELLO, _S.PROOF_SENT)},
    **{(s, _I.CLOSE): _S.CLOSED for s in _ANY_LIVE},
    **{(s, _I.RECV_CLOSE): _S.CLOSED for s in _ANY_LIVE},
    **{(s, _I.FAIL): _S.CLOSED for s in _ANY_LIVE},
}

_RECEIVED: Final[dict[FrameKind, LinkInput]] = {  # control frames; DATA: receive_data
    FrameKind.HELLO: _I.RECV_HELLO,
    FrameKind.PROOF: _I.RECV_PROOF,
    FrameKind.ACCEPT: _I.RECV_ACCEPT,
    FrameKind.REFUSE: _I.RECV_REFUSE,
    FrameKind.PING: _I.RECV_PING,
    FrameKind.PONG: _I.RECV_PONG,
    FrameKind.CLOSE: _I.RECV_CLOSE,
}


class Decision(Enum):
    """What became of the server's accept/refuse."""

    TAKEN = "taken"
    LINK_CLOSED = "link_closed"  # the core had closed itself already (the peer broke the protocol)


class LinkUsageError(LocalError):
    """The driver asked for something the link's state does not allow (a bug in the driver)."""

    def __init__(self, state: LinkState, input_: LinkInput) -> None:
        super().__init__(f"{input_.value} not allowed in {state.value}")
        self.state = state
        self.input = input_


@dataclass(frozen=True, slots=True)
class HelloReceived:
    server_nonce: bytes


@dataclass(frozen=True, slots=True)
class ProofReceived:
    client_nonce: bytes
    public_key: bytes
    signature: bytes
    credential: bytes  # the client's node certificate (DER) with a fleet CA, else empty


@dataclass(frozen=True, slots=True)
class Accepted:
    pass


@dataclass(frozen=True, slots=True)
class DataReceived:
    """The DATA frames of one read, in order: one event per read, not per message."""

    frames: Sequence[Frame]


@dataclass(frozen=True, slots=True)
class PongReceived:
    token: int
    rtt: float


@dataclass(frozen=True, slots=True)
class LinkClosed:
    """The last event. ``by_peer``: the peer sent REFUSE/CLOSE; else we closed (or it broke)."""

    reason: CloseReason
    by_peer: bool
    frame_error: FrameErrorReason | None = None


LinkEvent = HelloReceived | ProofReceived | Accepted | DataReceived | PongReceived | LinkClosed


@dataclass(frozen=True, slots=True)
class LinkTiming:
    handshake_timeout: float = 10.0  # TLS up to OPEN
    keepalive: float = 60.0  # PING after this long without receiving anything
    dead_after: float = 120.0  # close with TIMEOUT after this long without receiving anything


class StreamLink:
    def __init__(self, role: Role, max_message: int, now: float, timing: LinkTiming = LinkTiming()) -> None:
        self.role = role
        self.state = LinkState.AWAIT_HELLO if role is Role.CLIENT else LinkState.START
        self.timing = timing
        self.max_message = max_message
        self._decoder = FrameDecoder(max_message)
        self._out: list[bytes] = []
        self._events: deque[LinkEvent] = deque()
        self._handshake_deadline: float | None = now + timing.handshake_timeout
        self._last_received = now
        self._pings: dict[int, float] = {}  # token -> when sent
        self._next_token = 1
        self.bytes_received = 0
        self.pending_bytes = 0  # queued, not yet taken by data_to_send
        self._bytes_taken = 0  # taken by data_to_send
        self._large_pending = 0  # payloads of LARGE_PIECE bytes or more in _out

    @property
    def bytes_sent(self) -> int:
        return self._bytes_taken + self.pending_bytes

    @property
    def closed(self) -> bool:
        return self.state is LinkState.CLOSED

    # -- transitions --------------------------------------------------------------------------

    def _move(self, input_: LinkInput) -> None:
        try:
            self.state = TRANSITIONS[(self.state, input_)]
        except KeyError:
            raise LinkUsageError(self.state, input_) from None

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self.pending_bytes += len(data)

    def _end(
        self,
        input_: LinkInput,
        reason: CloseReason,
        frame: FrameKind | None,
        frame_error: FrameErrorReason | None = None,
    ) -> None:
        """Leave for CLOSED through ``input_``; tell the peer why with ``frame`` (REFUSE/CLOSE)."""
        if self.state is LinkState.CLOSED:
            return
        self._move(input_)
        if frame is not None:
            self._queue(encode(frame, _REASON.pack(reason)))
        self._handshake_deadline = None
        self._pings.clear()
        by_peer = input_ in (LinkInput.RECV_CLOSE, LinkInput.RECV_REFUSE)
        self._events.append(LinkClosed(reason, by_peer, frame_error))

    # -- driver API ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        self._large_pending = 0
        self._bytes_taken += self.pending_bytes
        self.pending_bytes = 0
        return out

    def chunks_to_send(self) -> list[bytes]:
        """As ``data_to_send``, as few pieces for ``writelines``: small frames (and each large
        payload's header) joined together, every payload of LARGE_PIECE bytes or more left
        alone so that it is not copied once more (TLS makes a record per piece, so small pieces
        are worth joining and large ones are not)."""
        out, self._out = self._out, []
        self._bytes_taken += self.pending_bytes
        self.pending_bytes = 0
        if not self._large_pending:  # the usual: one join, no look at each piece
            return [b"".join(out)] if out else []
        self._large_pending = 0
        large = LARGE_PIECE
        chunks: list[bytes] = []
        small: list[bytes] = []
        for piece in out:
            if len(piece) < large:
                small.append(piece)
                continue
            if small:
                chunks.append(b"".join(small))
                small = []
            chunks.append(piece)
        if small:
            chunks.append(b"".join(small))
        return chunks

    def next_event(self) -> LinkEvent | None:
        return self._events.popleft() if self._events else None

    def send_hello(self, server_nonce: bytes) -> None:
        self._move(LinkInput.SEND_HELLO)
        self._queue(encode(FrameKind.HELLO, _HELLO.pack(PROTOCOL_VERSION, server_nonce)))

    def send_proof(
        self, client_nonce: bytes, public_key: bytes, signature: bytes, credential: bytes = b""
    ) -> None:
        self._move(LinkInput.SEND_PROOF)
        self._queue(encode(FrameKind.PROOF, _PROOF.pack(client_nonce, public_key, signature) + credential))

    def accept(self) -> Decision:
        """Server: admit the peer whose proof verified. LINK_CLOSED (nothing done) when the
        peer's own bytes closed the link while its proof was being checked."""
        if self.state is LinkState.CLOSED:
            return Decision.LINK_CLOSED
        self._move(LinkInput.ACCEPT)
        self._handshake_deadline = None
        self._queue(encode(FrameKind.ACCEPT))
        return Decision.TAKEN

    def refuse(self, reason: CloseReason) -> Decision:
        """Server: refuse the peer (before OPEN) with a reason it will see; LINK_CLOSED (nothing
        done) when the link had closed already."""
        if self.state is LinkState.CLOSED:
            return Decision.LINK_CLOSED
        if (self.state, LinkInput.REFUSE) not in TRANSITIONS:
            raise LinkUsageError(self.state, LinkInput.REFUSE)
        self._end(LinkInput.REFUSE, reason, FrameKind.REFUSE)
        return Decision.TAKEN

    def send_data(self, message_id: int, priority: int, payload: bytes) -> None:
        # A frame above max_message: the peer would close on it; refused locally instead.
        size = len(payload)
        if self.state is not _OPEN or size > self.max_message:
            raise LinkUsageError(self.state, LinkInput.SEND_DATA)
        out = self._out
        out.append(_HEADER_PACK(size, _DATA, priority, message_id))
        out.append(payload)
        self.pending_bytes += HEADER_SIZE + size
        if size >= LARGE_PIECE:
            self._large_pending += 1

    def send_ping(self, now: float) -> int:
        self._move(LinkInput.SEND_PING)
        token = self._next_token
        self._next_token += 1
        self._pings[token] = now
        if len(self._pings) > MAX_PINGS_IN_FLIGHT:  # a peer that never answers cannot grow this
            del self._pings[next(iter(self._pings))]
        self._queue(encode(FrameKind.PING, b"", token))
        return token

    def close(self, reason: CloseReason = CloseReason.CLOSED) -> None:
        """Close with ``reason`` (a CLOSE frame tells the peer). Closing a closed link does nothing."""
        self._end(LinkInput.CLOSE, reason, FrameKind.CLOSE)

    def receive_data(self, data: bytes, now: float) -> None:
        if self.state is LinkState.CLOSED:
            return
        self.bytes_received += len(data)
        self._last_received = now
        try:
            frames = self._decoder.feed(data)
        except FrameError as exc:
            reason = (
                CloseReason.MESSAGE_TOO_LARGE
                if exc.reason is FrameErrorReason.TOO_LARGE
                else CloseReason.PROTOCOL_ERROR
            )
            self._end(LinkInput.FAIL, reason, FrameKind.CLOSE, frame_error=exc.reason)
            return
        if not frames:
            return
        # TRANSITIONS allows RECV_DATA in OPEN only (OPEN -> OPEN): the DATA frames of a read
        # go out as one event, and a read of DATA frames alone (the usual) is that event as is.
        if not self._decoder.controls and self.state is LinkState.OPEN:
            self._events.append(DataReceived(cast("list[Frame]", frames)))
            return
        batch: list[Frame] = []
        for frame in frames:
            if isinstance(frame, Frame):
                if (self.state, LinkInput.RECV_DATA) not in TRANSITIONS:
                    self._end(LinkInput.FAIL, CloseReason.PROTOCOL_ERROR, FrameKind.CLOSE)
                    return
                batch.append(frame)
                continue
            if batch:  # the data before this control frame, in order
                self._events.append(DataReceived(batch))
                batch = []
            self._receive_frame(frame, now)
            if self.closed:
                return
        if batch:
            self._events.append(DataReceived(batch))

    def _receive_frame(self, frame: RawFrame, now: float) -> None:
        """A control frame (DATA is batched by ``receive_data``)."""
        input_ = _RECEIVED[frame.kind]
        if (self.state, input_) not in TRANSITIONS:
            self._end(LinkInput.FAIL, CloseReason.PROTOCOL_ERROR, FrameKind.CLOSE)
            return
        if frame.kind is FrameKind.PING:
            self._queue(encode(FrameKind.PONG, b"", frame.message_id))
        elif frame.kind is FrameKind.PONG:
            sent = self._pings.pop(frame.message_id, None)
            if sent is not None:  # an unknown token is stale (sent before a restart): ignored
                self._events.append(PongReceived(frame.message_id, now - sent))
        elif frame.kind in (FrameKind.CLOSE, FrameKind.REFUSE):
            reason = _reason(frame.payload)
            self._end(input_, reason, None)
            return
        elif not self._handshake_frame(frame):
            self._end(LinkInput.FAIL, CloseReason.PROTOCOL_ERROR, FrameKind.CLOSE)
            return
        self._move(input_)

    def _handshake_frame(self, frame: RawFrame) -> bool:
        """HELLO, PROOF, ACCEPT: check the payload shape and raise the event; False if malformed."""
        if frame.kind is FrameKind.HELLO:
            if len(frame.payload) != _HELLO.size:
                return False
            version, nonce = _HELLO.unpack(frame.payload)
            if version != PROTOCOL_VERSION:
                return False
            self._events.append(HelloReceived(nonce))
        elif frame.kind is FrameKind.PROOF:
            if len(frame.payload) < _PROOF.size:
                return False
            nonce, key, signature = _PROOF.unpack_from(frame.payload)
            self._events.append(ProofReceived(nonce, key, signature, frame.payload[_PROOF.size :]))
        else:  # ACCEPT
            if frame.payload:
                return False
            self._handshake_deadline = None
            self._events.append(Accepted())
        return True

    # -- timers -------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if self.state is LinkState.CLOSED:
            return None
        if self._handshake_deadline is not None:
            return self._handshake_deadline
        if self.state is not LinkState.OPEN:
            return None
        if self._pings:
            return self._last_received + self.timing.dead_after
        return self._last_received + self.timing.keepalive

    def handle_timer(self, now: float) -> None:
        if self.state is LinkState.CLOSED:
            return
        if self._handshake_deadline is not None:
            if now >= self._handshake_deadline:
                self._end(LinkInput.FAIL, CloseReason.TIMEOUT, FrameKind.CLOSE)
            return
        if self.state is not LinkState.OPEN:
            return
        silent = now - self._last_received
        if silent >= self.timing.dead_after:
            self._end(LinkInput.FAIL, CloseReason.TIMEOUT, FrameKind.CLOSE)
        elif silent >= self.timing.keepalive and not self._pings:
            self.send_ping(now)


def _reason(payload: bytes) -> CloseReason:
    if len(payload) != _REASON.size:
        return CloseReason.UNKNOWN
    try:
        return CloseReason(payload[0])
    except ValueError:
        return CloseReason.UNKNOWN
