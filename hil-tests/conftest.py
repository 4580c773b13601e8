"""Hardware-in-the-loop tests: the installed node driven as a black box through commands.

Targets (``--target``): ``nspawn`` (default) boots the image's amd64 rootfs (``--rootfs``, default
``build/image/rootfs-amd64`` as ``image/build.sh --arch amd64 --rootfs-only --out build/image``
leaves it) with systemd-nspawn; ``ssh://user@host[:port]`` drives a real board. Tests that need a
second node use ``--peer-target`` (default: a second nspawn machine on the same test network).
The BLE tests (test_ble.py) need boards: ``--target``/``--peer-target`` ssh://, and
``--third-target`` ssh:// for the line test; without them they skip (also under CI=true).
Without root, systemd-nspawn or the rootfs the nspawn tests skip with a reason; with ``CI=true``
that is a failure.

Figures (boot-to-READY under nspawn, the node's idle RSS) are printed at the end of the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hil import nspawn
from hil.figures import FIGURES
from hil.machines import Machines
from hil.target import Target

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil")
    group.addoption("--target", default="nspawn", help="nspawn (default) or ssh://user@host[:port]")
    group.addoption("--peer-target", default="nspawn", help="the second node: nspawn or ssh://...")
    group.addoption(
        "--third-target",
        default=None,
        help="a third board (ssh://...) for the BLE line test: in range of --peer-target only",
    )
    group.addoption(
        "--rootfs",
        type=Path,
        default=Path(os.environ.get("BITCRAPS_ROOTFS", REPO / "build/image/rootfs-amd64")),
        help="amd64 rootfs for nspawn targets (image/build.sh --rootfs-only)",
    )
    group.addoption("--target-iface", default=None, help="on an ssh target: the interface to flap")
    group.addoption(
        "--wheelhouse",
        type=Path,
        default=REPO / "build/wheelhouse",
        help="ansible/build-wheelhouse.sh output for the role tests (built there when missing)",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, [])
    if figures:
        terminalreporter.section("hil figures")
        for line in figures:
            terminalreporter.write_line(line)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true makes this a failure", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def rootfs(pytestconfig: pytest.Config) -> Path:
    missing = nspawn.missing_tools()
    if missing:
        _unavailable(f"nspawn targets need {', '.join(missing)}")
    path: Path = pytestconfig.getoption("rootfs").resolve()
    if not (path / "opt/bitcraps-node/venv/bin/bitcraps-node").exists():
        _unavailable(f"no rootfs with the node at {path} (image/build.sh --arch amd64 --rootfs-only)")
    return path


@pytest.fixture(scope="session")
def testnet(pytestconfig: pytest.Config) -> Iterator[nspawn.TestNet | None]:
    uses_nspawn = "nspawn" in (pytestconfig.getoption("target"), pytestconfig.getoption("peer_target"))
    if not uses_nspawn or nspawn.missing_tools():
        yield None
        return
    nspawn.reap_stale_nets()
    net = nspawn.TestNet()
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="session")
def machines(
    request: pytest.FixtureRequest, testnet: nspawn.TestNet | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Machines]:
    booted = Machines(request, testnet, tmp_path_factory.mktemp("hil"))
    try:
        yield booted
    finally:
        booted.close()


@pytest.fixture(scope="session")
def target(machines: Machines, pytestconfig: pytest.Config) -> Target:
    """The node under test, booted once per session and READY."""
    machine = machines.get(pytestconfig.getoption("target"), "bcops-a")
    machine.wait_ready()
    return machine


@pytest.fixture(scope="session")
def peer(machines: Machines, pytestconfig: pytest.Config, target: Target) -> Target:
    """A second node on the same network as ``target``, READY."""
    machine = machines.get(pytestconfig.getoption("peer_target"), "bcops-b")
    machine.wait_ready()
    return machine


@pytest.fixture
def fresh_target(machines: Machines, pytestconfig: pytest.Config) -> Iterator[Target]:
    """A node that has not restarted yet: a newly booted machine (powered off after the test),
    or on a board a manual restart, which resets systemd's NRestarts."""
    with machines.fresh(pytestconfig.getoption("target"), "bcops-fresh") as machine:
        machine.wait_ready()
        yield machine


@pytest.fixture(scope="session")
def wheelhouse(pytestconfig: pytest.Config) -> Path:
    """The controller's wheelhouse for the role (ansible/build-wheelhouse.sh; needs PyPI once)."""
    path: Path = pytestconfig.getoption("wheelhouse").resolve()
    if not list(path.glob("x86_64/bitcraps_node-*.whl")):
        subprocess.run(
            ["bash", str(REPO / "ansible/build-wheelhouse.sh"), str(path)],
            check=True,
            timeout=600,
            env={**os.environ, "PYTHON": sys.executable},
        )
    return path


# hil-tests/ble_vm runs only inside the BLE VM (scripts/ci-ble-vm.sh), where bumble is installed
# (the `vm` extra): elsewhere its modules are not even collected.
collect_ignore = [] if os.environ.get("BITCRAPS_BLE_VM") == "1" else ["ble_vm"]
