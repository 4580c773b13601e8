"""The node's key store: its Ed25519 identity key in the state directory (created on first start,
never silently replaced), and the public half beside it for a CA holder to sign.

The identity itself (key pair, peer id) is node.proto.identity; this module owns the files.
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.errors import PathError
from node.paths import atomic_write, ensure_private_dir
from node.proto.identity import Identity
from node.security.keyfile import KeyFileError, read_own, read_private

log = logging.getLogger(__name__)

KEY_FILE_NAME = "identity.key"
PUBLIC_KEY_FILE_NAME = "identity.pub"  # the public half as PEM, for `identity issue --pubkey`


class IdentityProblem(Enum):
    UNWRITABLE = "unwritable"
    NOT_PEM = "not pem"
    NOT_ED25519 = "not ed25519"


class IdentityError(PathError[IdentityProblem]):
    """The identity key cannot be written or used; ``reason`` (also read as ``problem``) says why.
    Never silently replaced: a new key is a new peer. (An unsafe or unreadable key file is a
    keyfile.KeyFileError.)"""

    @property
    def problem(self) -> IdentityProblem:
        return self.reason


def write_public_key(state_dir: Path, identity: Identity) -> Path:
    """Write ``identity.pub`` (0644) next to the key unless it already holds this key.

    Read like a key file (no symlink, no FIFO, ours) but, being public and derived from the key,
    anything else found there is replaced rather than refused: atomic_write swaps the name itself,
    never writing through a link."""
    path = state_dir / PUBLIC_KEY_FILE_NAME
    pem = identity.public_key_pem()
    try:
        if read_own(path, private=False) == pem:
            return path
    except FileNotFoundError:
        pass
    except KeyFileError as exc:
        log.warning("replacing %s: %s", path, exc)
    try:
        atomic_write(path, pem, 0o644)
    except OSError as exc:
        raise IdentityError(
            path, IdentityProblem.UNWRITABLE, f"cannot write public key ({exc.strerror})"
        ) from exc
    return path


def load_or_create(state_dir: Path) -> tuple[Identity, bool]:
    """Load the identity from ``state_dir``, creating it on first start. Returns (identity, created).

    ``identity.pub`` is (re)written beside the key so a CA holder can sign a certificate for it.
    Raises paths.DirectoryError (an unsafe state directory), keyfile.KeyFileError (an unsafe or
    unreadable key file) or IdentityError; none of them ever replaces an existing key.
    """
    ident, created = _load_or_create(state_dir)
    write_public_key(state_dir, ident)
    return ident, created


def _load_or_create(state_dir: Path) -> tuple[Identity, bool]:
    ensure_private_dir(state_dir)
    path = state_dir / KEY_FILE_NAME
    try:
        return _load(path), False
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        # exclusive: if another process created the key meanwhile, theirs wins.
        atomic_write(path, pem, 0o600, exclusive=True)
    except FileExistsError:
        return _load(path), False
    except OSError as exc:
        raise IdentityError(
            path, IdentityProblem.UNWRITABLE, f"cannot write identity key ({exc.strerror})"
        ) from exc
    return Identity.from_private_key(key), True


def _load(path: Path) -> Identity:
    data = read_private(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise IdentityError(
            path,
            IdentityProblem.NOT_PEM,
            "not a readable PEM private key; move it away to create a new identity",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(
            path, IdentityProblem.NOT_ED25519, "not an Ed25519 key; move it away to create a new identity"
        )
    return Identity.from_private_key(key)
