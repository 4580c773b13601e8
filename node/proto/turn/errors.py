"""Typed errors of the TURN client (RFC 8656). A policy (server failover, the CLI's exit code)
decides on ``TurnError.reason`` and the subclass, never on message text."""

from __future__ import annotations

import enum

from node.errors import LocalError, ReasonError, RemoteError
from node.proto.stun.attrs import IPAddress


class TurnFailure(enum.Enum):
    AUTH = "authentication failed"  # 401 after credentials were sent (RFC 8489 §9.2.5)
    UNREACHABLE = "server unreachable"  # a transaction timed out, or the connection failed
    REFUSED = "refused by the server"  # 437, 486, 508, 403, 442 ... (RFC 8656 §7.2, §19)
    TRY_ALTERNATE = "try an alternate server"  # 300 with ALTERNATE-SERVER (RFC 8489 §10)
    PROTOCOL = "protocol violation by the server"  # a response missing what the RFC requires
    CLOSED = "closed"  # the connection to the server ended


class TurnError(ReasonError[TurnFailure], RemoteError):
    """The TURN server (or the path to it) failed us. Each subclass stands for one ``reason``
    (a class attribute, so ``except TurnAuthError`` and ``exc.reason`` agree). ``code`` is the
    STUN ERROR-CODE when the server sent one; ``alternate`` the ALTERNATE-SERVER of a 300."""

    reason = TurnFailure.PROTOCOL

    def __init__(
        self,
        detail: str,
        *,
        code: int | None = None,
        alternate: tuple[IPAddress, int] | None = None,
    ) -> None:
        self.code = code
        self.alternate = alternate
        super().__init__(type(self).reason, detail)


class TurnAuthError(TurnError):
    reason = TurnFailure.AUTH


class TurnUnreachableError(TurnError):
    reason = TurnFailure.UNREACHABLE


class TurnRefusedError(TurnError):
    reason = TurnFailure.REFUSED


class TurnTryAlternate(TurnError):
    reason = TurnFailure.TRY_ALTERNATE


class TurnProtocolError(TurnError):
    reason = TurnFailure.PROTOCOL


class TurnClosedError(TurnError):
    reason = TurnFailure.CLOSED


class TurnUsageError(LocalError):
    """The client was driven wrongly (send before the allocation exists, allocate twice)."""
