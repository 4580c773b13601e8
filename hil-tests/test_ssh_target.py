"""The real-board path (``--target ssh://...``) exercised without a board: an nspawn machine's own
sshd, reached from the test network's namespace as a controller on the board's LAN would.

Skipped when the run already targets a board over SSH (then every test takes this path).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hil import ansible_run, nspawn
from hil.machines import Machines
from hil.ssh import SshTarget
from hil.target import Target, TargetError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def pair(
    machines: Machines,
    testnet: nspawn.TestNet | None,
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Target, SshTarget]]:
    """(the machine through nsenter, the same machine through SSH)."""
    if pytestconfig.getoption("target") != "nspawn" or testnet is None:
        pytest.skip("only for the nspawn stand-in: a --target ssh:// run takes this path throughout")
    keydir = tmp_path_factory.mktemp("ssh")
    key = keydir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    with machines.fresh("nspawn", "bcops-ssh") as machine:
        machine.wait_ready()
        public = key.with_suffix(".pub").read_text().strip()
        machine.check(["install", "-d", "-m", "0700", "/root/.ssh"])
        machine.check(["sh", "-c", f"printf '%s\\n' {shlex.quote(public)} > /root/.ssh/authorized_keys"])
        _wait_for_sshd(machine)
        testnet.controller_address()
        board = SshTarget(
            f"ssh://root@{machine.address}",
            None,
            ssh_options=[
                "-o",
                f"IdentityFile={key}",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                f"UserKnownHostsFile={keydir / 'known_hosts'}",
            ],
            wrapper=["ip", "netns", "exec", testnet.ns],
        )
        yield machine, board


def _wait_for_sshd(machine: Target, timeout: float = 60) -> None:
    # The image's first boot makes the SSH host keys, then ssh.service starts.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if machine.run(["systemctl", "is-active", "--quiet", "ssh.service"]).returncode == 0:
            return
        time.sleep(0.5)
    raise TargetError(f"{machine.name}: sshd not active in {timeout:.0f} s")


def test_ssh_target_sees_the_same_node(pair: tuple[Target, SshTarget]) -> None:
    machine, board = pair
    assert board.wait_ready(timeout=60).main_pid == machine.unit().main_pid
    assert board.status()["peer_id"] == machine.status()["peer_id"]
    # Arguments survive the remote shell intact.
    assert board.check(["printf", "%s|", "a b", "$HOME", "it's"]) == "a b|$HOME|it's|"


def test_role_converges_over_ssh(pair: tuple[Target, SshTarget], wheelhouse: Path, tmp_path: Path) -> None:
    machine, board = pair
    extra = {
        "bitcraps_node_wheelhouse": str(wheelhouse),
        "bitcraps_node_config": {"node": {"software": "bitcraps-node over ssh"}},
        "bitcraps_node_controller_cli": str(Path(sys.executable).parent / "bitcraps-node"),
    }
    run = ansible_run.run_playbook("site.yml", {"board": board}, extra, tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    assert 'software = "bitcraps-node over ssh"' in machine.check(["cat", "/etc/bitcraps/node.toml"])
    assert board.wait_ready().ready
