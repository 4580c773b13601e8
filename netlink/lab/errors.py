"""The root of every error the ``netlink`` package raises.

Errors carry their cause as enum fields so that callers decide on types and fields, never on
message text.
"""

from __future__ import annotations

import enum


class NetlinkError(Exception):
    """Root of every error raised by the netlink package."""


class Prerequisite(enum.Enum):
    """Something the namespace lab needs from the machine."""

    ROOT = "root"
    NFT = "nft"
    CONNTRACK = "conntrack"
    TURNSERVER = "turnserver"
    IP = "ip"


class LabError(NetlinkError):
    """Root of every error raised by the namespace NAT lab (``netlink.lab``)."""


class LabPrerequisiteError(LabError):
    """The machine lacks something the lab needs (root, a tool)."""

    def __init__(self, missing: tuple[Prerequisite, ...]) -> None:
        self.missing = missing
        names = ", ".join(p.value for p in missing)
        super().__init__(f"the NAT lab needs: {names}")


class LabTopologyError(LabError):
    """A lab description is invalid (local misuse): bad name, count or address."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid lab topology: {field}: {reason}")


class NamespaceOp(enum.Enum):
    """The namespace operation that failed."""

    CREATE = "create"
    ENTER = "enter"
    DELETE = "delete"
    SYSCTL = "sysctl"


class NamespaceError(LabError):
    """A network namespace could not be created, entered or deleted."""

    def __init__(self, op: NamespaceOp, netns: str, errno: int, detail: str = "") -> None:
        self.op = op
        self.netns = netns
        self.errno = errno
        super().__init__(f"netns {op.value} {netns!r} failed (errno {errno}) {detail}".rstrip())


class LabBuildError(LabError):
    """A netlink request while building the lab failed."""

    def __init__(self, netns: str, step: str, cause: BaseException) -> None:
        self.netns = netns
        self.step = step
        self.cause = cause
        super().__init__(f"lab build step {step!r} in {netns!r} failed: {cause}")


class NftFailure(enum.Enum):
    """How ``nft``/``conntrack`` failed."""

    REJECTED = "rejected"  # exited non-zero
    TIMEOUT = "timeout"  # did not finish in time; killed and reaped


class NftError(LabError):
    """``nft -f -`` rejected a router's rule set or timed out (or conntrack flush failed).

    ``returncode`` is None when the tool timed out.
    """

    def __init__(
        self,
        netns: str,
        returncode: int | None,
        stderr: str,
        failure: NftFailure = NftFailure.REJECTED,
    ) -> None:
        self.netns = netns
        self.returncode = returncode
        self.stderr = stderr
        self.failure = failure
        what = f"exited {returncode}" if failure is NftFailure.REJECTED else failure.value
        super().__init__(f"nft in {netns!r} {what}: {stderr.strip()}".rstrip(": "))


class ProcessStopError(LabError):
    """A lab process outlived SIGKILL within the deadline (uninterruptible sleep, D state).

    It is left behind; everything else of the lab is torn down before this is raised.
    """

    def __init__(self, pid: int, command: str) -> None:
        self.pid = pid
        self.command = command
        super().__init__(f"pid {pid} ({command.strip() or '?'}) survived SIGKILL; left running")


class CoturnFailure(enum.Enum):
    """Why coturn is not serving."""

    EXITED = "exited"
    NOT_READY = "not-ready"
    NO_PIDFILE = "no-pidfile"


class CoturnError(LabError):
    """turnserver did not come up in the lab."""

    def __init__(self, failure: CoturnFailure, detail: str) -> None:
        self.failure = failure
        self.detail = detail
        super().__init__(f"coturn {failure.value}: {detail}")


class StateFailure(enum.Enum):
    """What is wrong with a file of the lab (state file, registry entry, lab directory)."""

    MISSING = "missing"
    EXISTS = "exists"
    CORRUPT = "corrupt"
    VERSION = "unsupported-version"  # written by another (older) lab
    PERMISSION = "permission-denied"  # EACCES/EPERM: typically not root
    IO = "io-error"  # any other OSError


class LabStateError(LabError):
    """A file of the lab is missing, already present, unreadable or cannot be written."""

    def __init__(self, failure: StateFailure, path: str, errno: int | None = None, detail: str = "") -> None:
        self.failure = failure
        self.path = path
        self.errno = errno
        why = f" ({detail})" if detail else ""
        super().__init__(f"lab file {path}: {failure.value}{why}")
