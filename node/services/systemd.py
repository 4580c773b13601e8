"""systemd readiness, status and watchdog notifications (sd_notify(3)) through sdnotify.

Without ``NOTIFY_SOCKET`` every call does nothing, so the node runs the same by hand.
The watchdog ping runs as a task on the event loop: if the loop blocks, pings stop and systemd
restarts the node (``WatchdogSec=``), which is the point of having one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

import sdnotify

log = logging.getLogger(__name__)


class Notifier:
    """Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment, as sdnotify does."""

    def __init__(self) -> None:
        self._notifier: sdnotify.SystemdNotifier | None = None
        address = os.environ.get("NOTIFY_SOCKET")
        if address:
            try:
                self._notifier = sdnotify.SystemdNotifier(debug=True)
                # Never block the event loop on a full notify socket (a stalled receiver would
                # otherwise freeze every service until it reads).
                self._notifier.socket.setblocking(False)
            except OSError as exc:
                log.warning("cannot reach NOTIFY_SOCKET %s: %s", address, exc)
        self.watchdog_interval = watchdog_interval(os.environ, os.getpid())

    @property
    def enabled(self) -> bool:
        return self._notifier is not None

    def _send(self, state: str) -> None:
        if self._notifier is None:
            return
        try:
            self._notifier.notify(state)
        except BlockingIOError:
            log.debug("sd_notify %s dropped: the notify socket is full", state.split("=", 1)[0])
        except OSError as exc:
            # systemd gone or its socket full: the service keeps serving peers regardless.
            log.warning("sd_notify %s failed: %s", state.split("=", 1)[0], exc)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={_one_line(status)}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    async def run_watchdog(self) -> None:
        """Ping at half of WATCHDOG_USEC until cancelled; returns at once when no watchdog is set."""
        if self._notifier is None or self.watchdog_interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(self.watchdog_interval)


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC, per sd_watchdog_enabled(3)), or None."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    # WATCHDOG_PID names the process systemd watches; a child that inherited it must stay quiet.
    wpid = env.get("WATCHDOG_PID", "")
    if wpid and (not wpid.isdigit() or int(wpid) != pid):
        return None
    return int(usec) / 2 / 1_000_000


def _one_line(text: str) -> str:
    return " ".join(text.split())
