"""A bad [peers] or [metrics] entry stops `run` and `config check` with exit 2 and one line naming
the entry, like every other bad key (the systemd unit does not restart on 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.nodeproc import cli

pytestmark = pytest.mark.process

PEER = "a" * 52


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (f'[peers]\nstatic = ["{PEER}@udp://127.0.0.1:9", "{PEER}@udp://127.0.0.1:9"]\n', "peers.static[1]"),
        ('[peers]\nstatic = ["nobody@udp://127.0.0.1:9"]\n', "peers.static[0]"),
        ('[metrics]\nlisten = "localhost:9474"\n', "metrics.listen"),
    ],
)
def test_a_bad_entry_is_exit_2(tmp_path: Path, extra: str, key: str) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\nlisten_address = "127.0.0.1"\nudp_port = 0\n' + extra)
    runtime, state = str(tmp_path / "run"), str(tmp_path / "state")
    for result in (
        cli("config", "check", str(config)),
        cli("run", "--config", str(config), "--state-dir", state, "--runtime-dir", runtime),
    ):
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and key in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
