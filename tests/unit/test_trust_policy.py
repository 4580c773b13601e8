"""node.security.trust: the policy itself, and as the datagram secure session's PeerVerifier with real
fleet-CA certificates (a handshake in memory, virtual time)."""

from __future__ import annotations

import datetime

import pytest
from cryptography.hazmat.primitives import serialization

from node.proto.identity import Identity
from node.proto.session.secure_session import HandshakeFailed, KeyConfirmed
from node.proto.session.trust import PeerVerificationError, VerifyFailure
from node.security import certs
from node.security.trust import SessionVerifier, TrustError, TrustMode, TrustPolicy, TrustReason
from tests.unit.session_harness import make_identity, make_pair


def der(cert: certs.x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fleet(ca: certs.FleetCa, *pins: str) -> SessionVerifier:
    return SessionVerifier(TrustPolicy(TrustMode.FLEET_CA, ca=ca.certificate, pinned=frozenset(pins)))


def cert_for(ca: certs.FleetCa, ident: Identity, **kw: object) -> bytes:
    return der(certs.issue(ca, ident.public_key, **kw))  # type: ignore[arg-type]


def test_session_handshake_with_fleet_certificates() -> None:
    ca = certs.make_ca()
    alice, bob = make_identity(1), make_identity(2)
    pair = make_pair(
        alice_verifier=fleet(ca),
        bob_verifier=fleet(ca),
        credentials=(cert_for(ca, alice), cert_for(ca, bob)),
    )
    pair.alice.connect(pair.now)
    pair.flush()
    assert pair.of_type("alice", KeyConfirmed)
    assert pair.alice.peer_id == bob.peer_id
    assert pair.bob.peer_id == alice.peer_id
    pair.alice.send(b"over the fleet's trust", pair.now)
    pair.flush()
    assert pair.received("bob") == [b"over the fleet's trust"]


@pytest.mark.parametrize(
    ("case", "failure"),
    [
        ("other_ca", VerifyFailure.BAD_CREDENTIAL),
        ("expired", VerifyFailure.BAD_CREDENTIAL),
        ("no_credential", VerifyFailure.BAD_CREDENTIAL),
        ("someone_elses_certificate", VerifyFailure.CREDENTIAL_MISMATCH),
        ("lying_san", VerifyFailure.CREDENTIAL_MISMATCH),
    ],
)
def test_session_handshake_refused_without_a_valid_fleet_certificate(
    case: str, failure: VerifyFailure
) -> None:
    ca, other = certs.make_ca(), certs.make_ca()
    alice, bob = make_identity(1), make_identity(2)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    alice_credential = {
        "other_ca": cert_for(other, alice),
        "expired": cert_for(ca, alice, days=1, now=past),
        "no_credential": b"",
        "someone_elses_certificate": cert_for(ca, make_identity(3)),
        "lying_san": cert_for(ca, alice, san_peer_id=make_identity(3).peer_id),
    }[case]
    pair = make_pair(
        alice_verifier=fleet(ca), bob_verifier=fleet(ca), credentials=(alice_credential, cert_for(ca, bob))
    )
    pair.alice.connect(pair.now)
    pair.flush()
    (failed,) = pair.of_type("bob", HandshakeFailed)
    assert isinstance(failed, HandshakeFailed) and isinstance(failed.error, PeerVerificationError)
    assert failed.error.reason is failure
    assert pair.bob.peer_id is None or not pair.of_type("bob", KeyConfirmed)


def test_pinned_and_development_policies_as_verifiers() -> None:
    alice, bob = make_identity(1), make_identity(2)
    pinned = SessionVerifier(TrustPolicy(TrustMode.PINNED, pinned=frozenset({alice.peer_id})))
    assert pinned.verify(alice.public_key, b"", None) == alice.peer_id
    with pytest.raises(PeerVerificationError) as err:
        pinned.verify(bob.public_key, b"", None)
    assert err.value.reason is VerifyFailure.NOT_TRUSTED
    dev = SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT))
    assert dev.verify(bob.public_key, b"", None) == bob.peer_id
    with pytest.raises(PeerVerificationError) as wrong:
        dev.verify(bob.public_key, b"", alice.peer_id)
    assert wrong.value.reason is VerifyFailure.WRONG_PEER
    assert dev.credential(b"cert") == b""


def test_policy_checks_certificates_from_tls() -> None:
    ca = certs.make_ca()
    node = make_identity(1)
    policy = TrustPolicy(TrustMode.FLEET_CA, ca=ca.certificate)
    assert policy.check_certificate(cert_for(ca, node), node.peer_id) == node.peer_id
    with pytest.raises(TrustError) as err:
        policy.check_certificate(cert_for(ca, node, san_peer_id=make_identity(2).peer_id), None)
    assert err.value.reason is TrustReason.SAN_MISMATCH
    with pytest.raises(TrustError) as none:
        policy.check_certificate(None, None)
    assert none.value.reason is TrustReason.NO_CERTIFICATE
    with pytest.raises(TrustError) as garbage:
        policy.check_certificate(b"\x30\x00", None)
    assert garbage.value.reason is TrustReason.BAD_CERTIFICATE


def test_policy_modes_from_settings_and_misuse(tmp_path: object) -> None:
    from pathlib import Path

    from node.security.trust import TrustConfigError, TrustSettings

    base = Path(str(tmp_path))
    ca_file = base / "ca.crt"
    ca_file.write_bytes(certs.cert_pem(certs.make_ca().certificate))
    pin = make_identity(1).peer_id
    assert (
        TrustPolicy.from_settings(TrustSettings(ca_file, None, frozenset(), False)).mode is TrustMode.FLEET_CA
    )
    assert (
        TrustPolicy.from_settings(TrustSettings(None, None, frozenset({pin}), False)).mode is TrustMode.PINNED
    )
    dev = TrustPolicy.from_settings(TrustSettings(None, None, frozenset(), True))
    assert dev.mode is TrustMode.DEVELOPMENT and "INSECURE" in dev.describe()
    with pytest.raises(TrustConfigError):
        TrustPolicy.from_settings(TrustSettings(None, None, frozenset(), False))
    with pytest.raises(TrustConfigError):
        TrustPolicy.from_settings(TrustSettings(base / "missing.crt", None, frozenset(), True))
    with pytest.raises(TrustConfigError):
        TrustPolicy(TrustMode.PINNED)


def test_own_certificate_must_be_ours_and_from_the_ca(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    from pathlib import Path

    from node.security.trust import TrustConfigError

    base = Path(str(tmp_path))
    ca, other = certs.make_ca(), certs.make_ca()
    me = make_identity(1)
    policy = TrustPolicy(TrustMode.FLEET_CA, ca=ca.certificate)
    path = base / "node.crt"
    for cert in (certs.issue(ca, make_identity(2).public_key), certs.issue(other, me.public_key)):
        path.write_bytes(certs.cert_pem(cert))
        with pytest.raises(TrustConfigError):
            policy.own_certificate(me, path)
    path.write_bytes(b"not a certificate")
    with pytest.raises(TrustConfigError):
        policy.own_certificate(me, path)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    path.write_bytes(certs.cert_pem(certs.issue(ca, me.public_key, days=1, now=past)))
    assert policy.own_certificate(me, path).not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    assert "expired" in caplog.text
