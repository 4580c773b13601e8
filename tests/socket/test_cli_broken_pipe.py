"""Every command whose stdout reader went away ends quietly, like a Unix tool (no node needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.nodeproc import cli_into_closed_pipe

pytestmark = pytest.mark.process


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize(
    "args",
    [("config", "show", "--json"), ("config", "show"), ("identity", "show")],
    ids=["config-show-json", "config-show", "identity-show"],
)
def test_a_reader_that_went_away_ends_the_command_quietly(
    args: tuple[str, ...], buffered: bool, tmp_path: Path
) -> None:
    if args[0] == "identity":
        args = (*args, "--state-dir", str(tmp_path))
    done = cli_into_closed_pipe(*args, buffered=buffered)
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_into_a_reader_that_went_away(flag: str) -> None:
    # argparse prints these and exits; with buffered stdout the pipe breaks at our flush. (Unbuffered,
    # argparse itself ignores the failed write and exits 0, quietly too.)
    done = cli_into_closed_pipe(flag, buffered=True)
    assert (done.returncode, done.stderr) == (141, "")
