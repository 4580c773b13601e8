"""What a running lab owns, as JSON: enough to tear it down from another process.

Two uses: the CLI's state file (``lab up`` writes it, ``lab status``/``lab down`` read it), and
a registry of live labs (one file per lab under the runtime directory) from which labs whose
owning process died without cleaning up are reaped.

Both live in ``/run/bitcraps-lab``, the lab's own directory: not the node's runtime directory
(systemd's ``RuntimeDirectory=bitcraps`` deletes ``/run/bitcraps`` whenever the node stops, which
would orphan a running lab), and not ``$RUNTIME_DIRECTORY`` (inside the node's unit that is the
node's directory again).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from netlink.lab.errors import LabStateError, StateFailure
from netlink.lab.summary import LabSummary

STATE_NAME = "lab.json"
REGISTRY_NAME = "labs"
FORMAT_VERSION = 1  # of the state file and registry entries


LAB_RUNTIME_DIR = Path("/run/bitcraps-lab")


def runtime_dir() -> Path:
    """The lab's runtime directory (root only); ``lab --state-file`` moves the state file."""
    return LAB_RUNTIME_DIR


def default_state_file() -> Path:
    return runtime_dir() / STATE_NAME


def registry_dir() -> Path:
    return runtime_dir() / REGISTRY_NAME


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A process the lab started; ``marker`` must be in its command line (guards pid reuse)."""

    pid: int
    name: str
    marker: str


@dataclass(frozen=True, slots=True)
class LabRecord:
    """Everything a lab owns. ``owner_pid`` is None for a detached (CLI) lab."""

    prefix: str
    namespaces: tuple[str, ...]
    processes: tuple[ProcessRecord, ...]
    workdir: str
    owner_pid: int | None
    summary: LabSummary

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "prefix": self.prefix,
                "namespaces": list(self.namespaces),
                "processes": [{"pid": p.pid, "name": p.name, "marker": p.marker} for p in self.processes],
                "workdir": self.workdir,
                "owner_pid": self.owner_pid,
                "summary": self.summary.to_json(),
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, path: str = "<string>") -> LabRecord:
        """Read a record. Raises LabStateError: CORRUPT, or VERSION for another format."""
        try:
            raw = json.loads(text)
            version = raw.get("version") if isinstance(raw, dict) else None
        except ValueError as exc:
            raise LabStateError(StateFailure.CORRUPT, path, detail=str(exc)) from exc
        if version != FORMAT_VERSION:
            detail = f"format version {version!r}, this lab reads {FORMAT_VERSION}"
            raise LabStateError(StateFailure.VERSION, path, detail=detail)
        try:
            return cls(
                prefix=str(raw["prefix"]),
                namespaces=tuple(str(n) for n in raw["namespaces"]),
                processes=tuple(
                    ProcessRecord(int(p["pid"]), str(p["name"]), str(p["marker"])) for p in raw["processes"]
                ),
                workdir=str(raw["workdir"]),
                owner_pid=None if raw["owner_pid"] is None else int(raw["owner_pid"]),
                summary=LabSummary.from_json(raw["summary"]),
            )
        except (ValueError, KeyError, TypeError) as exc:  # SummaryFormatError is a ValueError
            raise LabStateError(StateFailure.CORRUPT, path, detail=str(exc)) from exc


_PERMISSION = frozenset({errno.EACCES, errno.EPERM})


def os_error(exc: OSError, path: Path | str, *, reading: bool = False) -> LabStateError:
    """The typed error for an OSError on a lab file (``reading``: a missing file is MISSING)."""
    if reading and isinstance(exc, FileNotFoundError):
        failure = StateFailure.MISSING
    elif exc.errno in _PERMISSION:
        failure = StateFailure.PERMISSION
    else:
        failure = StateFailure.IO
    return LabStateError(failure, str(path), exc.errno, exc.strerror or str(exc))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (mode 0600) in one rename. Raises LabStateError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise os_error(exc, path) from exc
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise os_error(exc, path) from exc
        raise


def save(path: Path, record: LabRecord, *, exclusive: bool = False) -> None:
    """Write ``record`` to ``path``. Raises LabStateError."""
    if exclusive and path.exists():
        raise LabStateError(StateFailure.EXISTS, str(path))
    write_atomic(path, record.to_json())


def load(path: Path) -> LabRecord:
    """The record in ``path``. Raises LabStateError (MISSING when there is no file)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise os_error(exc, path, reading=True) from exc
    return LabRecord.from_json(text, str(path))


def registry_path(prefix: str) -> Path:
    return registry_dir() / f"{prefix.rstrip('-')}.json"


def register(record: LabRecord) -> Path:
    """Enter a live lab in the registry; returns its file. Raises LabStateError."""
    path = registry_path(record.prefix)
    write_atomic(path, record.to_json())
    return path


def unregister(prefix: str) -> None:
    path = registry_path(prefix)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise os_error(exc, path) from exc


def registered() -> list[LabRecord]:
    """Every lab in the registry (unreadable entries are skipped)."""
    out: list[LabRecord] = []
    try:
        paths = sorted(registry_dir().glob("*.json"))
    except OSError:
        return out
    for path in paths:
        try:
            out.append(load(path))
        except LabStateError:
            continue
    return out
