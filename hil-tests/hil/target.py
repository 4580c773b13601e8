"""What a hil test drives: a machine with the node installed, reached through commands only."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Where image/build.sh and the Ansible role install the node (the unit's ExecStart).
NODE = "/opt/bitcraps-node/venv/bin/bitcraps-node"
UNIT = "bitcraps-node.service"


class TargetError(Exception):
    """A command on the target did not do what the test needed (message: what and its output)."""


@dataclass(frozen=True, slots=True)
class UnitState:
    active: str
    sub: str
    main_pid: int
    restarts: int
    result: str
    status_text: str
    # CLOCK_MONOTONIC of the last entry into "active" (for Type=notify: READY=1), in µs.
    active_enter_us: int

    @classmethod
    def from_show(cls, props: Mapping[str, str]) -> UnitState:
        return cls(
            active=props.get("ActiveState", ""),
            sub=props.get("SubState", ""),
            main_pid=int(props.get("MainPID") or 0),
            restarts=int(props.get("NRestarts") or 0),
            result=props.get("Result", ""),
            status_text=props.get("StatusText", ""),
            active_enter_us=int(props.get("ActiveEnterTimestampMonotonic") or 0),
        )

    @property
    def ready(self) -> bool:
        return self.active == "active" and self.sub == "running" and self.main_pid > 0


_SHOW = "ActiveState,SubState,MainPID,NRestarts,Result,StatusText,ActiveEnterTimestampMonotonic"


class Target(ABC):
    """A machine with the node installed under systemd, driven as root through commands."""

    name: str
    # The address peers reach this target's node on (None: the target has no test network).
    address: str | None

    @abstractmethod
    def run(self, argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run argv as root on the target; never raises on a non-zero exit."""

    # The interface flap_link takes down (None: this target has no link a test may flap).
    test_iface: str | None = None
    # A prefix for commands on this machine that reach the target (ssh, ansible-playbook).
    wrapper: tuple[str, ...] = ()

    @abstractmethod
    def flap_link(self, down_s: float, while_down: Callable[[], None] | None = None) -> None:
        """Take the target's test link down (carrier lost, like a pulled cable) for at least
        ``down_s``, calling ``while_down`` (on this thread) while it is down; then up again."""

    @abstractmethod
    def ansible_host_vars(self) -> dict[str, Any]:
        """Inventory variables that let Ansible reach this target."""

    def check(self, argv: Sequence[str], timeout: float = 60.0) -> str:
        done = self.run(argv, timeout)
        if done.returncode != 0:
            raise TargetError(
                f"{self.name}: {shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def sh(self, script: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], timeout)

    def node(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run([NODE, *args], timeout)

    def status(self) -> dict[str, Any]:
        done = self.node("status", "--json", timeout=30)
        if done.returncode != 0:
            raise TargetError(f"{self.name}: status exited {done.returncode}: {done.stderr.strip()}")
        reply: dict[str, Any] = json.loads(done.stdout)
        return reply

    def unit(self) -> UnitState:
        out = self.run(["systemctl", "show", f"--property={_SHOW}", UNIT], timeout=30)
        props = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        return UnitState.from_show(props)

    def wait_unit(self, done: Any, what: str, timeout: float) -> UnitState:
        """Poll the unit until ``done(state)``; raises TargetError naming ``what`` on timeout."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            try:
                state = self.unit()
            except (OSError, subprocess.SubprocessError):
                state = None  # systemd in the target not answering yet (booting)
            if state is not None and done(state):
                return state
            time.sleep(0.2)
        raise TargetError(f"{self.name}: {what} not reached in {timeout:.0f} s (last: {state})")

    def wait_ready(self, timeout: float = 120.0) -> UnitState:
        return self.wait_unit(lambda s: s.ready, "node READY", timeout)

    def ping(self, other: Target, count: int = 3) -> subprocess.CompletedProcess[str]:
        """``bitcraps-node ping`` from this node (its identity and trust settings, as its user) to
        ``other``'s TCP-TLS listener, expecting ``other``'s peer id."""
        if other.address is None:
            raise TargetError(f"{other.name} has no address on a shared network")
        theirs = other.status()
        tls = [addr for addr in theirs["listen"] if addr.startswith("tls://")]
        if not tls:
            raise TargetError(f"{other.name} lists no TCP-TLS listener: {theirs['listen']}")
        port = tls[0].rsplit(":", 1)[1]
        argv = ["runuser", "-u", "bitcraps", "--", NODE, "ping", "--state-dir", "/var/lib/bitcraps"]
        argv += ["--config", "/etc/bitcraps/node.toml", "--peer", theirs["peer_id"], "--count", str(count)]
        return self.run([*argv, "--json", f"{other.address}:{port}"], timeout=60)

    def rss_kib(self, pid: int) -> int:
        for line in self.check(["cat", f"/proc/{pid}/status"]).splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise TargetError(f"{self.name}: no VmRSS for pid {pid}")
