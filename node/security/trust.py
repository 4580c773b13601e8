"""Who the node trusts, in one place: a fleet CA, pinned peer ids, or the development mode.

- FLEET_CA: mutual authentication against the fleet CA. The client checks the server's
  certificate in TLS 1.3 (OpenSSL: chain and validity); the server checks the client's
  certificate, which the client sends inside the channel with its proof (``verify``: chain,
  validity, SAN, key), so the server knows the typed reason for a refusal and tells the client.
  Both check that the URI SAN names the peer id of the certificate's own key. If peer ids are
  pinned as well, only those are admitted.
- PINNED: no CA. Every node presents a self-signed certificate of its identity key; the server's
  key is checked against the pinned ids, the client proves its key in-band (node.proto.link.stream_link)
  and its peer id must be pinned.
- DEVELOPMENT: as PINNED but any peer id is admitted (logged as insecure); the id is still bound to
  the key the peer proved, so a peer cannot claim another's id.

The same policy answers the datagram secure session's question (``verify``): given a public key
and a credential (the node certificate DER with a fleet CA, empty otherwise), which peer is it?
"""

from __future__ import annotations

import datetime
import logging
import ssl
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509

from node.errors import ReasonError, RemoteError, SettingsError
from node.proto.identity import Identity, peer_id_of, verify
from node.proto.link.stream_link import proof_message
from node.proto.session.trust import PeerVerificationError, VerifyFailure
from node.security import certs

log = logging.getLogger(__name__)


class TrustMode(Enum):
    FLEET_CA = "fleet_ca"
    PINNED = "pinned"
    DEVELOPMENT = "development"


class TrustReason(Enum):
    """Why a peer was refused (or why we refused to talk to it)."""

    UNKNOWN_CA = "unknown_ca"  # its certificate is not from our fleet CA
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    SAN_MISMATCH = "san_mismatch"  # the certificate's peer id is not its key's
    BAD_CERTIFICATE = "bad_certificate"  # not an Ed25519 node certificate, or another verify failure
    NO_CERTIFICATE = "no_certificate"
    PROTOCOL_VERSION = "protocol_version"  # not TLS 1.3
    BAD_PROOF = "bad_proof"  # the in-band signature does not verify (e.g. a relay in between)
    NOT_PINNED = "not_pinned"
    PEER_MISMATCH = "peer_mismatch"  # a valid identity, but not the peer we dialled
    KEY_MISMATCH = "key_mismatch"  # a valid certificate, but for another key than the one proved
    HANDSHAKE_FAILED = "handshake_failed"  # any other TLS failure (garbage, a reset mid-handshake)


class TrustError(ReasonError[TrustReason], RemoteError):
    """A peer's identity is not acceptable here; ``reason`` says why."""

    def __init__(self, reason: TrustReason, detail: str) -> None:
        # ``detail`` is required here (optional in the base): every caller says what failed.
        super().__init__(reason, detail)


class TrustConfigError(SettingsError):
    """The trust settings cannot be used (unreadable CA, a node certificate for another key)."""


@dataclass(frozen=True, slots=True)
class TrustSettings:
    ca_file: Path | None
    cert_file: Path | None
    pinned_peer_ids: frozenset[str]
    allow_development: bool


# OpenSSL X509_V_ERR_* codes (x509_vfy.h) seen on the side that verifies the certificate.
_VERIFY_CODES = {
    9: TrustReason.NOT_YET_VALID,
    10: TrustReason.EXPIRED,
    18: TrustReason.UNKNOWN_CA,  # depth zero self-signed
    19: TrustReason.UNKNOWN_CA,  # self-signed in chain
    20: TrustReason.UNKNOWN_CA,  # unable to get local issuer
    21: TrustReason.UNKNOWN_CA,  # unable to verify leaf signature
}
# OpenSSL reason names (ssl.SSLError.reason) on the side that receives the alert, or for version.
_SSL_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": TrustReason.UNKNOWN_CA,
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": TrustReason.EXPIRED,
    "SSLV3_ALERT_BAD_CERTIFICATE": TrustReason.BAD_CERTIFICATE,
    "TLSV1_ALERT_PROTOCOL_VERSION": TrustReason.PROTOCOL_VERSION,
    "UNSUPPORTED_PROTOCOL": TrustReason.PROTOCOL_VERSION,
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": TrustReason.NO_CERTIFICATE,
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": TrustReason.NO_CERTIFICATE,
}


def classify_tls_error(exc: BaseException) -> TrustReason:
    """The typed reason for an exception out of a TLS handshake (by OpenSSL code, never by text)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(exc.verify_code, TrustReason.BAD_CERTIFICATE)
    if isinstance(exc, ssl.SSLError):
        return _SSL_REASONS.get(exc.reason or "", TrustReason.HANDSHAKE_FAILED)
    return TrustReason.HANDSHAKE_FAILED


class TrustPolicy:
    def __init__(
        self,
        mode: TrustMode,
        *,
        ca: x509.Certificate | None = None,
        pinned: frozenset[str] = frozenset(),
    ) -> None:
        if (mode is TrustMode.FLEET_CA) != (ca is not None):
            raise TrustConfigError("a fleet CA certificate is needed exactly in fleet CA mode")
        if mode is TrustMode.PINNED and not pinned:
            raise TrustConfigError("pinned mode needs at least one pinned peer id")
        self.mode = mode
        self.ca = ca
        self.pinned = pinned
        self._ca_pem = certs.cert_pem(ca).decode("ascii") if ca is not None else None

    @classmethod
    def from_settings(cls, settings: TrustSettings) -> TrustPolicy:
        pinned = settings.pinned_peer_ids
        if settings.ca_file is not None:
            try:
                ca = certs.load_certificate(settings.ca_file)
            except certs.CertError as exc:
                raise TrustConfigError(f"fleet CA: {exc}") from exc
            return cls(TrustMode.FLEET_CA, ca=ca, pinned=pinned)
        if pinned:
            return cls(TrustMode.PINNED, pinned=pinned)
        if not settings.allow_development:
            raise TrustConfigError(
                "no fleet CA and no pinned peer ids, and the development mode is not allowed"
            )
        return cls(TrustMode.DEVELOPMENT)

    def describe(self) -> str:
        if self.mode is TrustMode.DEVELOPMENT:
            return "development (INSECURE: any peer is accepted)"
        extra = f", {len(self.pinned)} pinned" if self.pinned else ""
        return f"{self.mode.value}{extra}"

    # -- TLS contexts ----------------------------------------------------------------------

    def _context(self, purpose: int, cert_file: Path, key_file: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        if purpose == ssl.PROTOCOL_TLS_CLIENT:
            ctx.check_hostname = False  # peers are named by key, checked in check_certificate
        if self._ca_pem is not None and purpose == ssl.PROTOCOL_TLS_CLIENT:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=self._ca_pem)
        else:
            # The server never asks for the client's certificate in TLS: the client proves its
            # key (and sends its certificate) in-band. Without a CA, the server's key is checked
            # against the pinned or expected id after the handshake.
            ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise TrustConfigError(f"cannot load certificate {cert_file} with key {key_file}: {exc}") from exc
        return ctx

    def server_context(self, cert_file: Path, key_file: Path) -> ssl.SSLContext:
        return self._context(ssl.PROTOCOL_TLS_SERVER, cert_file, key_file)

    def client_context(self, cert_file: Path, key_file: Path) -> ssl.SSLContext:
        return self._context(ssl.PROTOCOL_TLS_CLIENT, cert_file, key_file)

    def own_certificate(self, identity: Identity, cert_file: Path | None) -> x509.Certificate:
        """The certificate this node presents: the fleet's (checked to be ours) or a self-signed one."""
        if self.mode is not TrustMode.FLEET_CA:
            return certs.self_signed(identity)
        if cert_file is None:
            raise TrustConfigError("fleet CA mode needs the node certificate (trust.cert_file)")
        try:
            cert, parsed = certs.load_node_certificate(cert_file)
        except certs.CertError as exc:
            raise TrustConfigError(f"node certificate: {exc}") from exc
        if parsed.public_key != identity.public_key:
            raise TrustConfigError(f"{cert_file} is for peer {parsed.key_peer_id}, not this node's key")
        assert self.ca is not None
        if not certs.signed_by(cert, self.ca):
            raise TrustConfigError(f"{cert_file} is not signed by the configured fleet CA")
        # Not fatal: a board without a real-time clock may start before NTP has set the time.
        now = datetime.datetime.now(datetime.UTC)
        if now > cert.not_valid_after_utc:
            log.warning(
                "node certificate %s expired on %s: peers will refuse it", cert_file, cert.not_valid_after_utc
            )
        elif now < cert.not_valid_before_utc:
            log.warning(
                "node certificate %s is valid only from %s (is the clock set?)",
                cert_file,
                cert.not_valid_before_utc,
            )
        return cert

    # -- checks ----------------------------------------------------------------------------

    def check_certificate(self, der: bytes | None, expected: str | None) -> str:
        """The peer id a TLS peer's certificate proves (the chain is OpenSSL's job in CA mode)."""
        if not der:
            raise TrustError(TrustReason.NO_CERTIFICATE, "the peer presented no certificate")
        try:
            parsed = certs.parse_node_certificate(der)
        except certs.CertParseError as exc:
            raise TrustError(TrustReason.BAD_CERTIFICATE, str(exc)) from exc
        if not parsed.san_matches_key:
            raise TrustError(
                TrustReason.SAN_MISMATCH,
                f"certificate names {parsed.san_peer_ids} but its key is {parsed.key_peer_id}",
            )
        return self._admit(parsed.key_peer_id, expected)

    def _admit(self, peer_id: str, expected: str | None) -> str:
        if expected is not None and peer_id != expected:
            raise TrustError(TrustReason.PEER_MISMATCH, f"expected {expected}, proved {peer_id}")
        if self.pinned and peer_id not in self.pinned:
            raise TrustError(TrustReason.NOT_PINNED, f"{peer_id} is not pinned")
        return peer_id

    @staticmethod
    def make_proof(
        identity: Identity, server_cert_der: bytes, server_nonce: bytes, client_nonce: bytes
    ) -> bytes:
        return identity.sign(proof_message(server_cert_der, server_nonce, client_nonce))

    def check_proof(
        self,
        *,
        public_key: bytes,
        signature: bytes,
        own_cert_der: bytes,
        server_nonce: bytes,
        client_nonce: bytes,
        credential: bytes,
    ) -> str:
        """Server side: the client's in-band proof, over the certificate *we* presented, and its
        credential (its fleet certificate with a CA)."""
        if not verify(public_key, signature, proof_message(own_cert_der, server_nonce, client_nonce)):
            raise TrustError(TrustReason.BAD_PROOF, "the identity proof does not verify for this session")
        return self.verify(public_key, credential, None)

    def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
        """For datagram sessions: the peer id ``public_key`` proves under this policy.

        With a fleet CA, ``credential`` is the peer's node certificate (DER): it must be signed by
        the CA, valid now, name its own key's peer id, and carry ``public_key``.
        """
        peer_id = peer_id_of(public_key)
        if self.mode is TrustMode.FLEET_CA:
            assert self.ca is not None
            if not credential:
                raise TrustError(TrustReason.NO_CERTIFICATE, "a fleet certificate is required")
            try:
                parsed = certs.parse_node_certificate(credential)
            except certs.CertParseError as exc:
                raise TrustError(TrustReason.BAD_CERTIFICATE, str(exc)) from exc
            if not certs.signed_by(parsed.certificate, self.ca):
                raise TrustError(TrustReason.UNKNOWN_CA, "the certificate is not from the fleet CA")
            now = datetime.datetime.now(datetime.UTC)
            if now < parsed.certificate.not_valid_before_utc:
                raise TrustError(TrustReason.NOT_YET_VALID, "the certificate is not valid yet")
            if now > parsed.certificate.not_valid_after_utc:
                raise TrustError(TrustReason.EXPIRED, "the certificate has expired")
            if not parsed.san_matches_key:
                raise TrustError(TrustReason.SAN_MISMATCH, "the certificate names another peer than its key")
            if parsed.public_key != public_key:
                raise TrustError(TrustReason.KEY_MISMATCH, "the certificate is for another key")
        return self._admit(peer_id, expected_peer_id)


# TrustReason -> the secure session's VerifyFailure (node.proto.session.trust).
_VERIFY_FAILURE = {
    TrustReason.PEER_MISMATCH: VerifyFailure.WRONG_PEER,
    TrustReason.NOT_PINNED: VerifyFailure.NOT_TRUSTED,
    TrustReason.KEY_MISMATCH: VerifyFailure.CREDENTIAL_MISMATCH,
    TrustReason.SAN_MISMATCH: VerifyFailure.CREDENTIAL_MISMATCH,
}


class SessionVerifier:
    """The node's trust policy as the datagram secure session's ``PeerVerifier``: the same fleet
    CA, pins and development mode decide on UDP, TURN and BLE as on TCP-TLS."""

    def __init__(self, policy: TrustPolicy) -> None:
        self.policy = policy

    def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
        try:
            return self.policy.verify(public_key, credential, expected_peer_id)
        except TrustError as exc:
            failure = _VERIFY_FAILURE.get(exc.reason, VerifyFailure.BAD_CREDENTIAL)
            raise PeerVerificationError(failure, f"{exc.reason.value}: {exc.detail}") from exc

    def credential(self, own_certificate_der: bytes) -> bytes:
        """What this node sends as its credential: its fleet certificate, or nothing."""
        return own_certificate_der if self.policy.mode is TrustMode.FLEET_CA else b""
