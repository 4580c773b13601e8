"""Booting nspawn machines, or handing out SSH targets, for the fixtures in conftest.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil import nspawn
from hil.ssh import SshTarget
from hil.target import Target


class Machines:
    """Boots nspawn machines (or hands out the ssh target) and powers them all off at the end."""

    def __init__(self, request: pytest.FixtureRequest, testnet: nspawn.TestNet | None, workdir: Path) -> None:
        self._request = request
        self._net = testnet
        self._workdir = workdir
        self._booted: list[nspawn.NspawnMachine] = []

    def get(self, spec: str, name: str) -> Target:
        if spec == "nspawn":
            rootfs = self._request.getfixturevalue("rootfs")
            machine = nspawn.NspawnMachine(rootfs, name, self._workdir, self._net)
            machine.__enter__()
            self._booted.append(machine)
            return machine
        return SshTarget(spec, self._request.config.getoption("target_iface"))

    @contextlib.contextmanager
    def fresh(self, spec: str, name: str) -> Iterator[Target]:
        if spec == "nspawn":
            rootfs = self._request.getfixturevalue("rootfs")
            with nspawn.NspawnMachine(rootfs, name, self._workdir, self._net) as machine:
                yield machine
            return
        board = SshTarget(spec, self._request.config.getoption("target_iface"))
        board.check(["systemctl", "restart", "bitcraps-node.service"])
        yield board

    def close(self) -> None:
        while self._booted:
            self._booted.pop().__exit__(None, None, None)
