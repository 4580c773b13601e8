"""One way to say why a system call failed, so no error message ends in an empty detail.

``str()`` of an OSError can be empty (``asyncio.timeout`` raises a bare TimeoutError, and
``str(TimeoutError())`` is ""), and a resolver's ``socket.gaierror`` carries a negative EAI_* code
that the ``errno`` module does not name. Kept out of ``node.errors``: the sans-IO cores import
that module, and they must not pull in ``socket``.
"""

from __future__ import annotations

import errno
import socket
import ssl

_EAI_NAMES = {
    value: name for name, value in vars(socket).items() if name.startswith("EAI_") and isinstance(value, int)
}


# What an OSError without any text means. asyncio.timeout raises a bare TimeoutError, and uvloop
# a bare ConnectionResetError when the peer closes during the TLS handshake.
_MEANING_OF_A_BARE: tuple[tuple[type[OSError], str], ...] = (
    (TimeoutError, "timed out"),
    (ConnectionResetError, "the peer closed or reset the connection"),
    (ConnectionAbortedError, "the connection was aborted"),
    (ConnectionRefusedError, "connection refused"),
    (BrokenPipeError, "the peer closed the connection"),
)


def os_reason(exc: BaseException) -> str:
    """ "Connection refused (ECONNREFUSED)", "Name or service not known (EAI_NONAME)", "timed out"."""
    if isinstance(exc, ssl.SSLError):  # its errno is an SSL_ERROR_* code, not an errno
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        code = exc.errno or 0
        name = _EAI_NAMES.get(code) if isinstance(exc, socket.gaierror) else errno.errorcode.get(code)
        return f"{exc.strerror} ({name})" if name else exc.strerror
    if text := str(exc):
        return text
    for kind, meaning in _MEANING_OF_A_BARE:
        if isinstance(exc, kind):
            return meaning
    return type(exc).__name__
