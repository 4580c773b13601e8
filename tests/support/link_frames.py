"""Hostile TCP-TLS link traffic for hypothesis: frames valid or not, cut into writes anywhere.

Shared by the in-memory fuzz of the StreamLink core (tests/unit/test_stream_link_fuzz.py) and the
attack on the node process over real TLS (tests/adversarial/test_tls_fuzz.py). A proof is drawn as
what to get wrong (``ProofKind``) and signed only once the session it is for is known.

``read_wire`` is an oracle written apart from node.proto.link.frames' decoder: how any receiver must
frame the bytes (the 14-byte header ``!IBBQ``, the length limit of each kind, four priorities), so
that a test can say what the node may answer without asking the code under test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from hypothesis import strategies as st

from node.proto.link.frames import CONTROL_MAX, HEADER, MAX_MESSAGE_ID, PRIORITIES, FrameKind, encode
from node.proto.link.stream_link import KEY_SIZE, NONCE_SIZE, PROTOCOL_VERSION, SIGNATURE_SIZE, CloseReason

PROOF_SIZE = NONCE_SIZE + KEY_SIZE + SIGNATURE_SIZE  # before the (optional) credential


class ProofKind(Enum):
    VALID = "valid"
    VALID_WITH_CREDENTIAL = "valid_with_credential"  # development mode ignores the credential
    BAD_SIGNATURE = "bad_signature"  # one bit of the signature flipped
    OTHER_SESSION = "other_session"  # signed over another server certificate (a relay)
    STALE_NONCE = "stale_nonce"  # signed over another server nonce (a replay)
    WRONG_KEY = "wrong_key"  # signed by one key, presenting another
    SHORT = "short"  # a payload too short to hold nonce, key and signature
    TOO_LONG = "too_long"  # a credential that takes the frame above CONTROL_MAX

    @property
    def verifies(self) -> bool:
        return self in (ProofKind.VALID, ProofKind.VALID_WITH_CREDENTIAL)


@dataclass(frozen=True)
class Proof:
    kind: ProofKind
    size: int  # the credential's length, or the payload's for SHORT


@dataclass(frozen=True)
class Raw:
    data: bytes  # a frame (valid or not) or plain garbage


@dataclass(frozen=True)
class Truncated:
    inner: Proof | Raw
    keep: int  # keep this many bytes of it (modulo its length: always a strict prefix)


Piece = Proof | Raw | Truncated
SignProof = Callable[[Proof], bytes]  # a Proof as the PROOF frame's bytes, for one session


def proof_payload(kind: ProofKind, size: int, nonce: bytes, key: bytes, signature: bytes) -> bytes:
    """The PROOF payload for ``kind`` from the parts of a proof that verifies."""
    if kind is ProofKind.SHORT:
        return (nonce + key + signature)[: size % PROOF_SIZE]
    if kind is ProofKind.BAD_SIGNATURE:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    credential = b""
    if kind is ProofKind.VALID_WITH_CREDENTIAL:
        credential = b"c" * size
    elif kind is ProofKind.TOO_LONG:
        credential = b"c" * (CONTROL_MAX - PROOF_SIZE + 1 + size)
    return nonce + key + signature + credential


def render(pieces: Sequence[Piece], sign: SignProof) -> bytes:
    return b"".join(_render(piece, sign) for piece in pieces)


def _render(piece: Piece, sign: SignProof) -> bytes:
    if isinstance(piece, Raw):
        return piece.data
    if isinstance(piece, Proof):
        return sign(piece)
    whole = _render(piece.inner, sign)
    return whole[: piece.keep % len(whole)] if whole else b""


def split(wire: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``wire`` cut at ``cuts`` (taken modulo its length; repeats and 0 ignored)."""
    points = sorted({c % len(wire) for c in cuts} - {0}) if wire else []
    bounds = [0, *points, len(wire)]
    return [wire[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# -- the oracle ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireFrame:
    kind: FrameKind
    priority: int
    message_id: int
    payload: bytes


@dataclass(frozen=True)
class WireView:
    """The frames a receiver can take from ``wire``, up to the first header it must refuse."""

    frames: tuple[WireFrame, ...]
    tail: bytes  # an incomplete last frame
    broken: bool  # a header no receiver may accept ends the stream there
    oversized: bool  # that header is of a known kind, with a length above its kind's limit


def read_wire(wire: bytes, max_message: int) -> WireView:
    frames: list[WireFrame] = []
    pos = 0
    kinds = {int(k) for k in FrameKind}
    while len(wire) - pos >= HEADER.size:
        length, kind, priority, message_id = HEADER.unpack_from(wire, pos)
        if kind not in kinds:
            return WireView(tuple(frames), b"", broken=True, oversized=False)
        limit = max_message if kind == FrameKind.DATA else CONTROL_MAX
        if length > limit or priority >= PRIORITIES:
            return WireView(tuple(frames), b"", broken=True, oversized=length > limit)
        end = pos + HEADER.size + length
        if end > len(wire):
            break
        frames.append(WireFrame(FrameKind(kind), priority, message_id, wire[pos + HEADER.size : end]))
        pos = end
    return WireView(tuple(frames), wire[pos:], broken=False, oversized=False)


# -- strategies ---------------------------------------------------------------------------------

_TOKENS = st.integers(0, MAX_MESSAGE_ID)
_REASON_BYTES = st.one_of(
    st.sampled_from([bytes([r]) for r in CloseReason]),
    st.binary(min_size=1, max_size=1),  # any code, most unknown
    st.just(b""),
    st.binary(min_size=2, max_size=24),
    st.sampled_from([bytes(CONTROL_MAX), bytes(CONTROL_MAX + 1)]),  # the limit, and past it
)
_UNKNOWN_KINDS = st.one_of(st.just(0), st.integers(max(FrameKind) + 1, 255))


def _data(max_message: int) -> st.SearchStrategy[bytes]:
    sizes = st.one_of(st.integers(0, 48), st.sampled_from([max_message, max_message + 1]))
    priorities = st.one_of(st.integers(0, PRIORITIES - 1), st.integers(PRIORITIES, 255))
    return st.builds(
        lambda size, priority, message_id: (
            HEADER.pack(size, FrameKind.DATA, priority, message_id) + b"d" * size
        ),
        sizes,
        priorities,
        _TOKENS,
    )


def _oversized(max_message: int) -> st.SearchStrategy[bytes]:
    """A header above its kind's limit (the payload is never waited for), then a little of it."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        kind = draw(st.sampled_from(list(FrameKind)))
        limit = max_message if kind is FrameKind.DATA else CONTROL_MAX
        length = draw(st.one_of(st.just(limit + 1), st.integers(limit + 1, (1 << 32) - 1)))
        return HEADER.pack(length, kind, 0, draw(_TOKENS)) + draw(st.binary(max_size=16))

    return build()


def open_frames(max_message: int) -> st.SearchStrategy[bytes]:
    """What an open link takes (and DATA with a bad priority or size, which it does not)."""
    return st.one_of(
        st.builds(lambda t: encode(FrameKind.PING, b"", t), _TOKENS),
        st.builds(lambda t: encode(FrameKind.PONG, b"", t), _TOKENS),
        _data(max_message),
    )


def raw_frames(max_message: int) -> st.SearchStrategy[bytes]:
    """Every frame but PROOF, valid or not, and garbage."""
    hello = encode(FrameKind.HELLO, bytes([PROTOCOL_VERSION]) + bytes(NONCE_SIZE))
    return st.one_of(
        open_frames(max_message),
        st.builds(lambda p: encode(FrameKind.CLOSE, p), _REASON_BYTES),
        st.builds(lambda p: encode(FrameKind.REFUSE, p), _REASON_BYTES),
        st.builds(lambda p: encode(FrameKind.ACCEPT, p), st.one_of(st.just(b""), st.binary(max_size=8))),
        st.one_of(st.just(hello), st.builds(lambda p: encode(FrameKind.HELLO, p), st.binary(max_size=40))),
        st.builds(lambda k, p: HEADER.pack(len(p), k, 0, 0) + p, _UNKNOWN_KINDS, st.binary(max_size=16)),
        _oversized(max_message),
        st.binary(min_size=1, max_size=64),
    )


def proofs(kinds: Sequence[ProofKind] = tuple(ProofKind)) -> st.SearchStrategy[Proof]:
    return st.builds(Proof, st.sampled_from(kinds), st.integers(0, 300))


def pieces(max_message: int) -> st.SearchStrategy[list[Piece]]:
    """Mostly a proof first (valid more often than not), then anything, in any order."""
    single: st.SearchStrategy[Proof | Raw] = st.one_of(
        st.builds(Raw, raw_frames(max_message)),
        st.builds(Raw, open_frames(max_message)),  # so that accepted links live a while
        proofs(),
    )
    piece: st.SearchStrategy[Piece] = st.one_of(single, st.builds(Truncated, single, st.integers(0, 1 << 16)))
    first = st.one_of(
        proofs([ProofKind.VALID]), proofs([ProofKind.VALID]), proofs(), st.builds(Raw, st.just(b""))
    )
    return st.builds(lambda head, rest: [head, *rest], first, st.lists(piece, max_size=8))


CUTS = st.lists(st.integers(0, 1 << 20), max_size=10)
