"""Shared by the ble_vm tests: bumble's address and the figures they measure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hil.figures import record

# A random static address (Core 5.3 Vol 6 Part B 1.3.2.1: the two top bits set) for bumble.
BUMBLE_ADDRESS = "F0:B1:E0:00:00:01"


def figure(config: pytest.Config, line: str) -> None:
    """A measured figure, never asserted: in the run's "hil figures" summary and appended to
    BLE_VM_FIGURES for scripts/ci-ble-vm.sh to print."""
    record(config, line)
    path = os.environ.get("BLE_VM_FIGURES")
    if path:
        with Path(path).open("a") as out:
            out.write(line + "\n")
