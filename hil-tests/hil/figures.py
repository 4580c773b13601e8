"""Figures a hil run measures (printed at the end, never asserted: no timing assertions)."""

from __future__ import annotations

import pytest

FIGURES = pytest.StashKey[list[str]]()


def record(config: pytest.Config, line: str) -> None:
    config.stash.setdefault(FIGURES, []).append(line)
