"""The two halves of one secure-session handshake: ``Initiation`` (ours) and ``Response`` (theirs).

Three messages, SIGMA-I in Noise's clothes (see node.proto.session.keys for the schedule):

    INIT      ->  e_i                                   (fixed size, padded)
    RESPONSE  <-  e_r, seal_hs_r(id_r, cred_r, sig_r)   responder proves its key over h2
    CONFIRM   ->  seal_hs_i(id_i, cred_i, sig_i)        initiator proves its key over h3

Both ephemerals are fresh X25519 keys (forward secrecy); the identity keys only sign. Identities
travel sealed, so a passive observer sees neither peer id (SIGMA-I's identity protection; the
initiator's survives an active attacker too, as it is sent only to a proven responder).

Errors split three ways, so the session can tell noise from a peer that failed:
- ``SessionDecodeError``: nothing authenticated yet (wrong index, bad ephemeral, a tag that does
  not verify): a counted drop; the genuine message may still come.
- ``HandshakeError`` / ``PeerVerificationError``: the sealed proof opened, so the message came
  from whoever holds the other ephemeral, and its identity proof is bad or refused: fatal for
  this handshake.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.proto.identity import Identity, peer_id_of, verify
from node.proto.session.errors import DropReason, HandshakeError, HandshakeFailure, SessionDecodeError
from node.proto.session.keypair import Keypair
from node.proto.session.keys import (
    INITIAL_HASH,
    SIGN_INITIATOR,
    SIGN_RESPONDER,
    extract,
    handshake_keys,
    mix_hash,
    nonce,
    signed_content,
    transport_keys,
)
from node.proto.session.messages import (
    ConfirmMessage,
    InitMessage,
    Proof,
    ResponseMessage,
    decode_proof,
    encode_confirm,
    encode_init,
    encode_proof,
    encode_response_header,
)
from node.proto.session.trust import PeerVerificationError, PeerVerifier, VerifyFailure

__all__ = ["HandshakeResult", "Initiation", "Response", "verify_peer"]

_NONCE0 = nonce(0)  # each handshake key seals exactly one message


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    keypair: Keypair
    peer_id: str
    peer_public_key: bytes


def verify_peer(
    verifier: PeerVerifier, public_key: bytes, credential: bytes, expected_peer_id: str | None
) -> str:
    """Ask the trust policy, and hold it to the contract: the id is the key's, and the dialled one."""
    try:
        peer_id = verifier.verify(public_key, credential, expected_peer_id)
    except PeerVerificationError:
        raise
    except Exception as exc:  # a policy bug or a credential it could not parse: refuse, never crash
        raise PeerVerificationError(VerifyFailure.NOT_TRUSTED, f"verifier raised {exc!r}") from exc
    proven = peer_id_of(public_key)
    if peer_id != proven:
        raise PeerVerificationError(VerifyFailure.CREDENTIAL_MISMATCH, f"policy named {peer_id}")
    if expected_peer_id is not None and proven != expected_peer_id:
        raise PeerVerificationError(VerifyFailure.WRONG_PEER, f"proved {proven}, dialled {expected_peer_id}")
    return proven


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _shared_secret(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:  # a low-order point gives the all-zero secret; cryptography refuses it
        raise SessionDecodeError(DropReason.BAD_EPHEMERAL) from None


def _open_proof(key: bytes, sealed: bytes, aad: bytes, label: bytes) -> Proof:
    try:
        plaintext = ChaCha20Poly1305(key).decrypt(_NONCE0, sealed, aad)
    except InvalidTag:
        raise SessionDecodeError(DropReason.DECRYPT_FAILED, "identity proof") from None
    # Authentic from here on: whatever is wrong now is the peer's doing, not line noise.
    try:
        proof = decode_proof(plaintext)
    except SessionDecodeError as exc:
        raise HandshakeError(HandshakeFailure.MALFORMED_PROOF, str(exc)) from None
    if not verify(
        proof.public_key, proof.signature, signed_content(label, aad, proof.public_key, proof.credential)
    ):
        raise HandshakeError(HandshakeFailure.BAD_SIGNATURE)
    return proof


def _seal_proof(identity: Identity, credential: bytes, key: bytes, aad: bytes, label: bytes) -> bytes:
    signature = identity.sign(signed_content(label, aad, identity.public_key, credential))
    return ChaCha20Poly1305(key).encrypt(
        _NONCE0, encode_proof(identity.public_key, credential, signature), aad
    )


def _keypair(
    prk: bytes, h4: bytes, indices: tuple[int, int], *, initiator: bool, now: float, replay_blocks: int
) -> Keypair:
    """The transport keys at the end of the transcript; ``indices`` is (ours, theirs)."""
    i_to_r, r_to_i = transport_keys(prk, h4)
    return Keypair(
        local_index=indices[0],
        remote_index=indices[1],
        send_key=i_to_r if initiator else r_to_i,
        receive_key=r_to_i if initiator else i_to_r,
        initiator=initiator,
        created_at=now,
        replay_blocks=replay_blocks,
    )


class Initiation:
    """A handshake we started: holds our INIT until the RESPONSE comes."""

    __slots__ = ("_credential", "_ephemeral", "_h", "_identity", "ephemeral_public", "init", "local_index")

    def __init__(
        self, identity: Identity, credential: bytes, local_index: int, ephemeral: X25519PrivateKey
    ) -> None:
        self._identity = identity
        self._credential = credential
        self._ephemeral = ephemeral
        self.local_index = local_index
        self.ephemeral_public = _public_bytes(ephemeral)
        self.init = encode_init(local_index, self.ephemeral_public)
        self._h = mix_hash(INITIAL_HASH, self.init)

    def complete(
        self,
        msg: ResponseMessage,
        verifier: PeerVerifier,
        expected_peer_id: str | None,
        now: float,
        replay_blocks: int,
    ) -> tuple[HandshakeResult, bytes]:
        """Check the RESPONSE; return the new keys and the CONFIRM to send."""
        h2 = mix_hash(self._h, msg.header)
        prk = extract(h2, _shared_secret(self._ephemeral, msg.ephemeral))
        key_r, key_i = handshake_keys(prk, h2)
        proof = _open_proof(key_r, msg.sealed_proof, h2, SIGN_RESPONDER)
        peer_id = verify_peer(verifier, proof.public_key, proof.credential, expected_peer_id)
        h3 = mix_hash(h2, msg.sealed_proof)
        header = encode_confirm(msg.sender_index)
        confirm = header + _seal_proof(
            self._identity, self._credential, key_i, mix_hash(h3, header), SIGN_INITIATOR
        )
        indices = (self.local_index, msg.sender_index)
        h4 = mix_hash(h3, confirm)
        keypair = _keypair(prk, h4, indices, initiator=True, now=now, replay_blocks=replay_blocks)
        return HandshakeResult(keypair, peer_id, proof.public_key), confirm


class Response:
    """A handshake the peer started: our RESPONSE is sent, the CONFIRM is awaited."""

    __slots__ = (
        "_h3",
        "_key_i",
        "_prk",
        "deadline",
        "early",
        "init",
        "local_index",
        "remote_index",
        "response",
    )

    def __init__(
        self,
        identity: Identity,
        credential: bytes,
        *,
        local_index: int,
        ephemeral: X25519PrivateKey,
        msg: InitMessage,
        deadline: float,
    ) -> None:
        shared = _shared_secret(ephemeral, msg.ephemeral)
        self.local_index = local_index
        self.remote_index = msg.sender_index
        self.init = msg.transcript
        self.deadline = deadline
        self.early: list[bytes] = []  # transport datagrams that overtook the CONFIRM
        header = encode_response_header(local_index, msg.sender_index, _public_bytes(ephemeral))
        h2 = mix_hash(mix_hash(INITIAL_HASH, msg.transcript), header)
        self._prk = extract(h2, shared)
        key_r, self._key_i = handshake_keys(self._prk, h2)
        sealed = _seal_proof(identity, credential, key_r, h2, SIGN_RESPONDER)
        self.response = header + sealed
        self._h3 = mix_hash(h2, sealed)

    def complete(
        self,
        msg: ConfirmMessage,
        verifier: PeerVerifier,
        expected_peer_id: str | None,
        now: float,
        replay_blocks: int,
    ) -> HandshakeResult:
        aad = mix_hash(self._h3, msg.header)
        proof = _open_proof(self._key_i, msg.sealed_proof, aad, SIGN_INITIATOR)
        peer_id = verify_peer(verifier, proof.public_key, proof.credential, expected_peer_id)
        h4 = mix_hash(self._h3, msg.raw)
        keypair = _keypair(
            self._prk,
            h4,
            (self.local_index, self.remote_index),
            initiator=False,
            now=now,
            replay_blocks=replay_blocks,
        )
        return HandshakeResult(keypair, peer_id, proof.public_key)
