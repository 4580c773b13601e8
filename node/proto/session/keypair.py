"""One generation of transport keys: seal and open TRANSPORT datagrams (ChaCha20-Poly1305).

The 16-byte header (type, receiver index, counter) is the AEAD's associated data, and the counter
is the nonce, so a datagram is bound to its keys, its direction and its place in the sequence.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.proto.session.messages import TRANSPORT_HEADER, MessageType
from node.proto.session.replay_window import ReplayWindow

__all__ = ["Keypair"]

_TRANSPORT = int(MessageType.TRANSPORT)
_HEADER_SIZE = TRANSPORT_HEADER.size
_PACK = TRANSPORT_HEADER.pack


class Keypair:
    __slots__ = (
        "_open",
        "_seal",
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
        self._seal = ChaCha20Poly1305(send_key)
        self._open = ChaCha20Poly1305(receive_key)
        self.initiator = initiator
        self.created_at = created_at
        # The responder only installs keys after the initiator proved it holds them (CONFIRM);
        # the initiator's keys are confirmed by the first datagram that opens under them.
        self.confirmed = not initiator
        self.generation = 0
        self.send_counter = 0
        self.replay = ReplayWindow(replay_blocks)

    # The hot path of every datagram: the nonce is built inline (keys.nonce: the counter shifted
    # past 32 zero bits, little-endian) and the ciphertext is read through a memoryview, not
    # copied out of the datagram first.

    def seal(self, payload: bytes) -> bytes:
        counter = self.send_counter
        self.send_counter = counter + 1
        header = _PACK(_TRANSPORT, self.remote_index, counter)
        return header + self._seal.encrypt((counter << 32).to_bytes(12, "little"), payload, header)

    def open(self, data: bytes, counter: int) -> bytes:
        """The payload of an authentic datagram; raises cryptography's InvalidTag otherwise."""
        return self._open.decrypt(
            (counter << 32).to_bytes(12, "little"), memoryview(data)[_HEADER_SIZE:], data[:_HEADER_SIZE]
        )
