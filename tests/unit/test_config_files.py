"""Files the config names are checked by ``config check`` as ``run`` would use them: the fleet CA
and the node certificate of [tcp_tls], the CA bundle of [turn]. A file that fails here would
otherwise pass the check and stop the node at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from node import config as c
from node.security import certs
from tests.unit.session_harness import make_identity
from tests.unit.test_config_bounds import config_error


def _fleet(tmp_path: Path) -> tuple[Path, Path]:
    """A fleet CA and a node certificate it issued, as `identity ca-init` / `identity issue` write them."""
    ca = certs.init_ca_dir(tmp_path / "ca")
    node_cert = tmp_path / "node.crt"
    node_cert.write_bytes(certs.cert_pem(certs.issue(ca, make_identity(1).public_key)))
    return tmp_path / "ca" / certs.CA_CERT_FILE, node_cert


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"\x00\x01 not a certificate\n")
    certs.init_ca_dir(tmp_path / "other-ca")
    key = tmp_path / "other-ca" / certs.CA_KEY_FILE  # a private key where a certificate belongs
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    return {"missing": tmp_path / "nowhere.crt", "directory": tmp_path, "garbage": garbage, "key": key}


BAD = ["missing", "directory", "garbage", "key"]


def _tls(ca_file: Path, cert_file: Path) -> str:
    return f'[tcp_tls]\nca_file = "{ca_file}"\ncert_file = "{cert_file}"\n'


def test_a_fleet_ca_and_its_node_certificate_pass(tmp_path: Path) -> None:
    ca_file, cert_file = _fleet(tmp_path)
    assert c.parse(_tls(ca_file, cert_file)).tcp_tls.cert_file == str(cert_file)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("key", ["ca_file", "cert_file"])
def test_an_unusable_fleet_file_names_its_key(tmp_path: Path, key: str, bad: str) -> None:
    ca_file, cert_file = _fleet(tmp_path)
    path = _bad_files(tmp_path)[bad]
    err = config_error(_tls(path, cert_file) if key == "ca_file" else _tls(ca_file, path))
    assert err.key == f"tcp_tls.{key}" and err.problem is c.ConfigProblem.INVALID
    assert str(path) in str(err)
    assert not str(err).rstrip().endswith(":")


def test_the_reason_is_said(tmp_path: Path) -> None:
    ca_file, _ = _fleet(tmp_path)
    files = _bad_files(tmp_path)
    assert "No such file or directory" in str(config_error(_tls(ca_file, files["missing"])))
    assert "Is a directory" in str(config_error(_tls(ca_file, files["directory"])))
    assert "not a PEM certificate" in str(config_error(_tls(ca_file, files["key"])))


def test_a_node_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    ca_file, _ = _fleet(tmp_path / "ours")
    _, theirs = _fleet(tmp_path / "theirs")
    err = config_error(_tls(ca_file, theirs))
    assert err.key == "tcp_tls.cert_file"
    assert "not signed by the CA" in str(err)


@pytest.mark.parametrize("bad", BAD)
def test_an_unusable_turn_ca_file_names_the_key(tmp_path: Path, bad: str) -> None:
    path = _bad_files(tmp_path)[bad]
    err = config_error(f'[turn]\nca_file = "{path}"\n')
    assert err.key == "turn.ca_file" and err.problem is c.ConfigProblem.INVALID
    assert str(path) in str(err)


def test_a_turn_ca_bundle_of_pem_certificates_passes(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"".join(certs.cert_pem(certs.make_ca().certificate) for _ in range(2)))
    assert c.parse(f'[turn]\nca_file = "{bundle}"\n').turn.ca_file == str(bundle)
