"""Removing a lab from its record: from the lab itself, from ``lab down``, or by reaping.

Strict: every recorded process is stopped by pid, then anything else still running in the lab's
namespaces, every namespace is deleted, the lab directory removed and the registry entry dropped.
Safe to repeat and to run from another process than the one that built the lab. A step that
fails (a process that survives SIGKILL, a namespace that will not go) does not stop the others:
the first error is raised once everything else is done, the rest are logged.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from functools import partial

from netlink.lab import netns, procs, state
from netlink.lab.errors import LabError

log = logging.getLogger(__name__)


def remove(record: state.LabRecord) -> None:
    """Remove everything ``record`` owns. Raises the first LabError, after doing the rest."""
    errors: list[LabError] = []

    def attempt(step: Callable[[], object]) -> None:
        try:
            step()
        except LabError as exc:
            errors.append(exc)

    for proc in record.processes:
        attempt(partial(procs.stop_pid, proc.pid, proc.marker))
    # Anything else still running in the lab (a user's shell, a test's leftover): stop it too.
    for pid, ns in netns.pids_in(set(record.namespaces)).items():
        if pid != os.getpid():
            log.warning("stopping pid %d left in %s", pid, ns)
            attempt(partial(procs.stop_pid, pid))
    for name in reversed(record.namespaces):
        attempt(partial(netns.remove, name))
    shutil.rmtree(record.workdir, ignore_errors=True)
    attempt(partial(state.unregister, record.prefix))
    for extra in errors[1:]:
        log.error("lab %s teardown: %s", record.prefix, extra)
    if errors:
        raise errors[0]


def reap_stale() -> list[str]:
    """Remove registered labs whose owning process is gone; returns their prefixes."""
    reaped: list[str] = []
    for record in state.registered():
        if record.owner_pid is None or procs.alive(record.owner_pid):
            continue
        remove(record)
        reaped.append(record.prefix)
    return reaped
