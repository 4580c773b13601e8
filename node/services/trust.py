"""The node's trust policy for every transport, from the effective ``[trust]`` section
(``Config.trust``, which already holds any deprecated ``[tcp_tls]`` trust keys): TCP-TLS, UDP and
TURN decide whom to admit by the same fleet CA, pins and development mode.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from node.config import Config
from node.proto.identity import Identity
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy, TrustSettings

log = logging.getLogger(__name__)


def trust_settings(config: Config) -> TrustSettings:
    section = config.trust
    return TrustSettings(
        ca_file=Path(section.ca_file) if section.ca_file else None,
        cert_file=Path(section.cert_file) if section.cert_file else None,
        pinned_peer_ids=frozenset(section.pinned_peer_ids),
        allow_development=section.allow_development,
    )


def trust_policy(config: Config) -> TrustPolicy:
    """The policy any transport admits peers by. Raises TrustConfigError for unusable settings
    (an unreadable CA, or no CA, no pins and the development mode refused)."""
    return TrustPolicy.from_settings(trust_settings(config))


def warn_if_development(policy: TrustPolicy, transport: str) -> None:
    """One warning when ``transport`` (as logs name it: TCP-TLS, UDP, TURN) starts under the
    development mode: it proves each peer's key but admits any peer id, so an operator must see
    that no peer is verified, on every transport that admits peers, not only on TCP-TLS."""
    if policy.mode is TrustMode.DEVELOPMENT:
        log.warning(
            "%s trust: development mode, INSECURE: any peer id is accepted (bound to its key)", transport
        )


def session_verifier(config: Config) -> SessionVerifier:
    """The same policy as the datagram secure session's ``PeerVerifier`` (UDP, TURN)."""
    return SessionVerifier(trust_policy(config))


def session_trust(config: Config, identity: Identity) -> tuple[SessionVerifier, bytes]:
    """The datagram session's verifier and this node's credential in it (its fleet certificate in
    fleet-CA mode, else nothing: the peer id is the key). Raises TrustConfigError as trust_policy."""
    trust = trust_settings(config)
    policy = TrustPolicy.from_settings(trust)
    verifier = SessionVerifier(policy)
    credential = b""
    if policy.mode is TrustMode.FLEET_CA:
        own = policy.own_certificate(identity, trust.cert_file)
        credential = verifier.credential(own.public_bytes(serialization.Encoding.DER))
    return verifier, credential
