import datetime
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto import identity
from node.security import certs, keystore


def _ident() -> identity.Identity:
    return identity.Identity.from_private_key(Ed25519PrivateKey.generate())


def test_issued_certificate_names_the_peer_id_of_its_own_key() -> None:
    ca = certs.make_ca()
    node = _ident()
    parsed = certs.parse_node_certificate(
        certs.issue(ca, node.public_key).public_bytes(certs.serialization.Encoding.DER)
    )
    assert parsed.public_key == node.public_key
    assert parsed.san_peer_ids == (node.peer_id,)
    assert parsed.san_matches_key
    assert certs.signed_by(parsed.certificate, ca.certificate)
    assert not certs.signed_by(parsed.certificate, certs.make_ca().certificate)


def test_a_san_naming_another_peer_does_not_match_the_key() -> None:
    ca = certs.make_ca()
    node, other = _ident(), _ident()
    cert = certs.issue(ca, node.public_key, san_peer_id=other.peer_id)
    parsed = certs.parse_node_certificate(cert.public_bytes(certs.serialization.Encoding.DER))
    assert parsed.san_peer_ids == (other.peer_id,)
    assert not parsed.san_matches_key


def test_self_signed_certificate_carries_the_identity_key() -> None:
    node = _ident()
    parsed = certs.parse_node_certificate(
        certs.self_signed(node).public_bytes(certs.serialization.Encoding.DER)
    )
    assert parsed.key_peer_id == node.peer_id
    assert parsed.san_matches_key


def test_validity_window() -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    cert = certs.issue(certs.make_ca(), _ident().public_key, days=10, now=now)
    assert cert.not_valid_before_utc < now
    assert cert.not_valid_after_utc == now + datetime.timedelta(days=10)


def test_garbage_and_non_ed25519_are_parse_errors() -> None:
    with pytest.raises(certs.CertParseError):
        certs.parse_node_certificate(b"\x30\x03garbage")


def test_ca_dir_created_private_and_never_replaced(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    ca = certs.init_ca_dir(ca_dir)
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / certs.CA_KEY_FILE).stat().st_mode) == 0o600
    loaded = certs.load_ca_dir(ca_dir)
    assert loaded.certificate == ca.certificate
    with pytest.raises(certs.CertError) as err:
        certs.init_ca_dir(ca_dir)
    assert err.value.problem is certs.CertProblem.EXISTS


def test_ca_dir_with_a_foreign_certificate_is_refused(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    certs.init_ca_dir(ca_dir)
    (ca_dir / certs.CA_CERT_FILE).write_bytes(certs.cert_pem(certs.make_ca().certificate))
    with pytest.raises(certs.CertError) as err:
        certs.load_ca_dir(ca_dir)
    assert err.value.problem is certs.CertProblem.KEY_MISMATCH


def test_public_key_pem_round_trip(tmp_path: Path) -> None:
    node, _ = keystore.load_or_create(tmp_path)
    pem = (tmp_path / keystore.PUBLIC_KEY_FILE_NAME).read_bytes()
    assert identity.public_key_from_pem(pem) == node.public_key
    with pytest.raises(ValueError):
        identity.public_key_from_pem((tmp_path / keystore.KEY_FILE_NAME).read_bytes())
