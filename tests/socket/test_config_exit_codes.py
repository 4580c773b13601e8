"""A configuration the node cannot use is exit 2 and one line on stderr, from `config check` and
from `run` alike: the systemd unit does not restart on 2 (RestartPreventExitStatus=2), so a bad
deployment stops instead of looping."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from node.security import certs
from node.security.keystore import load_or_create
from tests.support.nodeproc import cli

pytestmark = pytest.mark.process


def _one_line_exit_2(result: subprocess.CompletedProcess[str], key: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert key in result.stderr
    assert "Traceback" not in result.stderr


def _config(tmp_path: Path, ca_file: Path, cert_file: Path) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\nlisten_address = "127.0.0.1"\nudp_port = 0\n'
        f'[tcp_tls]\nport = 0\nca_file = "{ca_file}"\ncert_file = "{cert_file}"\n'
    )
    return config


def _run(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    state, runtime = str(tmp_path / "state"), str(tmp_path / "run")
    return cli("run", "--config", str(config), "--state-dir", state, "--runtime-dir", runtime)


@pytest.mark.parametrize("bad", ["missing", "directory", "garbage", "key"])
def test_an_unusable_node_certificate_is_exit_2_before_the_node_starts(tmp_path: Path, bad: str) -> None:
    certs.init_ca_dir(tmp_path / "ca")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    cert_file = {
        "missing": tmp_path / "nowhere.crt",
        "directory": tmp_path,
        "garbage": garbage,
        "key": tmp_path / "ca" / certs.CA_KEY_FILE,
    }[bad]
    config = _config(tmp_path, tmp_path / "ca" / certs.CA_CERT_FILE, cert_file)
    _one_line_exit_2(cli("config", "check", str(config)), "tcp_tls.cert_file")
    _one_line_exit_2(_run(tmp_path, config), "tcp_tls.cert_file")


def test_a_certificate_for_another_node_is_exit_2_from_run(tmp_path: Path) -> None:
    """`config check` cannot know the node's key; `run` finds the mismatch and it is still exit 2."""
    ca = certs.init_ca_dir(tmp_path / "ca")
    other = load_or_create(tmp_path / "other-node")[0]
    cert_file = tmp_path / "node.crt"
    cert_file.write_bytes(certs.cert_pem(certs.issue(ca, other.public_key)))
    config = _config(tmp_path, tmp_path / "ca" / certs.CA_CERT_FILE, cert_file)
    assert cli("config", "check", str(config)).returncode == 0
    result = _run(tmp_path, config)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]  # the node logs its identity before it reads the trust settings
    assert last.startswith("bitcraps-node: config error: ") and other.peer_id in last
