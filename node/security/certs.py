"""The fleet CA and node certificates (Ed25519, X.509 made with cryptography).

A fleet CA lives on the machine that holds its key (an Ansible controller); it signs a node
certificate for a node's *public* key, so the CA key never goes to a node. A node certificate
carries the node's identity key itself and names its peer id as a URI subject alternative name
(``urn:bitcraps:peer:<peer id>``), so whoever checks the certificate also checks that the name
belongs to the key (``NodeCertificate.san_matches_key``).

Nodes without a fleet CA (pinned ids, development mode) present a self-signed certificate of the
same shape, made in memory at start from the identity key.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.errors import PathError, RemoteError
from node.paths import atomic_write, check_private_dir, ensure_private_dir
from node.proto.identity import Identity, peer_id_of
from node.security.keyfile import read_private

PEER_URI_PREFIX = "urn:bitcraps:peer:"
CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
CA_DAYS = 3650
NODE_CERT_DAYS = 825
# Clock skew between a controller and a freshly booted board without RTC: start validity earlier.
BACKDATE = datetime.timedelta(hours=1)


class CertProblem(Enum):
    EXISTS = "exists"
    UNREADABLE = "unreadable"
    UNWRITABLE = "unwritable"
    NOT_PEM = "not pem"
    NOT_ED25519 = "not ed25519"
    NOT_A_CA = "not a ca"
    KEY_MISMATCH = "key mismatch"
    NOT_A_NODE_CERTIFICATE = "not a node certificate"


class CertError(PathError[CertProblem]):
    """A CA or certificate file cannot be made, read or used; ``reason`` (also read as
    ``problem``) says why."""

    @property
    def problem(self) -> CertProblem:
        return self.reason


def peer_uri(peer_id: str) -> str:
    return PEER_URI_PREFIX + peer_id


@dataclass(frozen=True, slots=True)
class FleetCa:
    key: Ed25519PrivateKey
    certificate: x509.Certificate


@dataclass(frozen=True, slots=True)
class NodeCertificate:
    """What a node certificate says, parsed from DER without trusting it yet."""

    certificate: x509.Certificate
    public_key: bytes  # raw Ed25519
    san_peer_ids: tuple[str, ...]

    @property
    def key_peer_id(self) -> str:
        return peer_id_of(self.public_key)

    @property
    def san_matches_key(self) -> bool:
        """Exactly one peer URI, and it names this certificate's own key."""
        return self.san_peer_ids == (self.key_peer_id,)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


class CertParseError(RemoteError, ValueError):
    """The bytes are not an Ed25519 node certificate (raised to callers that type it further).
    A RemoteError: the bytes come from a peer; still a ValueError for callers that catch that."""


def parse_node_certificate(der: bytes) -> NodeCertificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
    except ValueError as exc:
        raise CertParseError(f"not an X.509 certificate: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CertParseError("certificate key is not Ed25519")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    ids = tuple(u.removeprefix(PEER_URI_PREFIX) for u in uris if u.startswith(PEER_URI_PREFIX))
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return NodeCertificate(cert, raw, ids)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """The certificate's signature verifies with the CA's Ed25519 key and names it as issuer."""
    ca_key = ca.public_key()
    if not isinstance(ca_key, Ed25519PublicKey) or cert.issuer != ca.subject:
        return False
    try:
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature:
        return False
    return True


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates only; a node key signs TLS handshakes and in-band proofs only."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _node_builder(
    public_key: bytes, peer_id: str, not_before: datetime.datetime, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, peer_id)]))
        .public_key(Ed25519PublicKey.from_public_bytes(public_key))
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before - BACKDATE)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(peer_uri(peer_id))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )


def issue(
    ca: FleetCa,
    public_key: bytes,
    *,
    days: int = NODE_CERT_DAYS,
    now: datetime.datetime | None = None,
    san_peer_id: str | None = None,
) -> x509.Certificate:
    """A node certificate for ``public_key`` signed by the CA.

    ``san_peer_id`` overrides the name in the SAN; only tests use it, to make a certificate whose
    SAN does not match its key and prove that peers refuse it.
    """
    start = now or _now()
    peer_id = san_peer_id or peer_id_of(public_key)
    builder = _node_builder(public_key, peer_id, start, days).issuer_name(ca.certificate.subject)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
    )
    return builder.sign(ca.key, None)


def self_signed(
    identity: Identity, *, days: int = NODE_CERT_DAYS, now: datetime.datetime | None = None
) -> x509.Certificate:
    """The certificate a node without a fleet CA presents: its identity key, signed by itself."""
    start = now or _now()
    builder = _node_builder(identity.public_key, identity.peer_id, start, days)
    builder = builder.issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.peer_id)]))
    return builder.sign(identity.private_key, None)


def make_ca(
    name: str = "bitcraps fleet CA", *, days: int = CA_DAYS, now: datetime.datetime | None = None
) -> FleetCa:
    start = now or _now()
    key = Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)
    )
    return FleetCa(key, cert)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_file(path: Path, data: bytes, mode: int, *, exclusive: bool = False) -> None:
    """Write ``data`` atomically with ``mode``; ``exclusive`` refuses to replace an existing file."""
    try:
        atomic_write(path, data, mode, exclusive=exclusive)
    except FileExistsError as exc:
        raise CertError(path, CertProblem.EXISTS, "already exists; refusing to overwrite") from exc
    except OSError as exc:
        raise CertError(path, CertProblem.UNWRITABLE, f"cannot write ({exc.strerror})") from exc


def init_ca_dir(directory: Path, name: str = "bitcraps fleet CA", *, days: int = CA_DAYS) -> FleetCa:
    """Create a CA in ``directory`` (0700): ``ca.key`` (0600) and ``ca.crt``. Never replaces one.
    Raises CertError, paths.DirectoryError (an unsafe directory)."""
    ensure_private_dir(directory)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    for path in (key_path, cert_path):
        if os.path.lexists(path):  # a symlink, even a dangling one, is something already there
            raise CertError(path, CertProblem.EXISTS, "a CA already exists here; refusing to replace it")
    ca = make_ca(name, days=days)
    key_pem = ca.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_file(key_path, key_pem, 0o600, exclusive=True)
    write_file(cert_path, cert_pem(ca.certificate), 0o644, exclusive=True)
    return ca


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertError(path, CertProblem.UNREADABLE, f"cannot read ({exc.strerror})") from exc


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as exc:
        raise CertError(path, CertProblem.NOT_PEM, "not a PEM certificate") from exc


def load_node_certificate(path: Path) -> tuple[x509.Certificate, NodeCertificate]:
    """A node certificate from a PEM file, and what it says. Raises CertError."""
    cert = load_certificate(path)
    try:
        return cert, parse_node_certificate(cert.public_bytes(serialization.Encoding.DER))
    except CertParseError as exc:
        raise CertError(path, CertProblem.NOT_A_NODE_CERTIFICATE, str(exc)) from exc


def load_ca_dir(directory: Path) -> FleetCa:
    """The CA in ``directory``, held to the node's rules for its own key: the directory is ours and
    nobody else's to write (paths.check_private_dir), ``ca.key`` a regular file of ours, never read
    through a link (keyfile.read_private). Raises CertError, paths.DirectoryError,
    keyfile.KeyFileError."""
    check_private_dir(directory)
    key_path = directory / CA_KEY_FILE
    cert = load_certificate(directory / CA_CERT_FILE)
    try:
        key = serialization.load_pem_private_key(read_private(key_path), password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(key_path, CertProblem.NOT_PEM, "not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CertError(key_path, CertProblem.NOT_ED25519, "the CA key is not Ed25519")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    cert_key = cert.public_key()
    if not isinstance(cert_key, Ed25519PublicKey) or raw != cert_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ):
        raise CertError(directory / CA_CERT_FILE, CertProblem.KEY_MISMATCH, "does not belong to ca.key")
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = x509.BasicConstraints(ca=False, path_length=None)
    if not basic.ca:
        raise CertError(directory / CA_CERT_FILE, CertProblem.NOT_A_CA, "not a CA certificate")
    return FleetCa(key, cert)
