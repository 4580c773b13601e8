"""The coordinator lab tests' gate: until the coordinator's CLI commands exist, they skip naming
the missing command (they are issue 15's; the lab pieces they use are tested on their own)."""

from __future__ import annotations

import subprocess

import pytest

from tests.lab.node_daemon import NODE


@pytest.fixture(scope="module", autouse=True)
def coordinator_commands() -> None:
    done = subprocess.run([*NODE, "send", "--help"], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("needs `bitcraps-node send` (the coordinator's CLI commands, issue 15)")
