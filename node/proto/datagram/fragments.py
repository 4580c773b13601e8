"""The fragment wire format and the fragmenter: one message split into datagrams that fit a path.

A fragment is the whole plaintext payload of one secure-session TRANSPORT datagram
(node.proto.session.messages), so its header is authenticated and encrypted with it. Big-endian::

    flags  u8   bits 0-1: Priority of the message; bits 2-7: reserved, zero (else dropped)
    id     u64  message id (Frame.message_id)
    total  u32  message length in bytes
    chunk  u16  payload bytes in every fragment but the last (at least MIN_CHUNK)
    index  u32  0 .. count - 1, where count = max(1, ceil(total / chunk))
    payload     chunk bytes, or what remains of the message in the last fragment

Every fragment describes the whole message (length, chunk size, priority), so reassembly can
start from whichever arrives first, reserve the message's bytes at once and place each fragment
by its index alone; a fragment whose size is not the one its index implies is malformed.

Budgets. The default keeps the whole UDP payload of each outer datagram within 1200 bytes
(``PATH_BUDGET``): QUIC's floor for any path (RFC 9000 §14), below the IPv6 minimum link MTU of
1280 (RFC 8200 §5) less its 40-byte header and UDP's 8, so no datagram needs IP fragmentation.
``fragment`` takes the plaintext budget of one datagram, so each path passes its own:
``UDP_PLAINTEXT``; ``TURN_PLAINTEXT`` (ChannelData adds 4 bytes, RFC 8656 §12.4); BLE
``plaintext_budget(att_mtu - 3)`` (a Write Command carries ATT_MTU - 3 bytes of value, Bluetooth
Core 5.3 Vol 3 Part F §3.4.5.3).
"""

from __future__ import annotations

import struct
from typing import Final

from node.proto.datagram.errors import FragmentMisuse, FragmentUsageError
from node.proto.session.messages import TRANSPORT_OVERHEAD
from node.proto.stun.channeldata import CHANNEL_HEADER_SIZE
from node.proto.vocabulary import Frame

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "MAX_CHUNK",
    "MIN_CHUNK",
    "PATH_BUDGET",
    "PRIORITY_MASK",
    "TURN_PLAINTEXT",
    "UDP_PLAINTEXT",
    "chunk_size",
    "fragment",
    "fragment_count",
    "plaintext_budget",
]

HEADER: Final = struct.Struct("!BQIHI")
HEADER_SIZE: Final = HEADER.size
_PREFIX: Final = struct.Struct("!BQIH")  # the header but the index: the same in every fragment
_INDEX: Final = struct.Struct("!I")
PRIORITY_MASK: Final = 0x03
MIN_CHUNK: Final = 32  # bounds a message's fragment count, hence its bookkeeping (see reassembly)
MAX_CHUNK: Final = 0xFFFF  # the u16 chunk field
MAX_MESSAGE_ID: Final = (1 << 64) - 1
PATH_BUDGET: Final = 1200  # RFC 9000 §14: every path carries 1200-byte UDP payloads


def plaintext_budget(datagram_budget: int = PATH_BUDGET, framing: int = 0) -> int:
    """The plaintext one sealed TRANSPORT datagram may carry so that, with ``framing`` bytes of
    the path's own in front (TURN ChannelData: 4), it fits ``datagram_budget``."""
    return datagram_budget - framing - TRANSPORT_OVERHEAD


UDP_PLAINTEXT: Final = plaintext_budget()
TURN_PLAINTEXT: Final = plaintext_budget(framing=CHANNEL_HEADER_SIZE)


def chunk_size(budget: int) -> int:
    """The message bytes each fragment carries when a fragment may be ``budget`` bytes."""
    chunk = min(budget - HEADER_SIZE, MAX_CHUNK)
    if chunk < MIN_CHUNK:
        raise FragmentUsageError(
            FragmentMisuse.BUDGET_TOO_SMALL,
            f"{budget} bytes per fragment leave {chunk} after the {HEADER_SIZE}-byte header, not {MIN_CHUNK}",
        )
    return chunk


def fragment_count(total: int, chunk: int) -> int:
    """How many fragments carry ``total`` bytes in chunks of ``chunk``: at least one."""
    return max(1, -(-total // chunk))


def fragment(frame: Frame, budget: int, max_message: int) -> list[bytes]:
    """``frame`` as fragments of at most ``budget`` bytes each, in index order.

    Each fragment is built in one allocation: the constant header prefix, the index and a view
    of the payload joined, so the payload is copied once. Raises FragmentUsageError when the
    message is longer than ``max_message`` or its id is not a u64, or the budget is too small.
    """
    payload = frame.payload
    total = len(payload)
    if total > max_message:
        raise FragmentUsageError(FragmentMisuse.MESSAGE_TOO_LARGE, f"{total} bytes > {max_message}")
    if not 0 <= frame.message_id <= MAX_MESSAGE_ID:
        raise FragmentUsageError(FragmentMisuse.BAD_MESSAGE_ID, f"message id {frame.message_id}")
    chunk = budget - HEADER_SIZE
    if not MIN_CHUNK <= chunk <= MAX_CHUNK:
        chunk = chunk_size(budget)  # capped, or refused when too small
    prefix = _PREFIX.pack(frame.priority, frame.message_id, total, chunk)
    if total <= chunk:
        return [b"".join((prefix, _INDEX.pack(0), payload))]
    view = memoryview(payload)
    pack = _INDEX.pack
    join = b"".join
    return [
        join((prefix, pack(index), view[offset : offset + chunk]))
        for index, offset in enumerate(range(0, total, chunk))
    ]
