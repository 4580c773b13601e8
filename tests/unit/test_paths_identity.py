import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from node import paths
from node.proto import identity
from node.security import keystore


def test_state_dir_precedence() -> None:
    home = Path("/home/u")
    assert paths.state_dir({"STATE_DIRECTORY": "/a:/b"}, 1000, home) == Path("/a")
    assert paths.state_dir({"XDG_STATE_HOME": "/x"}, 1000, home) == Path("/x/bitcraps")
    assert paths.state_dir({}, 0, home) == Path("/var/lib/bitcraps")
    assert paths.state_dir({}, 1000, home) == Path("/home/u/.local/state/bitcraps")


def test_runtime_dir_precedence() -> None:
    tmp = Path("/tmp")
    assert paths.runtime_dir({"RUNTIME_DIRECTORY": "/r"}, 1000, tmp) == Path("/r")
    assert paths.runtime_dir({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, tmp) == Path(
        "/run/user/1000/bitcraps"
    )
    assert paths.runtime_dir({}, 0, tmp) == Path("/run/bitcraps")
    assert paths.runtime_dir({}, 1000, tmp) == Path("/tmp/bitcraps-1000")


def test_private_dir_is_0700_and_refuses_a_file(tmp_path: Path) -> None:
    d = paths.ensure_private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    (tmp_path / "f").write_text("x")
    with pytest.raises(paths.DirectoryError):
        paths.ensure_private_dir(tmp_path / "f")


def test_identity_created_once_then_loaded(tmp_path: Path) -> None:
    first, created = keystore.load_or_create(tmp_path)
    assert created
    key_file = tmp_path / keystore.KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second, created_again = keystore.load_or_create(tmp_path)
    assert not created_again
    assert second.peer_id == first.peer_id
    assert second.public_key == first.public_key


def test_peer_id_is_full_sha256_in_lowercase_base32(tmp_path: Path) -> None:
    ident, _ = keystore.load_or_create(tmp_path)
    assert len(ident.peer_id) == 52  # 256 bits, no padding
    assert ident.peer_id == ident.peer_id.lower()
    decoded = base64.b32decode(ident.peer_id.upper() + "====")
    assert decoded == hashlib.sha256(ident.public_key).digest()


def test_signatures_verify_only_with_the_right_key(tmp_path: Path) -> None:
    a, _ = keystore.load_or_create(tmp_path / "a")
    b, _ = keystore.load_or_create(tmp_path / "b")
    sig = a.sign(b"hello")
    assert identity.verify(a.public_key, sig, b"hello")
    assert not identity.verify(b.public_key, sig, b"hello")
    assert not identity.verify(a.public_key, sig, b"hellO")
    assert not identity.verify(b"short", sig, b"hello")


def test_corrupt_key_is_an_error_and_is_never_replaced(tmp_path: Path) -> None:
    key_file = tmp_path / keystore.KEY_FILE_NAME
    key_file.write_bytes(b"garbage")
    os.chmod(key_file, 0o600)
    with pytest.raises(keystore.IdentityError):
        keystore.load_or_create(tmp_path)
    assert key_file.read_bytes() == b"garbage"


def test_loose_key_mode_is_tightened(tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path)
    key_file = tmp_path / keystore.KEY_FILE_NAME
    os.chmod(key_file, 0o644)
    keystore.load_or_create(tmp_path)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
