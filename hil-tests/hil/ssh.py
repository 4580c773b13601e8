"""A real board reached over SSH (``--target ssh://user@host[:port]``), commands run as root."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from hil.target import Target, TargetError


class SshTarget(Target):
    """The board must accept key authentication (BatchMode) and, for a non-root user, sudo -n."""

    def __init__(
        self,
        url: str,
        iface: str | None,
        ssh_options: Sequence[str] = (),
        wrapper: Sequence[str] = (),
    ) -> None:
        """``ssh_options``: more ``-o`` options (ssh's own config applies anyway); ``wrapper``: a
        prefix for every command on this machine that reaches the board (e.g. ``ip netns exec``)."""
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise TargetError(f"{url}: expected ssh://user@host[:port]")
        self.user = parts.username or "root"
        self.host = parts.hostname
        self.port = parts.port or 22
        self.name = f"{self.user}@{self.host}"
        self.address = self.host
        self.test_iface = iface
        self.ssh_options = tuple(ssh_options)
        self.wrapper = tuple(wrapper)

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        remote = list(argv) if self.user == "root" else ["sudo", "-n", *argv]
        command = [*self.wrapper, "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        command += [*self.ssh_options, "-p", str(self.port)]
        command += [f"{self.user}@{self.host}", "--", shlex.join(remote)]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def flap_link(self, down_s: float, while_down: Callable[[], None] | None = None) -> None:
        if self.test_iface is None:
            raise TargetError(f"{self.name}: give --target-iface to flap a link on a real board")
        # A transient unit on the board does the flap, so the link comes back even when our SSH
        # session runs over it (then while_down's commands fail: flap a second interface).
        link = f"ip link set {shlex.quote(self.test_iface)}"
        script = f"{link} down; sleep {down_s}; {link} up"
        self.check(["systemd-run", "--collect", "--unit=bitcraps-hil-flap", "sh", "-c", script])
        started = time.monotonic()
        if while_down is not None:
            while_down()
        time.sleep(max(0.0, down_s + 2 - (time.monotonic() - started)))

    def ansible_host_vars(self) -> dict[str, Any]:
        return {
            "ansible_host": self.host,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_become": self.user != "root",
            "ansible_ssh_common_args": shlex.join(self.ssh_options),
        }
