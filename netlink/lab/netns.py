"""Network namespaces without leaving the main thread's namespace.

Python 3.11 has no ``os.setns``, so ``setns(2)``/``unshare(2)`` go through ctypes. Namespaces are
per thread on Linux: a :class:`NamespaceThread` owns one worker thread that hops between
namespaces and runs callables there, so the caller's thread never changes namespace. A socket (or
netlink socket, or child process) created by the worker while it is inside a namespace keeps that
namespace for life, wherever it is used afterwards.

Named namespaces follow iproute2's layout (``/run/netns/NAME``, a bind mount of the namespace),
so ``ip netns exec NAME ...`` works on them.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import errno
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from netlink.lab.errors import NamespaceError, NamespaceOp

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000  # <sched.h>
MS_BIND = 4096  # <sys/mount.h>
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

T = TypeVar("T")

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc  # noqa: PLW0603 - one handle per process
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def netns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def setns(fd: int, name: str = "") -> None:
    """Move the *calling thread* into the network namespace open at ``fd``."""
    if libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NamespaceError(NamespaceOp.ENTER, name or f"fd {fd}", err, os.strerror(err))


def _ensure_run_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so mounts propagate."""
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    lc = libc()
    if lc.mount(b"none", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:  # EINVAL: not a mount point yet
        err = ctypes.get_errno()
        raise NamespaceError(NamespaceOp.CREATE, NETNS_RUN_DIR, err, os.strerror(err))
    run_dir = NETNS_RUN_DIR.encode()
    if lc.mount(run_dir, run_dir, b"none", MS_BIND | MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise NamespaceError(NamespaceOp.CREATE, NETNS_RUN_DIR, err, os.strerror(err))
    if lc.mount(b"none", run_dir, b"none", MS_SHARED | MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise NamespaceError(NamespaceOp.CREATE, NETNS_RUN_DIR, err, os.strerror(err))


def remove(name: str) -> bool:
    """Unmount and unlink ``/run/netns/NAME`` (what ``ip netns del`` does); False if absent.

    The namespace itself goes away once nothing (process, socket, fd) holds it any more.
    """
    path = netns_path(name)
    libc().umount2(path.encode(), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise NamespaceError(NamespaceOp.DELETE, name, exc.errno or 0, str(exc)) from exc
    return True


def exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def pids_in(names: set[str]) -> dict[int, str]:
    """Processes whose network namespace is one of the named ones (pid -> name)."""
    inodes: dict[tuple[int, int], str] = {}
    for name in names:
        try:
            st = os.stat(netns_path(name))
        except FileNotFoundError:
            continue
        inodes[(st.st_dev, st.st_ino)] = name
    found: dict[int, str] = {}
    if not inodes:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        hit = inodes.get((st.st_dev, st.st_ino))
        if hit is not None:
            found[int(entry)] = hit
    return found


class NamespaceThread:
    """A worker thread that runs callables inside named network namespaces.

    ``run(None, fn)`` runs in the namespace the thread started in (the caller's).
    """

    def __init__(self, name: str = "netns-worker") -> None:
        self._jobs: queue.SimpleQueue[
            tuple[str | None, Callable[[], Any], concurrent.futures.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._fds: dict[str, int] = {}
        self._home_fd = -1
        self._current: str | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    # -- worker side ---------------------------------------------------------------------------
    def _main(self) -> None:
        self._home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._started.set()
        while True:
            job = self._jobs.get()
            if job is None:
                break
            target, fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                self._enter(target)
                fut.set_result(fn())
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)
        try:
            self._enter(None)
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            os.close(self._home_fd)

    def _enter(self, target: str | None) -> None:
        if target == self._current:
            return
        if target is None:
            setns(self._home_fd, "<home>")
        else:
            fd = self._fds.get(target)
            if fd is None:
                try:
                    fd = os.open(netns_path(target), os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise NamespaceError(NamespaceOp.ENTER, target, exc.errno or 0, str(exc)) from exc
                self._fds[target] = fd
            setns(fd, target)
        self._current = target

    def _create(self, name: str) -> None:
        _ensure_run_dir()
        path = netns_path(name)
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
        except OSError as exc:
            raise NamespaceError(NamespaceOp.CREATE, name, exc.errno or 0, str(exc)) from exc
        lc = libc()
        ok = lc.unshare(CLONE_NEWNET) == 0
        ok = ok and lc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None) == 0
        if not ok:
            err = ctypes.get_errno()
            os.unlink(path)
            self._current = "?"  # unknown: force a setns on the next job
            self._enter(None)
            raise NamespaceError(NamespaceOp.CREATE, name, err, os.strerror(err))
        self._fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._current = name

    # -- caller side ---------------------------------------------------------------------------
    def submit(self, netns: str | None, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((netns, fn, fut))
        return fut

    def run(self, netns: str | None, fn: Callable[[], T]) -> T:
        """Run ``fn()`` inside ``netns`` (None: the caller's namespace) and return its result."""
        return self.submit(netns, fn).result()

    def create(self, name: str) -> None:
        """Create the named namespace ``/run/netns/NAME`` (fails if it exists)."""
        self.submit(None, lambda: self._create(name)).result()

    def forget(self, name: str) -> None:
        """Close the worker's handle on ``name`` (so deleting it frees the namespace)."""

        def close() -> None:
            if self._current == name:
                self._enter(None)
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)

        self.run(None, close)

    def socket(
        self, netns: str, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM, proto: int = 0
    ) -> socket.socket:
        """A socket that lives in ``netns`` (usable from any thread)."""
        return self.run(netns, lambda: socket.socket(family, type, proto))

    def close(self) -> None:
        """Return to the home namespace, close every handle and stop the worker."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def __enter__(self) -> NamespaceThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
