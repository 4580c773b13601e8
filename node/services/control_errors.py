"""The control socket's typed error replies (``{"error": {"code", "message"}}``, plus ``reason``
when a command failed for a reason of its own), apart from the server so that argument parsing
(control_args) and the client share them."""

from __future__ import annotations

from enum import StrEnum

from node.errors import ReasonError, RemoteError


class ErrorCode(StrEnum):
    """Why the node did not answer a request with a result (``error.code`` on the wire)."""

    BAD_REQUEST = "bad_request"  # not one JSON object line with a "command" string, or bad args
    UNKNOWN_COMMAND = "unknown_command"
    REQUEST_TOO_LARGE = "request_too_large"  # no end of line within MAX_REQUEST_BYTES
    TIMEOUT = "timeout"  # no whole request line within CLIENT_TIMEOUT_S
    TOO_MANY_CLIENTS = "too_many_clients"  # MAX_CLIENTS are being served
    TOO_MANY_STREAMS = "too_many_streams"  # MAX_STREAMS streams are open
    COMMAND_TIMEOUT = "command_timeout"  # an async command did not finish within its timeout
    COMMAND_FAILED = "command_failed"  # the command could not answer (see the message)


class RequestError(ReasonError[ErrorCode], RemoteError):
    """What a control client sent cannot be answered; the client is told ``code`` (the
    ``reason``, named as on the wire) and ``detail``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)

    @property
    def code(self) -> ErrorCode:
        return self.reason


class CommandRefused(RequestError):
    """A command failed for a typed reason of its own (``send``: ``unknown_peer``, ``too_large``...):
    ``command_failed`` on the wire, with ``why`` as the error's ``reason`` so a client decides on
    it, never on the message."""

    def __init__(self, why: str, message: str) -> None:
        super().__init__(ErrorCode.COMMAND_FAILED, message)
        self.why = why
