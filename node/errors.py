"""The root of every error the ``node`` package raises.

Split as h11 and bleak do: a ``LocalError`` is our own misuse or environment (bad config, a
missing directory, a state machine driven wrongly); a ``RemoteError`` means a peer or server sent
something bad. Policies (retries, circuit breakers) decide on these types, never on message text.
"""


class NodeError(Exception):
    """Root of every error raised by the node package."""


class LocalError(NodeError):
    """Our misuse, configuration or environment is at fault."""


class RemoteError(NodeError):
    """A peer or server sent something malformed or unexpected."""


# What an OSError without text means: uvloop raises ConnectionResetError() with no arguments when
# the peer closes a connection during the TLS handshake, and str() of that is "".
_OS_ERROR_MEANING: tuple[tuple[type[OSError], str], ...] = (
    (ConnectionResetError, "the peer closed or reset the connection"),
    (ConnectionAbortedError, "the connection was aborted"),
    (ConnectionRefusedError, "connection refused"),
    (BrokenPipeError, "the peer closed the connection"),
    (TimeoutError, "timed out"),
)


def os_error_text(exc: OSError) -> str:
    """What ``exc`` says went wrong, never empty: its strerror, its text, else what its type means."""
    if exc.strerror:
        return exc.strerror
    if text := str(exc):
        return text
    for kind, meaning in _OS_ERROR_MEANING:
        if isinstance(exc, kind):
            return meaning
    return type(exc).__name__
