"""Run a command where name lookups hang, and no query leaves the machine.

``unshare -n -m python -m tests.adversarial.slow_dns RESOLV_CONF -- COMMAND...``: inside fresh
network and mount namespaces (only a loopback interface), bind RESOLV_CONF (``nameserver
127.0.0.1``) over /etc/resolv.conf, hold UDP 127.0.0.1:53 open without ever answering, and exec
COMMAND with that socket inherited. Every DNS query then waits for the resolver's own timeout
(``options timeout:30 attempts:1``), as behind a DNS server that stopped answering.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n"


def private_net_command(tmp_path: Path, argv: list[str]) -> list[str]:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(RESOLV_CONF)
    return ["unshare", "--net", "--mount", sys.executable, "-m", __name__, str(resolv), "--", *argv]


def main(args: list[str]) -> None:
    resolv, separator, *command = args
    assert separator == "--" and command, "usage: slow_dns RESOLV_CONF -- COMMAND..."
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 53))
    silent.set_inheritable(True)  # held by COMMAND: queries queue here, unanswered
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
