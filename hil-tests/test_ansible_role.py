"""The Ansible role bitcraps_node against targets: install, idempotence, config validation, rolling upgrade.

On nspawn targets each test module boots its own machines (volatile: the rootfs stays as built);
the first test wipes the node from one so the role installs it from nothing, as on a plain
bookworm board.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hil import ansible_run
from hil.machines import Machines
from hil.nspawn import NspawnMachine
from hil.target import NODE, UNIT, Target

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module", autouse=True)
def _ansible() -> None:
    reason = ansible_run.missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"needs {reason}; CI=true makes this a failure", pytrace=False)
        pytest.skip(f"needs {reason}")


@pytest.fixture(scope="module")
def boards(machines: Machines, pytestconfig: pytest.Config) -> Iterator[dict[str, Target]]:
    """Two boards: fresh nspawn machines, or the --target and --peer-target boards."""
    with (
        machines.fresh(pytestconfig.getoption("target"), "bcops-ans1") as one,
        machines.fresh(pytestconfig.getoption("peer_target"), "bcops-ans2") as two,
    ):
        one.wait_ready()
        two.wait_ready()
        yield {"board1": one, "board2": two}


def _vars(wheelhouse: Path, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "bitcraps_node_wheelhouse": str(wheelhouse),
        "bitcraps_node_config": config,
        "bitcraps_node_controller_cli": str(Path(sys.executable).parent / "bitcraps-node"),
    }


def _wipe_node(board: Target) -> None:
    """Remove every trace of the node, leaving a plain bookworm system with python3-venv."""
    fragment = board.check(["systemctl", "show", "--property=FragmentPath", "--value", UNIT]).strip()
    # A stop queued while the board still boots waits behind the boot's jobs: on a loaded CI
    # machine that once took over a minute. Let the boot settle first ("degraded" is fine).
    board.run(["timeout", "90", "systemctl", "is-system-running", "--wait"], timeout=100)
    board.check(["systemctl", "disable", "--now", UNIT])
    board.check(
        [
            "rm",
            "-rf",
            "/opt/bitcraps-node",
            "/etc/bitcraps",
            "/var/lib/bitcraps",
            "/usr/local/bin/bitcraps-node",
            "/usr/lib/sysusers.d/bitcraps-node.conf",
            *([fragment] if fragment else []),
        ]
    )
    board.check(["systemctl", "daemon-reload"])
    board.check(["userdel", "bitcraps"])
    assert board.run(["id", "bitcraps"]).returncode != 0


def test_role_installs_from_the_wheelhouse_and_a_second_run_changes_nothing(
    boards: dict[str, Target], wheelhouse: Path, tmp_path: Path
) -> None:
    board = boards["board1"]
    if isinstance(board, NspawnMachine):
        _wipe_node(board)  # never on a real board
    config = {"node": {"software": "bitcraps-node hil-ansible"}}
    first = ansible_run.run_playbook("site.yml", {"board1": board}, _vars(wheelhouse, config), tmp_path)
    assert first.returncode == 0, first.output[-4000:]
    assert first.recap["board1"].failed == 0
    state = board.wait_ready()
    assert board.status()["version"] == _wheel_version(wheelhouse / "x86_64")
    assert 'software = "bitcraps-node hil-ansible"' in board.check(["cat", "/etc/bitcraps/node.toml"])

    second = ansible_run.run_playbook("site.yml", {"board1": board}, _vars(wheelhouse, config), tmp_path)
    assert second.returncode == 0, second.output[-4000:]
    assert second.recap["board1"].changed == 0, second.output[-4000:]
    # Nothing changed, so nothing restarted.
    assert board.unit().main_pid == state.main_pid


def test_bad_config_value_fails_the_play_before_the_node_restarts(
    boards: dict[str, Target], wheelhouse: Path, tmp_path: Path
) -> None:
    board = boards["board1"]
    good = {"node": {"software": "bitcraps-node hil-ansible"}}
    assert (
        ansible_run.run_playbook("site.yml", {"board1": board}, _vars(wheelhouse, good), tmp_path).returncode
        == 0
    )
    before = board.wait_ready()
    config_before = board.check(["cat", "/etc/bitcraps/node.toml"])

    bad = {"node": {"software": "bitcraps-node hil-ansible", "udp_port": 70000}}
    run = ansible_run.run_playbook("site.yml", {"board1": board}, _vars(wheelhouse, bad), tmp_path)
    assert run.returncode != 0
    assert run.recap["board1"].failed == 1
    # The node's own check named the key; the old config stayed and the node never restarted.
    assert "node.udp_port" in run.output
    assert "RUNNING HANDLER" not in run.output
    assert board.check(["cat", "/etc/bitcraps/node.toml"]) == config_before
    after = board.unit()
    assert (after.main_pid, after.restarts, after.active) == (before.main_pid, before.restarts, "active")


def test_config_change_via_ansible_applies(
    boards: dict[str, Target], wheelhouse: Path, tmp_path: Path
) -> None:
    board = boards["board1"]
    before = board.wait_ready()
    config = {"node": {"software": "bitcraps-node hil-ansible", "udp_port": 47476}}
    run = ansible_run.run_playbook("site.yml", {"board1": board}, _vars(wheelhouse, config), tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    assert run.recap["board1"].changed >= 1
    after = board.wait_ready()
    assert after.main_pid != before.main_pid  # the handler restarted it
    assert any(addr.endswith(":47476") for addr in board.status()["listen"])


def test_fleet_ca_certificates_signed_on_the_controller_let_boards_ping(
    boards: dict[str, Target], wheelhouse: Path, tmp_path: Path
) -> None:
    cli = str(Path(sys.executable).parent / "bitcraps-node")
    ca = tmp_path / "fleet-ca"
    subprocess.run([cli, "identity", "ca-init", str(ca)], check=True, capture_output=True, timeout=60)
    extra = {
        **_vars(wheelhouse, {"node": {"software": "bitcraps-node hil-ansible"}}),
        "bitcraps_node_fleet_ca_dir": str(ca),
        "bitcraps_node_cert_dir": str(tmp_path / "certs"),
    }
    (tmp_path / "certs").mkdir()
    run = ansible_run.run_playbook("site.yml", boards, extra, tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    for name, board in boards.items():
        peer_id = board.status()["peer_id"]
        # Signed on the controller from the key the board holds; the CA key never left tmp_path.
        assert (tmp_path / "certs" / f"{peer_id}.crt").exists(), name
        assert board.run(["test", "-e", "/etc/bitcraps/ca.key"]).returncode != 0
        assert "ca_file" in board.check(["cat", "/etc/bitcraps/node.toml"])
    done = boards["board1"].ping(boards["board2"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trust"] == "fleet_ca"
    again = ansible_run.run_playbook("site.yml", boards, extra, tmp_path)
    assert all(recap.changed == 0 for recap in again.recap.values()), again.output[-4000:]


def _bumped_wheelhouse(wheelhouse: Path, work: Path, steps: int) -> Path:
    """The wheelhouse with the node's wheel replaced by the same code ``steps`` micro versions on."""
    source = work / "src"
    for name in ("node", "bluez", "netlink"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    current = tomllib.loads((source / "pyproject.toml").read_text())["project"]["version"]
    release = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", current)
    assert release is not None, current
    major, minor, micro = (int(part or 0) for part in release.groups())
    bumped = f"{major}.{minor}.{micro + steps}"
    for path in (source / "pyproject.toml", source / "node/__init__.py"):
        path.write_text(path.read_text().replace(f'"{current}"', f'"{bumped}"', 1))
    out = work / "wheelhouse"
    for arch_dir in wheelhouse.iterdir():
        if arch_dir.is_dir():
            shutil.copytree(arch_dir, out / arch_dir.name, ignore=shutil.ignore_patterns("bitcraps_node-*"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "built"), str(source)],
        check=True,
        timeout=300,
    )
    (built,) = (work / "built").glob("bitcraps_node-*.whl")
    for arch_dir in out.iterdir():
        shutil.copy(built, arch_dir)
    assert _wheel_version(out / "x86_64") == bumped
    return out


@pytest.fixture(scope="module")
def upgrade_wheelhouse(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bumped_wheelhouse(wheelhouse, tmp_path_factory.mktemp("upgrade"), 1)


@pytest.fixture(scope="module")
def second_upgrade_wheelhouse(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bumped_wheelhouse(wheelhouse, tmp_path_factory.mktemp("upgrade2"), 2)


def test_rolling_upgrade_one_board_at_a_time_waiting_for_ready(
    boards: dict[str, Target], upgrade_wheelhouse: Path, tmp_path: Path
) -> None:
    # board1 runs what the role installed above, board2 what the image shipped.
    config = {"node": {"software": "bitcraps-node hil-ansible"}}
    new_version = _wheel_version(upgrade_wheelhouse / "x86_64")

    run = ansible_run.run_playbook("upgrade.yml", boards, _vars(upgrade_wheelhouse, config), tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    for name, board in boards.items():
        assert board.status()["version"] == new_version
        assert f"{name} runs {new_version}" in run.output
    # serial: 1 -- board1's READY wait finished before board2's first task started.
    ready_1 = run.output.index("ok: [board1]", run.output.index("TASK [bitcraps_node : Wait for the node"))
    first_2 = run.output.index("[board2]")
    assert ready_1 < first_2
    # And again: an upgraded fleet is left alone.
    again = ansible_run.run_playbook("upgrade.yml", boards, _vars(upgrade_wheelhouse, config), tmp_path)
    assert again.returncode == 0
    assert all(recap.changed == 0 for recap in again.recap.values()), again.output[-4000:]


def test_rolling_upgrade_stops_at_the_first_failing_board_and_a_fixed_run_finishes_it(
    boards: dict[str, Target], upgrade_wheelhouse: Path, second_upgrade_wheelhouse: Path, tmp_path: Path
) -> None:
    good = {"node": {"software": "bitcraps-node hil-ansible"}}
    converge = ansible_run.run_playbook("site.yml", boards, _vars(upgrade_wheelhouse, good), tmp_path)
    assert converge.returncode == 0, converge.output[-4000:]
    before = {name: board.wait_ready() for name, board in boards.items()}
    config_2 = boards["board2"].check(["cat", "/etc/bitcraps/node.toml"])

    bad = {"node": {"software": "bitcraps-node hil-ansible", "udp_port": -1}}
    run = ansible_run.run_playbook("upgrade.yml", boards, _vars(second_upgrade_wheelhouse, bad), tmp_path)
    assert run.returncode != 0
    assert run.recap["board1"].failed == 1
    # max_fail_percentage: 0 with serial: 1 -- board2 was never touched.
    assert "board2" not in run.recap
    assert boards["board2"].check(["cat", "/etc/bitcraps/node.toml"]) == config_2
    for name, board in boards.items():
        after = board.unit()
        assert (after.main_pid, after.active) == (before[name].main_pid, "active"), name

    # board1 got the new package before its config failed, and nothing restarted it. A run with
    # the config fixed (so the config file does not change) must still get it running the new version.
    fixed = ansible_run.run_playbook("upgrade.yml", boards, _vars(second_upgrade_wheelhouse, good), tmp_path)
    assert fixed.returncode == 0, fixed.output[-4000:]
    new_version = _wheel_version(second_upgrade_wheelhouse / "x86_64")
    for board in boards.values():
        assert board.status()["version"] == new_version


def _wheel_version(directory: Path) -> str:
    (wheel,) = directory.glob("bitcraps_node-*.whl")
    return wheel.name.split("-")[1]


def test_node_cli_on_path(boards: dict[str, Target]) -> None:
    # The role links the CLI onto PATH for people on the board.
    board = boards["board1"]
    assert board.check(["readlink", "/usr/local/bin/bitcraps-node"]).strip() == NODE
