"""The root of every error the ``node`` package raises, and the one shape of a typed error.

Split as h11 and bleak do: a ``LocalError`` is our own misuse or environment (bad config, a
missing directory, a state machine driven wrongly); a ``RemoteError`` means a peer or server sent
something bad. Policies (retries, circuit breakers) decide on these types and on a
``ReasonError``'s ``reason`` (an enum member), never on message text.

This is the bottom layer: it imports nothing of the node, nor sockets or asyncio.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Generic, TypeVar

R = TypeVar("R", bound=Enum)


class NodeError(Exception):
    """Root of every error raised by the node package."""


class LocalError(NodeError):
    """Our misuse, configuration or environment is at fault."""


class RemoteError(NodeError):
    """A peer or server sent something malformed or unexpected."""


class SettingsError(LocalError):
    """The node's settings cannot be used: the configuration file, or a file it names (a CA, a
    certificate). Restarting cannot fix that, so ``run`` exits 2 for it and the systemd unit does
    not restart on exit 2 (``RestartPreventExitStatus=2``): a bad deployment does not loop."""


class ReasonError(NodeError, Generic[R]):
    """An error whose cause is one member of an enum (``reason``) plus what failed (``detail``).

    A subclass names its enum and mixes in the side at fault, e.g.
    ``class FrameError(ReasonError[FrameErrorReason], RemoteError)``. The message is built once,
    at construction, by ``describe()``: ``"<reason value>: <detail>"``, or the reason's value
    alone when there is no detail (never an empty detail after a colon). A subclass whose users
    already read another wording overrides ``describe()``; it sets its own extra fields before
    calling ``super().__init__`` so that ``describe()`` can use them.
    """

    reason: R
    detail: str

    def __init__(self, reason: R, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(self.describe())

    def describe(self) -> str:
        """The message text (``str(error)``); decisions never read it."""
        value = str(self.reason.value)
        return f"{value}: {self.detail}" if self.detail else value


class PathError(ReasonError[R], LocalError):
    """A local file or directory at ``path`` cannot be made, read or used; ``reason`` says why.

    The message leads with the path, which is what an operator has to look at:
    ``"<path>: <detail>"``.
    """

    def __init__(self, path: Path, reason: R, detail: str) -> None:
        self.path = path
        super().__init__(reason, detail)

    def describe(self) -> str:
        return f"{self.path}: {self.detail}"
