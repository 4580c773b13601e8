"""Removing a lab from its record: from the lab itself, from ``lab down``, or by reaping.

Strict: every recorded process is stopped by pid, then anything else still running in the lab's
namespaces, every namespace is deleted, the lab directory removed and the registry entry dropped.
Safe to repeat and to run from another process than the one that built the lab.
"""

from __future__ import annotations

import logging
import os
import shutil

from netlink.errors import NamespaceError
from netlink.lab import netns, procs, state

log = logging.getLogger(__name__)


def remove(record: state.LabRecord) -> None:
    """Remove everything ``record`` owns."""
    for proc in record.processes:
        procs.stop_pid(proc.pid, proc.marker)
    names = set(record.namespaces)
    # Anything else still running in the lab (a user's shell, a test's leftover): stop it too.
    for pid, ns in netns.pids_in(names).items():
        if pid != os.getpid():
            log.warning("stopping pid %d left in %s", pid, ns)
            procs.stop_pid(pid)
    first: NamespaceError | None = None
    for name in reversed(record.namespaces):
        try:
            netns.remove(name)
        except NamespaceError as exc:
            first = first or exc
    shutil.rmtree(record.workdir, ignore_errors=True)
    state.unregister(record.prefix)
    if first is not None:
        raise first


def reap_stale() -> list[str]:
    """Remove registered labs whose owning process is gone; returns their prefixes."""
    reaped: list[str] = []
    for record in state.registered():
        if record.owner_pid is None or procs.alive(record.owner_pid):
            continue
        remove(record)
        reaped.append(record.prefix)
    return reaped
