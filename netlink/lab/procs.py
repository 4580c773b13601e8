"""Stopping processes by pid: the lab's own children and processes another run left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from netlink.lab import state

STOP_GRACE_S = 2.0


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """Stop and reap a child: SIGTERM, then SIGKILL after the grace period."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(STOP_GRACE_S)


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


def stop_pid(pid: int, marker: str | None = None, grace: float = STOP_GRACE_S) -> bool:
    """Stop a process that is not our child: SIGTERM, then SIGKILL after ``grace``.

    With ``marker``, only a process whose command line contains it is touched (pid reuse).
    Returns True if a process was signalled.
    """
    if marker is not None:
        cmd = cmdline(pid)
        if cmd is None or marker not in cmd:
            return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + grace
        time.sleep(0.002)
    return True


def process_alive(proc: state.ProcessRecord) -> bool:
    """True while the recorded process runs (and is still the one recorded)."""
    cmd = cmdline(proc.pid)
    return cmd is not None and proc.marker in cmd and alive(proc.pid)
