"""Stopping processes by pid: the lab's own children and processes another run left behind.

Every wait has a deadline: SIGTERM, ``STOP_GRACE_S`` later SIGKILL, and a process still there
``KILL_WAIT_S`` after SIGKILL (uninterruptible sleep) raises ProcessStopError instead of hanging
the caller's teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from netlink.lab import state
from netlink.lab.errors import ProcessStopError

STOP_GRACE_S = 2.0  # SIGTERM -> SIGKILL
KILL_WAIT_S = 5.0  # SIGKILL -> give up


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """Stop and reap a child: SIGTERM, then SIGKILL after the grace period."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        kill_child(proc)


def kill_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child (if it still runs) and reap it. Raises ProcessStopError."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    try:
        proc.wait(KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        raise ProcessStopError(proc.pid, str(proc.args)) from None


def cmdline(pid: int) -> str | None:
    """The command line of ``pid`` (arguments joined by spaces), None if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def stop_pid(pid: int, marker: str | None = None, grace: float | None = None) -> bool:
    """Stop a process that is not our child: SIGTERM, then SIGKILL after ``grace``.

    With ``marker``, only a process whose command line contains it is touched (pid reuse).
    Returns True if a process was signalled. Raises ProcessStopError if it outlives SIGKILL by
    ``KILL_WAIT_S``.
    """
    command = cmdline(pid)
    if marker is not None and (command is None or marker not in command):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    if _gone_by(pid, time.monotonic() + (STOP_GRACE_S if grace is None else grace)):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if _gone_by(pid, time.monotonic() + KILL_WAIT_S):
        return True
    raise ProcessStopError(pid, command or "")


def _gone_by(pid: int, deadline: float) -> bool:
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def process_alive(proc: state.ProcessRecord) -> bool:
    """True while the recorded process runs (and is still the one recorded)."""
    cmd = cmdline(proc.pid)
    return cmd is not None and proc.marker in cmd and alive(proc.pid)
