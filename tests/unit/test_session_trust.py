"""The test verifiers honour the PeerVerifier contract (they drive the secure-session tests)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.proto.identity import Identity
from node.proto.session.trust import PeerVerificationError, PeerVerifier, VerifyFailure
from tests.support.session_verifiers import DevVerifier, PinnedVerifier


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def test_pinned_accepts_pinned_and_refuses_others() -> None:
    alice, bob = _identity(), _identity()
    verifier: PeerVerifier = PinnedVerifier([alice.peer_id])
    assert verifier.verify(alice.public_key, b"", None) == alice.peer_id
    assert verifier.verify(alice.public_key, b"", alice.peer_id) == alice.peer_id
    with pytest.raises(PeerVerificationError) as info:
        verifier.verify(bob.public_key, b"", None)
    assert info.value.reason is VerifyFailure.NOT_TRUSTED


@pytest.mark.parametrize("mode", ["dev", "pinned"])
def test_a_valid_key_for_another_peer_id_is_refused(mode: str) -> None:
    alice, bob = _identity(), _identity()
    verifier: PeerVerifier = DevVerifier() if mode == "dev" else PinnedVerifier([alice.peer_id, bob.peer_id])
    with pytest.raises(PeerVerificationError) as info:
        verifier.verify(bob.public_key, b"", alice.peer_id)
    assert info.value.reason is VerifyFailure.WRONG_PEER


def test_dev_mode_binds_the_id_to_the_key() -> None:
    alice = _identity()
    assert DevVerifier().verify(alice.public_key, b"", None) == alice.peer_id
