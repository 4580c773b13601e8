"""One generation of transport keys: seal and open TRANSPORT datagrams (ChaCha20-Poly1305).

The 16-byte header (type, receiver index, counter) is the AEAD's associated data, and the counter
is the nonce, so a datagram is bound to its keys, its direction and its place in the sequence.
Each direction's anti-replay window (node.proto.session.replay_window) is checked as it opens.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.proto.session.errors import DropReason, SessionDecodeError
from node.proto.session.messages import TRANSPORT_HEADER, TRANSPORT_TYPE_WORD
from node.proto.session.replay_window import ReplayVerdict, ReplayWindow

__all__ = ["Keypair"]

_HEADER_SIZE: Final = TRANSPORT_HEADER.size
_NONCE_PAD: Final = bytes(4)  # keys.nonce: 32 zero bits, then the counter (WireGuard)


class Keypair:
    __slots__ = (
        "_decrypt",
        "_encrypt",
        "_header_prefix",
        "confirmed",
        "created_at",
        "generation",
        "initiator",
        "local_index",
        "remote_index",
        "replay",
        "send_counter",
    )

    def __init__(
        self,
        *,
        local_index: int,
        remote_index: int,
        send_key: bytes,
        receive_key: bytes,
        initiator: bool,
        created_at: float,
        replay_blocks: int,
    ) -> None:
        self.local_index = local_index
        self.remote_index = remote_index
        # Bound once: the two AEAD calls of every datagram skip the attribute lookups.
        self._encrypt = ChaCha20Poly1305(send_key).encrypt
        self._decrypt = ChaCha20Poly1305(receive_key).decrypt
        # Type and receiver index never change for these keys: only the counter is added per datagram.
        self._header_prefix = TRANSPORT_TYPE_WORD + remote_index.to_bytes(4, "little")
        self.initiator = initiator
        self.created_at = created_at
        # The responder only installs keys after the initiator proved it holds them (CONFIRM);
        # the initiator's keys are confirmed by the first datagram that opens under them.
        self.confirmed = not initiator
        self.generation = 0
        self.send_counter = 0
        self.replay = ReplayWindow(replay_blocks)

    # The hot path of every datagram. The counter's 8 little-endian bytes are made once and serve
    # both the header (TRANSPORT_HEADER's layout: type word, receiver index, counter) and the
    # nonce (keys.nonce's bytes): cheaper than packing the header and building the nonce apart.

    def seal(self, payload: bytes) -> bytes:
        counter = self.send_counter
        self.send_counter = counter + 1
        counter_bytes = counter.to_bytes(8, "little")
        header = self._header_prefix + counter_bytes
        return header + self._encrypt(_NONCE_PAD + counter_bytes, payload, header)

    def open(self, data: bytes, counter: int) -> bytes:
        """The payload of an authentic datagram (``counter`` is its header's) that this direction
        has not opened before: the replay window is checked before decryption and moved only by a
        datagram that authenticated (RFC 6479 §2), so a forged counter never moves it.
        Raises SessionDecodeError: REPLAYED, TOO_OLD or DECRYPT_FAILED."""
        replay = self.replay
        if counter < replay.next_counter:  # not the newest yet: the window decides
            verdict = replay.check(counter)
            if verdict is not ReplayVerdict.FRESH:
                raise SessionDecodeError(
                    DropReason.REPLAYED if verdict is ReplayVerdict.REPLAYED else DropReason.TOO_OLD
                )
        try:
            payload = self._decrypt(
                (counter << 32).to_bytes(12, "little"), data[_HEADER_SIZE:], data[:_HEADER_SIZE]
            )
        except InvalidTag:
            raise SessionDecodeError(DropReason.DECRYPT_FAILED) from None
        replay.mark(counter)
        return payload
