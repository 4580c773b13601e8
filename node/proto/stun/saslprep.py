"""String preparation for STUN credentials: SASLprep (RFC 4013, used by RFC 5389 §15.4) and the
PRECIS OpaqueString profile (RFC 8265 §4.2, used by RFC 8489 §9.2.2 and §14.3).

SASLprep is exact, from Python's ``stringprep`` tables (Unicode 3.2). OpaqueString follows the
FreeformClass rules of RFC 8264 §9 with ``unicodedata``; two derived properties that module does
not expose are approximated and named where they are used (Default_Ignorable_Code_Point, and the
script tests of the CONTEXTO rules of RFC 5892 Appendix A).
"""

from __future__ import annotations

import enum
import stringprep
import unicodedata

from node.errors import LocalError, ReasonError


class PrepFailure(enum.Enum):
    EMPTY = "empty string"
    PROHIBITED = "prohibited character"
    UNASSIGNED = "unassigned code point"
    BIDI = "bidirectional rule violated (RFC 3454 §6)"
    CONTEXT = "contextual rule violated (RFC 5892 Appendix A)"


class PrepError(ReasonError[PrepFailure], LocalError):
    """A credential string cannot be prepared; ``reason`` says why, ``char`` at which character.
    The message never shows the character itself (a credential), only its code point."""

    def __init__(self, reason: PrepFailure, char: str | None = None) -> None:
        self.char = char
        super().__init__(reason, f"U+{ord(char):04X}" if char is not None else "")

    def describe(self) -> str:
        value = self.reason.value
        return f"{value} ({self.detail})" if self.detail else value


# RFC 4013 §2.3: the prohibited output tables.
_SASL_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str, *, allow_unassigned: bool = True) -> str:
    """RFC 4013. ``allow_unassigned`` selects the "query" (True) or "stored string" rules."""
    # §2.1 mapping: non-ASCII spaces to SPACE, "commonly mapped to nothing" removed.
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c))
    out = unicodedata.normalize("NFKC", mapped)  # §2.2
    for c in out:
        if any(check(c) for check in _SASL_PROHIBITED):  # §2.3
            raise PrepError(PrepFailure.PROHIBITED, c)
        if not allow_unassigned and stringprep.in_table_a1(c):  # §2.5
            raise PrepError(PrepFailure.UNASSIGNED, c)
    # §2.4, RFC 3454 §6: RandALCat text has no LCat and starts and ends with RandALCat.
    if any(stringprep.in_table_d1(c) for c in out) and (
        any(stringprep.in_table_d2(c) for c in out)
        or not stringprep.in_table_d1(out[0])
        or not stringprep.in_table_d1(out[-1])
    ):
        raise PrepError(PrepFailure.BIDI)
    return out


# RFC 5892 §2.6 exceptions that are DISALLOWED although their category would allow them.
_EXCEPTIONS_DISALLOWED = frozenset(
    [0x0640, 0x07FA, 0x302E, 0x302F, 0x3031, 0x3032, 0x3033, 0x3034, 0x3035, 0x303B]
)
# Default_Ignorable_Code_Point (RFC 8264 §9.13) beyond category Cf, from Unicode's
# DerivedCoreProperties; approximated by these ranges.
_IGNORABLE_RANGES = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xE0000, 0xE0FFF),
)  # fmt: skip
_JOIN_CONTROLS = (0x200C, 0x200D)  # RFC 8264 §9.8, CONTEXTJ
_VIRAMA = 9  # canonical combining class of a virama (RFC 5892 Appendix A.1, A.2)


def _ignorable(cp: int) -> bool:
    if (cp & 0xFFFE) == 0xFFFE or 0xFDD0 <= cp <= 0xFDEF:  # noncharacters
        return True
    return any(lo <= cp <= hi for lo, hi in _IGNORABLE_RANGES)


def _old_hangul_jamo(cp: int) -> bool:
    # RFC 8264 §9.9: Hangul_Syllable_Type L, V or T.
    return 0x1100 <= cp <= 0x11FF or 0xA960 <= cp <= 0xA97F or 0xD7B0 <= cp <= 0xD7FF


def _script_is(char: str, prefix: str) -> bool:
    # Approximation of the Script property: the character's name (RFC 5892 Appendix A).
    return unicodedata.name(char, "").startswith(prefix)


def _context_ok(text: str, i: int) -> bool:
    """CONTEXTJ and CONTEXTO rules of RFC 5892 Appendix A for the character at ``i``."""
    cp = ord(text[i])
    before = text[i - 1] if i > 0 else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    if cp in _JOIN_CONTROLS:
        return bool(before) and unicodedata.combining(before) == _VIRAMA
    if cp == 0x00B7:
        return before == "l" and after == "l"
    if cp == 0x0375:
        return bool(after) and _script_is(after, "GREEK")
    if cp in (0x05F3, 0x05F4):
        return bool(before) and _script_is(before, "HEBREW")
    if cp == 0x30FB:
        return any(
            _script_is(c, "HIRAGANA") or _script_is(c, "KATAKANA") or _script_is(c, "CJK")
            for c in text
            if c != "\u30fb"
        )
    if 0x0660 <= cp <= 0x0669:
        return not any("\u06f0" <= c <= "\u06f9" for c in text)
    if 0x06F0 <= cp <= 0x06F9:
        return not any("\u0660" <= c <= "\u0669" for c in text)
    return True


_CONTEXTUAL = frozenset(
    [0x200C, 0x200D, 0x00B7, 0x0375, 0x05F3, 0x05F4, 0x30FB, *range(0x0660, 0x066A),
     *range(0x06F0, 0x06FA)]
)  # fmt: skip
# General categories FreeformClass disallows outright (RFC 8264 §9.11-§9.17 leave them out).
_DISALLOWED_CATEGORIES = frozenset(["Cc", "Cs", "Co", "Zl", "Zp"])


def opaque_string(text: str) -> str:
    """RFC 8265 §4.2: map non-ASCII spaces to SPACE, NFC, then enforce FreeformClass."""
    mapped = "".join(" " if unicodedata.category(c) == "Zs" else c for c in text)  # §4.2.1
    out = unicodedata.normalize("NFC", mapped)
    if not out:
        raise PrepError(PrepFailure.EMPTY)
    for i, c in enumerate(out):
        cp = ord(c)
        if 0x21 <= cp <= 0x7E or cp == 0x20:
            continue  # ASCII7 and SPACE (RFC 8264 §9.11)
        if cp in _CONTEXTUAL:
            if not _context_ok(out, i):
                raise PrepError(PrepFailure.CONTEXT, c)
            continue
        if cp in _EXCEPTIONS_DISALLOWED or _ignorable(cp) or _old_hangul_jamo(cp):
            raise PrepError(PrepFailure.PROHIBITED, c)
        category = unicodedata.category(c)
        if category == "Cn":  # unassigned, noncharacters excluded above (RFC 8264 §9.3)
            raise PrepError(PrepFailure.UNASSIGNED, c)
        if category in _DISALLOWED_CATEGORIES or category == "Cf":
            raise PrepError(PrepFailure.PROHIBITED, c)
    return out
