"""How every ``bitcraps-node`` command reports a failure: one line on stderr, then its exit code
(stdout carries only results)."""

from __future__ import annotations

import sys


def fail(message: str, code: int) -> int:
    print(f"bitcraps-node: {message}", file=sys.stderr)
    return code
