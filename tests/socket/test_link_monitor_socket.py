"""The link monitor's socket failing under it, on a real route socket of this machine's
namespace (read only), under uvloop: reported with a typed error, logged once per streak,
counted, retried with backoff; the monitor (and the loop: the node) carries on."""

from __future__ import annotations

import errno
import logging
import socket

import pytest

from netlink.monitor import LinkMonitor, MonitorFailure, open_route_socket
from tests.support.tlsnodes import eventually

FAST = {"health_interval": 0.05, "retry_initial": 0.01, "retry_max": 0.05}


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("netlink.monitor") and r.levelno >= logging.WARNING
    ]


async def test_a_socket_closed_under_the_monitor_is_reported_and_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    opened: list[socket.socket] = []

    def factory() -> socket.socket:
        opened.append(open_route_socket())
        return opened[-1]

    async with LinkMonitor(socket_factory=factory, **FAST) as monitor:
        assert monitor.ready and monitor.state().interface("lo") is not None
        opened[0].close()
        await eventually(
            lambda: monitor.stats().socket_failures == 1 and len(opened) == 2 and monitor.settled
        )
        assert monitor.state().interface("lo") is not None
        opened[1].close()
        await eventually(lambda: monitor.stats().socket_failures == 2 and monitor.settled)
    assert all(s.fileno() == -1 for s in opened)
    logged = warnings(caplog)
    assert len(logged) == 2  # one per streak
    assert all(MonitorFailure.SOCKET_CLOSED.value in line for line in logged)


async def test_a_socket_that_cannot_be_opened_is_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[int] = []

    def factory() -> socket.socket:
        attempts.append(1)
        if len(attempts) <= 3:
            raise OSError(errno.EMFILE, "Too many open files")
        return open_route_socket()

    async with LinkMonitor(socket_factory=factory, **FAST) as monitor:
        await eventually(lambda: monitor.settled)
        assert monitor.stats().socket_failures == 3
        assert monitor.state().interface("lo") is not None
    logged = warnings(caplog)
    assert len(logged) == 1  # the streak, not each retry
    assert MonitorFailure.SOCKET_OPEN.value in logged[0] and "EMFILE" in logged[0]


async def test_a_monitor_that_never_gets_a_socket_starts_empty_and_keeps_trying() -> None:
    def factory() -> socket.socket:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    async with LinkMonitor(socket_factory=factory, start_timeout=0.2, **FAST) as monitor:
        assert not monitor.ready
        assert monitor.state().interfaces == ()
        failures = monitor.stats().socket_failures
        await eventually(lambda: monitor.stats().socket_failures > failures)
        assert monitor.last_error is not None and monitor.last_error.reason is MonitorFailure.SOCKET_OPEN
