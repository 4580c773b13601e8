"""What a test needs from the machine: a missing tool or artefact skips with a reason, naming it
and how to get it, except under ``CI=true`` (set by .ci/run), where it fails, so a forgotten
install step cannot pass green."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it under CI=true."""
    __tracebackhide__ = True  # the report names the caller's line, not this one
    if under_ci():
        pytest.fail(f"{reason}; CI=true makes this a failure", pytrace=False)
    pytest.skip(reason)


def missing_tools(tools: Iterable[str]) -> list[str]:
    """The commands of ``tools`` not found on PATH, in the order given."""
    return [tool for tool in tools if shutil.which(tool) is None]


def require_tools(tools: Iterable[str], install: str) -> None:
    """Skip (fail under CI=true) unless every command of ``tools`` is on PATH; ``install`` says how
    to get them, e.g. "apt-get install dosfstools"."""
    __tracebackhide__ = True
    missing = missing_tools(tools)
    if missing:
        unavailable(f"needs {', '.join(missing)}, not on PATH ({install})")
