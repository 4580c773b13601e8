"""Private key files (the node's ``identity.key``, a fleet CA's ``ca.key``): read only a regular
file that belongs to us, never through a symlink, and never left readable by others.

Everything is decided on the open descriptor (fstat, fchmod), so what is checked is what is read:
a path checked and then opened again could have been swapped in between. O_NOFOLLOW refuses a
link (a link to a file would have had its target's mode changed), O_NONBLOCK keeps a FIFO from
blocking the open forever.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from enum import Enum
from pathlib import Path

from node.errors import PathError

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600
# An Ed25519 PKCS#8 PEM is 119 bytes; anything near this cap is not a key, and is not read whole.
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFileProblem(Enum):
    SYMLINK = "symlink"
    NOT_REGULAR = "not a regular file"
    FOREIGN_OWNER = "foreign owner"
    TOO_LARGE = "too large"
    UNREADABLE = "unreadable"


class KeyFileError(PathError[KeyFileProblem]):
    """A private key file is unsafe or cannot be read; ``reason`` (also read as ``problem``) says
    why. Never replaced: moving it away is the operator's decision (a new identity key is a new
    peer)."""

    @property
    def problem(self) -> KeyFileProblem:
        return self.reason


def read_private(path: Path) -> bytes:
    """The bytes of the private key file at ``path``, its mode narrowed to 0600 first if it was
    wider. Raises FileNotFoundError when there is none (the caller may create one), KeyFileError
    for anything unsafe or unreadable."""
    return read_own(path, private=True)


def read_own(path: Path, *, private: bool) -> bytes:
    """The bytes of a regular file of ours at ``path``, never through a symlink; ``private``:
    narrow its mode to 0600 first if it was wider. Raises as read_private."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _open_error(path, exc) from exc
    try:
        st = os.fstat(fd)
        _check(path, st)
        if private and stat.S_IMODE(st.st_mode) & ~PRIVATE_MODE:
            log.warning("key file %s had mode %04o; setting 0600", path, stat.S_IMODE(st.st_mode))
            os.fchmod(fd, PRIVATE_MODE)
        return _read_capped(path, fd)
    except OSError as exc:
        raise KeyFileError(path, KeyFileProblem.UNREADABLE, f"cannot read key file ({exc.strerror})") from exc
    finally:
        os.close(fd)


def _open_error(path: Path, exc: OSError) -> KeyFileError:
    if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a symlink (open(2))
        return KeyFileError(
            path, KeyFileProblem.SYMLINK, "is a symlink; a key file must be a regular file, not a link to one"
        )
    if exc.errno == errno.ENXIO:  # a unix socket cannot be opened (open(2))
        return KeyFileError(path, KeyFileProblem.NOT_REGULAR, "is a socket, not a regular key file")
    return KeyFileError(path, KeyFileProblem.UNREADABLE, f"cannot open key file ({exc.strerror})")


def _check(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
        )
        raise KeyFileError(path, KeyFileProblem.NOT_REGULAR, f"is {kind}, not a regular key file")
    euid = os.geteuid()
    if st.st_uid != euid:
        raise KeyFileError(
            path,
            KeyFileProblem.FOREIGN_OWNER,
            f"owned by uid {st.st_uid}, not by this node's user (uid {euid}); a key must be its own",
        )


def _read_capped(path: Path, fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, MAX_KEY_FILE_BYTES + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(
                path, KeyFileProblem.TOO_LARGE, f"larger than {MAX_KEY_FILE_BYTES} bytes; not a key file"
            )
    return b"".join(chunks)
