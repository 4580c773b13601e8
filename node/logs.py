"""Structured log lines on stderr (journald keeps them); stdout is reserved for command results."""

from __future__ import annotations

import logging
import sys


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg = f"{msg} | {self.formatException(record.exc_info)!r}"
        return f"level={record.levelname.lower()} logger={record.name} msg={msg!r}"


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
