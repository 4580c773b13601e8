"""Sliding anti-replay window over 64-bit datagram counters (RFC 6479, as WireGuard uses it).

The window is a ring of ``blocks`` 64-bit words. The bit of counter ``c`` sits at a fixed place
(word ``(c >> 6) % blocks``, bit ``c & 63``), so moving the window forward only clears whole
words and never shifts bits (RFC 6479 §2). One word is kept as slack, so the guaranteed window is
``(blocks - 1) * 64`` counters behind the highest one seen: anything newer is accepted once,
reordering included; a repeat is REPLAYED; anything older is TOO_OLD.

``check`` is cheap and runs before decryption; ``mark`` runs only after the datagram
authenticated, so forged counters never move the window (RFC 6479 §2, RFC 4303 §3.4.3).
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["DEFAULT_BLOCKS", "ReplayVerdict", "ReplayWindow"]

BLOCK_BITS: Final = 64
DEFAULT_BLOCKS: Final = 128  # WireGuard's 8192-bit ring: a window of 8128 counters


class ReplayVerdict(enum.Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"
    TOO_OLD = "too old"


class ReplayWindow:
    __slots__ = ("_blocks", "_ring", "next_counter", "size")

    def __init__(self, blocks: int = DEFAULT_BLOCKS) -> None:
        if blocks < 2:
            raise ValueError(f"a replay window needs at least 2 blocks, got {blocks}")
        self._blocks = blocks
        self._ring = [0] * blocks
        # One past the highest counter marked: any counter at or above it is FRESH without a
        # look at the ring, so a caller may skip ``check`` for those (the in-order case).
        self.next_counter = 0
        self.size: Final = (blocks - 1) * BLOCK_BITS

    @property
    def highest(self) -> int | None:
        return self.next_counter - 1 if self.next_counter else None

    def check(self, counter: int) -> ReplayVerdict:
        if counter >= self.next_counter:
            return ReplayVerdict.FRESH
        if self.next_counter - counter > self.size:
            return ReplayVerdict.TOO_OLD
        if self._ring[(counter >> 6) % self._blocks] >> (counter & 63) & 1:
            return ReplayVerdict.REPLAYED
        return ReplayVerdict.FRESH

    def mark(self, counter: int) -> None:
        """Record an authenticated counter (``check`` returned FRESH for it)."""
        word = counter >> 6
        nxt = self.next_counter
        if counter >= nxt:
            current = (nxt - 1) >> 6  # -1 before the first counter (Python shifts floor)
            if word != current:
                # Clear the words the window slides over (at most all of them), RFC 6479 §2.
                ring, blocks = self._ring, self._blocks
                for i in range(current + 1, current + 1 + min(word - current, blocks)):
                    ring[i % blocks] = 0
            self.next_counter = counter + 1
        self._ring[word % self._blocks] |= 1 << (counter & 63)
