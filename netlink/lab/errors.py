"""The root of every error the ``netlink`` package raises.

Errors carry their cause as enum fields so that callers decide on types and fields, never on
message text. Those with one cause are node.errors.ReasonError (``reason``, and the field's lab
name as an alias) and LocalError: the machine or the lab's own use of it is at fault. The lab is a
tool above the node's base layer, so it shares that base.
"""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError


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


class NamespaceError(LabError, ReasonError[NamespaceOp], LocalError):
    """A network namespace could not be created, entered or deleted; ``reason`` (``op``) says
    which operation failed."""

    def __init__(self, op: NamespaceOp, netns: str, errno: int, detail: str = "") -> None:
        self.netns = netns
        self.errno = errno
        super().__init__(op, detail)

    @property
    def op(self) -> NamespaceOp:
        return self.reason

    def describe(self) -> str:
        return f"netns {self.op.value} {self.netns!r} failed (errno {self.errno}) {self.detail}".rstrip()


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


class NftError(LabError, ReasonError[NftFailure], LocalError):
    """``nft -f -`` rejected a router's rule set or timed out (or conntrack flush failed).

    ``returncode`` is None when the tool timed out; ``reason`` (``failure``) says which.
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
        super().__init__(failure, stderr.strip())

    @property
    def failure(self) -> NftFailure:
        return self.reason

    def describe(self) -> str:
        what = f"exited {self.returncode}" if self.failure is NftFailure.REJECTED else self.failure.value
        return f"nft in {self.netns!r} {what}: {self.detail}".rstrip(": ")


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


class CoturnError(LabError, ReasonError[CoturnFailure], LocalError):
    """turnserver did not come up in the lab; ``reason`` (``failure``) says how."""

    def __init__(self, failure: CoturnFailure, detail: str) -> None:
        # ``detail`` is required here (optional in the base): every caller says what failed.
        super().__init__(failure, detail)

    @property
    def failure(self) -> CoturnFailure:
        return self.reason

    def describe(self) -> str:
        return f"coturn {super().describe()}"


class StateFailure(enum.Enum):
    """What is wrong with a file of the lab (state file, registry entry, lab directory)."""

    MISSING = "missing"
    EXISTS = "exists"
    CORRUPT = "corrupt"
    VERSION = "unsupported-version"  # written by another (older) lab
    PERMISSION = "permission-denied"  # EACCES/EPERM: typically not root
    IO = "io-error"  # any other OSError


class LabStateError(LabError, ReasonError[StateFailure], LocalError):
    """A file of the lab is missing, already present, unreadable or cannot be written; ``reason``
    (``failure``) says which."""

    def __init__(self, failure: StateFailure, path: str, errno: int | None = None, detail: str = "") -> None:
        self.path = path
        self.errno = errno
        super().__init__(failure, detail)

    @property
    def failure(self) -> StateFailure:
        return self.reason

    def describe(self) -> str:
        why = f" ({self.detail})" if self.detail else ""
        return f"lab file {self.path}: {self.failure.value}{why}"
