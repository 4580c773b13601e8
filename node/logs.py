"""Structured log lines on stderr (journald keeps them); stdout is reserved for command results."""

from __future__ import annotations

import logging
import sys


class _LineFormatter(logging.Formatter):
    def __init__(self, timestamps: bool) -> None:
        super().__init__()
        self._timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg = f"{msg} | {self.formatException(record.exc_info)!r}"
        line = f"level={record.levelname.lower()} logger={record.name} msg={msg!r}"
        # journald stamps each line itself; a debug run (a lab test, a bench) needs its own.
        return f"t={record.created:.3f} {line}" if self._timestamps else line


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter(timestamps=level == "debug"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
