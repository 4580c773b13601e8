"""The board stand-in: the image's amd64 rootfs booted with ``systemd-nspawn --boot``.

The rootfs is never written: each machine boots with ``--volatile=overlay`` (a tmpfs over it), so
every session and every fresh machine starts from the image as built. Commands run inside
through ``nsenter`` into the container's PID 1, the same way Ansible's
``community.docker.nsenter`` connection reaches it. Machines get a test network of their own
(``TestNet``): a bridge in a network namespace this module creates, one veth per machine, addresses
from 198.19.77.0/24 (inside 198.18.0.0/15, RFC 2544), so a link flap is a real carrier loss.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from hil.target import Target, TargetError

PREFIX = "bcops-hil"
SUBNET = "198.19.77"
LINK = "hil0"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_PDEATHSIG = 1


def missing_tools() -> list[str]:
    missing = [t for t in ("systemd-nspawn", "nsenter", "ip") if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def _die_with_parent() -> None:
    # A killed pytest must not leave a booted container behind: nspawn gets SIGTERM when we die,
    # and shuts the container down.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise TargetError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def reap_stale_nets() -> None:
    """Delete test networks whose owning process is gone (a test run killed before teardown)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=False)
    for line in done.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = name.removeprefix(f"{PREFIX}-")
        if name.startswith(f"{PREFIX}-") and owner.isdigit() and not _pid_alive(int(owner)):
            _ip("netns", "del", name)


class TestNet:
    """A bridge in a namespace of its own; ``attach`` plugs a machine into it."""

    def __init__(self) -> None:
        self.ns = f"{PREFIX}-{os.getpid()}"
        _ip("netns", "add", self.ns)
        try:
            _ip("-n", self.ns, "link", "set", "lo", "up")
            _ip("-n", self.ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.ns, "link", "set", "br0", "up")
        except TargetError:
            self.close()
            raise
        self._next = 10
        self._controller: str | None = None

    def attach(self, leader: int) -> tuple[str, str]:
        """A veth from the bridge to ``hil0`` inside the machine; returns (bridge-side name, address)."""
        host_end = f"h{self._next}"
        address = f"{SUBNET}.{self._next}"
        self._next += 1
        peer = ("peer", "name", LINK, "netns", str(leader))
        _ip("-n", self.ns, "link", "add", host_end, "type", "veth", *peer)
        _ip("-n", self.ns, "link", "set", host_end, "master", "br0", "up")
        return host_end, address

    def controller_address(self) -> str:
        """Give the bridge an address, so commands run in this namespace (``ip netns exec``)
        reach the machines as a controller on their LAN would."""
        if self._controller is None:
            _ip("-n", self.ns, "address", "add", f"{SUBNET}.1/24", "dev", "br0")
            self._controller = f"{SUBNET}.1"
        return self._controller

    def set_link(self, host_end: str, up: bool) -> None:
        _ip("-n", self.ns, "link", "set", host_end, "up" if up else "down")

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30, check=False)


class NspawnMachine(Target):
    """One booted container; use as a context manager (boot on enter, power off on exit)."""

    def __init__(self, rootfs: Path, name: str, workdir: Path, net: TestNet | None) -> None:
        self.rootfs = rootfs
        self.name = name
        self.address = None
        self.test_iface = LINK if net is not None else None
        self.log_path = workdir / f"{name}.console.log"
        self._net = net
        self._host_end: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.leader = 0
        # CLOCK_MONOTONIC (µs) just before nspawn started: the container shares the host's
        # monotonic clock, so a unit's ActiveEnterTimestampMonotonic minus this is boot-to-READY.
        self.launched_us = 0

    def __enter__(self) -> NspawnMachine:
        self._log = self.log_path.open("wb")
        self.launched_us = time.monotonic_ns() // 1000
        self._proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--volatile=overlay",
                "--console=read-only",
                f"--machine={self.name}",
                f"--directory={self.rootfs}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl must run in the child
        )
        try:
            self.leader = self._find_leader(timeout=30)
            if self._net is not None:
                self._host_end, address = self._net.attach(self.leader)
                self.check(["ip", "address", "add", f"{address}/24", "dev", LINK])
                self.check(["ip", "link", "set", LINK, "up"])
                self.address = address
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # nspawn turns SIGTERM into an orderly poweroff of the container.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _find_leader(self, timeout: float) -> int:
        """The container's PID 1 (systemd) as the host sees it: the child of nspawn."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise TargetError(f"{self.name}: systemd-nspawn exited {code}: {self.console()}")
            for child in _children(self._proc.pid):
                if _ns_pid(child) == 1:
                    return child
            time.sleep(0.05)
        raise TargetError(f"{self.name}: no container init after {timeout:.0f} s: {self.console()}")

    def console(self, tail: int = 2000) -> str:
        return self.log_path.read_bytes()[-tail:].decode(errors="replace")

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        if self._proc is None or self._proc.poll() is not None:
            raise TargetError(f"{self.name}: the container is not running")
        command = ["nsenter", f"--target={self.leader}", "--all", "--root", "--wd", "--"]
        command += ["/usr/bin/env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def flap_link(self, down_s: float, while_down: Callable[[], None] | None = None) -> None:
        if self._net is None or self._host_end is None:
            raise TargetError(f"{self.name}: booted without a test network")
        self._net.set_link(self._host_end, up=False)
        try:
            started = time.monotonic()
            if while_down is not None:
                while_down()
            time.sleep(max(0.0, down_s - (time.monotonic() - started)))
        finally:
            self._net.set_link(self._host_end, up=True)

    def ansible_host_vars(self) -> dict[str, Any]:
        return {
            "ansible_connection": "community.docker.nsenter",
            "ansible_nsenter_pid": self.leader,
            "ansible_python_interpreter": "/usr/bin/python3",
            # nsenter is root already; the image has no sudo.
            "ansible_become": False,
        }

    def boot_to_ready_s(self) -> float:
        """Seconds from starting nspawn to the node's READY=1 (the unit entering active)."""
        return (self.unit().active_enter_us - self.launched_us) / 1e6


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # Field 4 (ppid) follows the parenthesised comm, which may itself hold spaces.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _ns_pid(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None
