"""Test-only trust policies for the secure session: pinned peer ids and a development mode.

The real policies (fleet CA, pinned, dev) live in node.security.trust; these two are the smallest honest
implementations of node.proto.session_trust.PeerVerifier, used to drive the core in tests.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.proto.identity import peer_id_of
from node.proto.session.trust import PeerVerificationError, VerifyFailure


def _check_expected(peer_id: str, expected_peer_id: str | None) -> str:
    if expected_peer_id is not None and peer_id != expected_peer_id:
        raise PeerVerificationError(VerifyFailure.WRONG_PEER, f"proved {peer_id}, dialled {expected_peer_id}")
    return peer_id


class PinnedVerifier:
    """Accepts only keys whose peer id is in a fixed set."""

    def __init__(self, peer_ids: Iterable[str]) -> None:
        self.peer_ids = frozenset(peer_ids)
        self.calls: list[tuple[bytes, bytes, str | None]] = []

    def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
        self.calls.append((public_key, credential, expected_peer_id))
        peer_id = peer_id_of(public_key)
        if peer_id not in self.peer_ids:
            raise PeerVerificationError(VerifyFailure.NOT_TRUSTED, peer_id)
        return _check_expected(peer_id, expected_peer_id)


class DevVerifier:
    """Development mode: any key is a peer, but the id is still bound to the key it proved."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, str | None]] = []

    def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
        self.calls.append((public_key, credential, expected_peer_id))
        return _check_expected(peer_id_of(public_key), expected_peer_id)
