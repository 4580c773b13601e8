"""Key files and the directories holding them: never read or changed through a link, never a
FIFO or a file of another user, never in a directory others can write (issue 11)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, rsa

from node import paths
from node.security import certs, keyfile, keystore

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another uid")


def _state(tmp_path: Path) -> tuple[Path, Path]:
    state = paths.ensure_private_dir(tmp_path / "state")
    return state, state / keystore.KEY_FILE_NAME


def _refused(state: Path, problem: keyfile.KeyFileProblem) -> keyfile.KeyFileError:
    with pytest.raises(keyfile.KeyFileError) as caught:
        keystore.load_or_create(state)
    assert caught.value.problem is problem
    assert str(caught.value).startswith(f"{state / keystore.KEY_FILE_NAME}: ")
    return caught.value


def test_symlinked_key_is_refused_and_its_target_keeps_its_mode(tmp_path: Path) -> None:
    state, key = _state(tmp_path)
    target = tmp_path / "someone-elses-file"
    target.write_bytes(b"not yours")
    target.chmod(0o644)
    key.symlink_to(target)
    _refused(state, keyfile.KeyFileProblem.SYMLINK)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_bytes() == b"not yours"
    assert key.is_symlink()


def test_symlink_to_a_real_key_is_refused_too(tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path / "real")
    real_key = tmp_path / "real" / keystore.KEY_FILE_NAME
    real_key.chmod(0o640)
    state, key = _state(tmp_path)
    key.symlink_to(real_key)
    _refused(state, keyfile.KeyFileProblem.SYMLINK)
    assert stat.S_IMODE(real_key.stat().st_mode) == 0o640


def test_symlink_to_dev_null_is_refused(tmp_path: Path) -> None:
    state, key = _state(tmp_path)
    before = os.stat("/dev/null").st_mode
    key.symlink_to("/dev/null")
    _refused(state, keyfile.KeyFileProblem.SYMLINK)
    assert os.stat("/dev/null").st_mode == before  # a chmod through the link would break the host


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    # Without O_NONBLOCK the open waits for a writer forever; the CLI test bounds it with a timeout.
    state, key = _state(tmp_path)
    os.mkfifo(key, 0o600)
    _refused(state, keyfile.KeyFileProblem.NOT_REGULAR)
    assert stat.S_ISFIFO(key.lstat().st_mode)


def test_directory_in_place_of_the_key_is_refused(tmp_path: Path) -> None:
    state, key = _state(tmp_path)
    key.mkdir()
    error = _refused(state, keyfile.KeyFileProblem.NOT_REGULAR)
    assert "directory" in str(error)


@as_root
def test_key_owned_by_another_user_is_refused_and_kept(tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path / "state")
    state, key = _state(tmp_path)
    before = key.read_bytes()
    os.chown(key, NOBODY, NOBODY)
    key.chmod(0o644)
    _refused(state, keyfile.KeyFileProblem.FOREIGN_OWNER)
    assert key.read_bytes() == before
    assert stat.S_IMODE(key.stat().st_mode) == 0o644  # not ours to change either


def test_oversized_key_file_is_refused_unread(tmp_path: Path) -> None:
    state, key = _state(tmp_path)
    key.write_bytes(b"-" * (keyfile.MAX_KEY_FILE_BYTES + 1))
    _refused(state, keyfile.KeyFileProblem.TOO_LARGE)


def test_loose_mode_is_fixed_on_the_descriptor_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, _ = keystore.load_or_create(tmp_path / "state")
    _, key = _state(tmp_path)
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="node.security.keyfile"):
        again, created = keystore.load_or_create(tmp_path / "state")
    assert (again.peer_id, created) == (first.peer_id, False)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [r.getMessage() for r in caplog.records] == [f"key file {key} had mode 0644; setting 0600"]


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ed448_pem() -> bytes:
    return ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: b"garbage", keystore.IdentityProblem.NOT_PEM),
        (_rsa_pem, keystore.IdentityProblem.NOT_ED25519),
        (_ed448_pem, keystore.IdentityProblem.NOT_ED25519),
    ],
)
def test_corrupt_rsa_and_ed448_keys_are_refused_and_never_replaced(
    tmp_path: Path, make: Callable[[], bytes], problem: keystore.IdentityProblem
) -> None:
    state, key = _state(tmp_path)
    data = make()
    key.write_bytes(data)
    key.chmod(0o600)
    with pytest.raises(keystore.IdentityError) as caught:
        keystore.load_or_create(state)
    assert caught.value.problem is problem
    assert key.read_bytes() == data
    assert not (state / keystore.PUBLIC_KEY_FILE_NAME).exists()


# -- the state directory -------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o777])
def test_state_dir_writable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(paths.DirectoryError) as caught:
        keystore.load_or_create(state)
    assert caught.value.problem is paths.DirProblem.WRITABLE_BY_OTHERS
    assert f"mode {mode:04o}" in str(caught.value)
    assert list(state.iterdir()) == []


@as_root
def test_state_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    with pytest.raises(paths.DirectoryError) as caught:
        keystore.load_or_create(state)
    assert caught.value.problem is paths.DirProblem.FOREIGN_OWNER
    assert list(state.iterdir()) == []


def test_state_dir_under_a_sticky_world_writable_dir_is_fine(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    ident, created = keystore.load_or_create(shared / "state")
    assert created
    assert keystore.load_or_create(shared / "state")[0].peer_id == ident.peer_id


def test_state_dir_that_is_our_own_symlink_is_followed_and_its_target_checked(tmp_path: Path) -> None:
    # /var/lib/bitcraps -> /data/bitcraps, or systemd's DynamicUser= StateDirectory.
    (tmp_path / "data").mkdir(mode=0o700)
    link = tmp_path / "state"
    link.symlink_to(tmp_path / "data")
    keystore.load_or_create(link)
    assert (tmp_path / "data" / keystore.KEY_FILE_NAME).is_file()
    (tmp_path / "data").chmod(0o777)
    with pytest.raises(paths.DirectoryError) as caught:
        keystore.load_or_create(link)
    assert caught.value.problem is paths.DirProblem.WRITABLE_BY_OTHERS


@as_root
def test_state_dir_symlink_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    link = tmp_path / "state"
    link.symlink_to(tmp_path / "data")
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(paths.DirectoryError) as caught:
        keystore.load_or_create(link)
    assert caught.value.problem is paths.DirProblem.FOREIGN_SYMLINK
    assert list((tmp_path / "data").iterdir()) == []


# -- files the node writes -----------------------------------------------------------------


def test_planted_links_at_the_public_key_and_temporary_names_are_replaced_not_followed(
    tmp_path: Path,
) -> None:
    state, _ = _state(tmp_path)
    victims = [tmp_path / f"victim{i}" for i in range(3)]
    for victim in victims:
        victim.write_bytes(b"keep me")
        victim.chmod(0o600)
    pid = os.getpid()
    (state / keystore.PUBLIC_KEY_FILE_NAME).symlink_to(victims[0])
    (state / f".{keystore.PUBLIC_KEY_FILE_NAME}.{pid}.tmp").symlink_to(victims[1])
    (state / f".{keystore.KEY_FILE_NAME}.{pid}.tmp").symlink_to(victims[2])
    ident, created = keystore.load_or_create(state)
    assert created
    for victim in victims:
        assert victim.read_bytes() == b"keep me"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    pub = state / keystore.PUBLIC_KEY_FILE_NAME
    assert not pub.is_symlink()
    assert pub.read_bytes() == ident.public_key_pem()
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert sorted(p.name for p in state.iterdir()) == [keystore.KEY_FILE_NAME, keystore.PUBLIC_KEY_FILE_NAME]


def test_a_fifo_at_the_public_key_is_replaced_without_blocking(tmp_path: Path) -> None:
    state, _ = _state(tmp_path)
    pub = state / keystore.PUBLIC_KEY_FILE_NAME
    os.mkfifo(pub, 0o644)
    ident, _ = keystore.load_or_create(state)
    assert pub.read_bytes() == ident.public_key_pem()


def test_a_dangling_symlink_at_the_key_is_refused_not_written_through(tmp_path: Path) -> None:
    state, key = _state(tmp_path)
    key.symlink_to(tmp_path / "would-be-created")
    _refused(state, keyfile.KeyFileProblem.SYMLINK)
    assert not (tmp_path / "would-be-created").exists()


# -- the fleet CA key ----------------------------------------------------------------------


def test_ca_key_behind_a_symlink_is_refused_and_its_target_keeps_its_mode(tmp_path: Path) -> None:
    certs.init_ca_dir(tmp_path / "real")
    real_key = tmp_path / "real" / certs.CA_KEY_FILE
    real_key.chmod(0o644)
    ca = tmp_path / "ca"
    ca.mkdir(mode=0o700)
    (ca / certs.CA_CERT_FILE).write_bytes((tmp_path / "real" / certs.CA_CERT_FILE).read_bytes())
    (ca / certs.CA_KEY_FILE).symlink_to(real_key)
    with pytest.raises(keyfile.KeyFileError) as caught:
        certs.load_ca_dir(ca)
    assert caught.value.problem is keyfile.KeyFileProblem.SYMLINK
    assert stat.S_IMODE(real_key.stat().st_mode) == 0o644
    certs.load_ca_dir(tmp_path / "real")  # the real one loads, and is tightened
    assert stat.S_IMODE(real_key.stat().st_mode) == 0o600


def test_ca_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    certs.init_ca_dir(tmp_path / "ca")
    (tmp_path / "ca").chmod(0o775)
    with pytest.raises(paths.DirectoryError) as caught:
        certs.load_ca_dir(tmp_path / "ca")
    assert caught.value.problem is paths.DirProblem.WRITABLE_BY_OTHERS


def test_ca_init_over_a_dangling_symlink_refuses_before_writing_anything(tmp_path: Path) -> None:
    ca = paths.ensure_private_dir(tmp_path / "ca")
    (ca / certs.CA_CERT_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(certs.CertError) as caught:
        certs.init_ca_dir(ca)
    assert caught.value.problem is certs.CertProblem.EXISTS
    assert not (tmp_path / "elsewhere").exists()
    assert sorted(os.listdir(ca)) == [certs.CA_CERT_FILE]  # no half-made CA (a ca.key alone)
