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
    __slots__ = ("_blocks", "_next", "_ring", "size")

    def __init__(self, blocks: int = DEFAULT_BLOCKS) -> None:
        if blocks < 2:
            raise ValueError(f"a replay window needs at least 2 blocks, got {blocks}")
        self._blocks = blocks
        self._ring = [0] * blocks
        self._next = 0  # one past the highest counter marked
        self.size: Final = (blocks - 1) * BLOCK_BITS

    @property
    def highest(self) -> int | None:
        return self._next - 1 if self._next else None

    def check(self, counter: int) -> ReplayVerdict:
        if counter >= self._next:
            return ReplayVerdict.FRESH
        if self._next - counter > self.size:
            return ReplayVerdict.TOO_OLD
        if self._ring[(counter >> 6) % self._blocks] >> (counter & 63) & 1:
            return ReplayVerdict.REPLAYED
        return ReplayVerdict.FRESH

    def mark(self, counter: int) -> None:
        """Record an authenticated counter (``check`` returned FRESH for it)."""
        if counter >= self._next:
            # Clear the words the window slides over (at most all of them), RFC 6479 §2.
            current = (self._next - 1) >> 6 if self._next else -1
            target = counter >> 6
            steps = min(target - current, self._blocks)
            for i in range(1, steps + 1):
                self._ring[(current + i) % self._blocks] = 0
            self._next = counter + 1
        self._ring[(counter >> 6) % self._blocks] |= 1 << (counter & 63)
