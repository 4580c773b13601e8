"""Where the node keeps its state (identity key) and runtime files (control socket).

Resolution follows systemd's conventions first, then XDG, then the FHS defaults, so the same
binary behaves right under a unit with ``StateDirectory=``/``RuntimeDirectory=``, for a user
session, and for root started by hand.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from node.errors import PathError

APP = "bitcraps"
CONTROL_SOCKET_NAME = "control.sock"


class DirProblem(Enum):
    CANNOT_CREATE = "cannot create"
    INACCESSIBLE = "inaccessible"
    NOT_A_DIRECTORY = "not a directory"
    FOREIGN_SYMLINK = "foreign symlink"
    FOREIGN_OWNER = "foreign owner"
    WRITABLE_BY_OTHERS = "writable by others"


class DirectoryError(PathError[DirProblem]):
    """A state or runtime directory cannot be created or is unsafe to use; ``reason`` (also read
    as ``problem``) says why."""

    @property
    def problem(self) -> DirProblem:
        return self.reason


@dataclass(frozen=True, slots=True)
class NodeDirs:
    state: Path
    runtime: Path

    @property
    def control_socket(self) -> Path:
        return self.runtime / CONTROL_SOCKET_NAME


def _first_systemd_dir(value: str) -> Path:
    # systemd joins several configured directories with ':'; the first is ours.
    return Path(value.split(":", 1)[0])


def state_dir(env: Mapping[str, str], uid: int, home: Path) -> Path:
    if env.get("STATE_DIRECTORY"):
        return _first_systemd_dir(env["STATE_DIRECTORY"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / APP
    if uid == 0:
        return Path("/var/lib") / APP
    return home / ".local" / "state" / APP


def runtime_dir(env: Mapping[str, str], uid: int, tmp: Path) -> Path:
    if env.get("RUNTIME_DIRECTORY"):
        return _first_systemd_dir(env["RUNTIME_DIRECTORY"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / APP
    if uid == 0:
        return Path("/run") / APP
    # A per-user name: the directory is created 0700 and its owner checked (ensure_private_dir),
    # so another user cannot pre-create it to intercept the control socket.
    return tmp / f"{APP}-{uid}"


def resolve_dirs(state_override: Path | None = None, runtime_override: Path | None = None) -> NodeDirs:
    """The directories for this process, honouring ``--state-dir``/``--runtime-dir`` overrides."""
    uid = os.getuid()
    return NodeDirs(
        state=state_override or state_dir(os.environ, uid, Path.home()),
        runtime=runtime_override or runtime_dir(os.environ, uid, Path(tempfile.gettempdir())),
    )


def atomic_write(path: Path, data: bytes, mode: int, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` with ``mode`` through a synced temporary file, so a reader never
    sees half a file. ``exclusive``: raise FileExistsError rather than replace an existing file
    (``link`` is atomic, so of two concurrent writers exactly one wins). Raises OSError.

    Never writes through a symlink: the temporary file is created new (O_EXCL, O_NOFOLLOW) after a
    stale one is removed, and rename/link replace or refuse a link at ``path`` itself, never its
    target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)  # a leftover of a crashed writer with our pid, or a planted link
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed the mode os.open gave it
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)
        else:
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if missing, then refuse it unless it is safe (check_private_dir)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DirectoryError(
            path, DirProblem.CANNOT_CREATE, f"cannot create directory ({exc.strerror})"
        ) from exc
    return check_private_dir(path)


def check_private_dir(path: Path) -> Path:
    """Refuse ``path`` unless it is a directory owned by us (or root) that neither group nor others
    can write: whoever can write in it can replace the key files it holds. Only the directory
    itself is checked, not its parents (one under a sticky /tmp is fine).

    A symlink at ``path`` is followed, and its target checked, when the link itself belongs to
    us or root: operators point /var/lib/bitcraps at another disk, and systemd's DynamicUser makes
    StateDirectory= such a link. A link owned by anyone else was planted (the kernel's
    protected_symlinks refuses the same in sticky directories)."""
    euid = os.geteuid()
    try:
        link = path.lstat()
        st = path.stat()
    except OSError as exc:
        raise DirectoryError(
            path, DirProblem.INACCESSIBLE, f"cannot examine directory ({exc.strerror})"
        ) from exc
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (euid, 0):
        raise DirectoryError(
            path,
            DirProblem.FOREIGN_SYMLINK,
            f"is a symlink owned by uid {link.st_uid}, not by us (uid {euid})",
        )
    if not stat.S_ISDIR(st.st_mode):
        raise DirectoryError(path, DirProblem.NOT_A_DIRECTORY, "exists and is not a directory")
    if st.st_uid not in (euid, 0):
        raise DirectoryError(
            path, DirProblem.FOREIGN_OWNER, f"owned by uid {st.st_uid}, not by us (uid {euid}) or root"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise DirectoryError(
            path,
            DirProblem.WRITABLE_BY_OTHERS,
            f"mode {stat.S_IMODE(st.st_mode):04o} lets group or others write in it; chmod go-w it",
        )
    return path
