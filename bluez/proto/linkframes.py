"""What one reassembled link datagram is: its first byte says which of three kinds.

    0  SESSION  a secure-session datagram between the two ends of this link (node.proto.session)
    1  MESH     a mesh frame (bluez/proto/mesh.py) for a peer this link may not reach directly
    2  HELLO    the sender's peer id (52 ASCII bytes): a hint for whom to run the handshake with

A HELLO is never trusted: the peer id it names only tells a central which id to expect in the
session handshake it then starts, and that handshake proves it (or fails PEER_MISMATCH). A
central sends HELLO once its link is set up; a peripheral answers it with its own (it never
speaks first: until the central has read its tag, notifications to it are dropped as foreign).
The peer-id prefix advertised in service data and used by the mesh is a routing hint of the
same kind: the first PREFIX_SIZE bytes of the SHA-256 that the peer id spells in base32.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Final

from bluez.proto.mesh import PREFIX_SIZE

__all__ = ["PEER_ID_SIZE", "LinkKind", "decode_hello", "encode", "peer_prefix"]

PEER_ID_SIZE: Final = 52  # node.proto.identity: base32 of 32 bytes, unpadded


class LinkKind(enum.IntEnum):
    SESSION = 0
    MESH = 1
    HELLO = 2


def encode(kind: LinkKind, body: bytes) -> bytes:
    return bytes((kind,)) + body


def _digest(peer_id: str) -> bytes | None:
    if len(peer_id) != PEER_ID_SIZE:
        return None
    try:
        return base64.b32decode(peer_id.upper() + "====")
    except (binascii.Error, ValueError):
        return None


def peer_prefix(peer_id: str) -> bytes:
    """The PREFIX_SIZE-byte routing hint of ``peer_id`` (its SHA-256's first bytes)."""
    digest = _digest(peer_id)
    if digest is None:
        raise ValueError(f"not a peer id: {peer_id[:60]!r}")
    return digest[:PREFIX_SIZE]


def decode_hello(body: bytes) -> str | None:
    """The peer id a HELLO names, or None when the body is not one."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    if _digest(text) is None or text != text.lower():
        return None
    return text
