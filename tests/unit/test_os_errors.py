"""node.os_errors.os_reason: every failure of a system call is said, never an empty detail."""

from __future__ import annotations

import socket
import ssl

import pytest

from node.os_errors import os_reason


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "Connection refused (ECONNREFUSED)"),
        (
            socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
            "Temporary failure in name resolution (EAI_AGAIN)",
        ),
        (TimeoutError(), "timed out"),  # what asyncio.timeout raises: str() is ""
        (OSError(), "OSError"),
        (OSError("no route"), "no route"),
        (ssl.SSLError(1, "[SSL] bad record"), "[SSL] bad record"),  # errno 1 is not EPERM here
    ],
)
def test_the_reason_is_never_empty(exc: BaseException, said: str) -> None:
    assert os_reason(exc) == said
