"""Key files and the state directory, attacked by a local user with the installed CLI: a link,
a FIFO, a directory or another user's file where the key should be, a state directory others can
write or own. Each is refused with one line and the right exit code (``identity show`` 1, ``run``
2: the unit does not restart on 2), nothing is changed, nothing blocks (issue 11)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from node.security.keystore import KEY_FILE_NAME
from tests.support.nodeproc import cli, start_node

pytestmark = pytest.mark.process

NOBODY = 65534
# A FIFO at the key blocked `open` forever; this bound turns a hang into a failure.
CLI_TIMEOUT = 60.0
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another uid")


def _show(tmp_path: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return cli("identity", "show", "--state-dir", str(state), timeout=CLI_TIMEOUT)


def _run(tmp_path: Path, state: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\nlisten_address = "127.0.0.1"\nudp_port = 0\n[tcp_tls]\nport = 0\n[metrics]\nlisten = ""\n'
    )
    return cli(
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--runtime-dir",
        str(tmp_path / "run"),
        timeout=CLI_TIMEOUT,
    )


COMMANDS = [pytest.param(_show, 1, id="identity-show"), pytest.param(_run, 2, id="run")]


def _assert_refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("bitcraps-node: ")
    for word in words:
        assert word in lines[0]


def _private_state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state


@pytest.mark.parametrize(("command", "code"), COMMANDS)
def test_key_symlinked_to_another_file_leaves_that_file_alone(
    tmp_path: Path, command: Callable[[Path, Path], subprocess.CompletedProcess[str]], code: int
) -> None:
    state = _private_state(tmp_path)
    victim = tmp_path / "shared-notes"
    victim.write_text("world-readable on purpose\n")
    victim.chmod(0o644)
    (state / KEY_FILE_NAME).symlink_to(victim)
    _assert_refused(command(tmp_path, state), code, "is a symlink", str(state / KEY_FILE_NAME))
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert victim.read_text() == "world-readable on purpose\n"
    assert (state / KEY_FILE_NAME).is_symlink()


@pytest.mark.parametrize(("command", "code"), COMMANDS)
@pytest.mark.parametrize(
    ("plant", "words"),
    [
        pytest.param(lambda key: key.symlink_to("/dev/null"), ("is a symlink",), id="link-to-dev-null"),
        pytest.param(lambda key: os.mkfifo(key, 0o600), ("is a FIFO",), id="fifo"),
        pytest.param(lambda key: key.mkdir(), ("is a directory",), id="directory"),
    ],
)
def test_key_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path,
    command: Callable[[Path, Path], subprocess.CompletedProcess[str]],
    code: int,
    plant: Callable[[Path], None],
    words: tuple[str, ...],
) -> None:
    state = _private_state(tmp_path)
    dev_null = os.stat("/dev/null").st_mode
    plant(state / KEY_FILE_NAME)
    _assert_refused(command(tmp_path, state), code, *words)
    assert sorted(os.listdir(state)) == [KEY_FILE_NAME]  # nothing created beside it
    assert os.stat("/dev/null").st_mode == dev_null  # a chmod through a link would break the host


@as_root
@pytest.mark.parametrize(("command", "code"), COMMANDS)
def test_key_owned_by_another_user_is_refused(
    tmp_path: Path, command: Callable[[Path, Path], subprocess.CompletedProcess[str]], code: int
) -> None:
    state = tmp_path / "state"
    assert _show(tmp_path, state).returncode == 0
    key = state / KEY_FILE_NAME
    before = key.read_bytes()
    os.chown(key, NOBODY, NOBODY)
    _assert_refused(command(tmp_path, state), code, f"owned by uid {NOBODY}")
    assert key.read_bytes() == before
    assert key.stat().st_uid == NOBODY


@pytest.mark.parametrize(("command", "code"), COMMANDS)
@pytest.mark.parametrize("mode", [0o770, 0o1777], ids=["0770", "1777"])
def test_state_dir_others_can_write_is_refused(
    tmp_path: Path, command: Callable[[Path, Path], subprocess.CompletedProcess[str]], code: int, mode: int
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    _assert_refused(command(tmp_path, state), code, "lets group or others write", "chmod go-w")
    assert os.listdir(state) == []


@as_root
@pytest.mark.parametrize(("command", "code"), COMMANDS)
def test_state_dir_owned_by_another_user_is_refused(
    tmp_path: Path, command: Callable[[Path, Path], subprocess.CompletedProcess[str]], code: int
) -> None:
    state = _private_state(tmp_path)
    os.chown(state, NOBODY, NOBODY)
    _assert_refused(command(tmp_path, state), code, f"owned by uid {NOBODY}")
    assert os.listdir(state) == []


def test_node_runs_with_its_state_under_a_sticky_world_writable_dir(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    node = start_node(shared)
    try:
        assert node.proc.poll() is None
        shown = _show(shared, node.state_dir)
        assert shown.returncode == 0, shown.stderr
        assert node.peer_id in shown.stdout
    finally:
        node.kill()


def test_runtime_dir_others_can_write_is_refused_by_run(tmp_path: Path) -> None:
    # Whoever can write there could replace the control socket that `status` trusts.
    runtime = tmp_path / "run"
    runtime.mkdir()
    runtime.chmod(0o777)
    done = _run(tmp_path, tmp_path / "state")
    assert done.returncode == 2, done
    assert done.stdout == ""
    # Found after the identity was loaded (its log lines come first); the error is the last line.
    last = done.stderr.splitlines()[-1]
    assert last == f"bitcraps-node: {runtime}: mode 0777 lets group or others write in it; chmod go-w it"
    assert os.listdir(runtime) == []
