"""Nodes on loopback that find each other by peer id through an introducer node (issue 16):
starting them, waiting for their registration, reading ``status``'s ``rendezvous``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.app_cli import wait_for
from tests.support.nodeproc import RunningNode, cli, start_node

SERVE = "[rendezvous]\nserve = true\n"


def start_introducer(tmp_path: Path, tls_port: int | None = None) -> RunningNode:
    """A node with ``[rendezvous] serve``; ``tls_port`` fixes its TCP-TLS port (a restart)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = "" if tls_port is None else f"[tcp_tls]\nport = {tls_port}\n"
    return start_node(tmp_path, extra_config=SERVE + port)


def introducer_entry(introducer: RunningNode, pinned: str | None = None) -> str:
    """The ``introducers`` entry for ``introducer``, pinned to its id (or to ``pinned``)."""
    return f"{pinned or introducer.peer_id}@tls://127.0.0.1:{introducer.tls_port}"


def start_member(tmp_path: Path, entry: str, extra_config: str = "") -> RunningNode:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return start_node(tmp_path, extra_config=f'[rendezvous]\nintroducers = ["{entry}"]\n' + extra_config)


def rendezvous(node: RunningNode) -> dict[str, Any]:
    done = cli("status", "--json", "--runtime-dir", str(node.runtime_dir))
    assert done.returncode == 0, done.stderr
    block: dict[str, Any] = json.loads(done.stdout)["rendezvous"]
    return block


def link_state(node: RunningNode, state: str, seconds: float = 30.0) -> dict[str, Any]:
    """Poll until ``node``'s (only) introducer link is in ``state``; that link's status."""

    def reached() -> dict[str, Any] | None:
        (link,) = rendezvous(node)["introducers"]
        return link if link["state"] == state else None

    link: dict[str, Any] = wait_for(reached, f"the introducer link is {state}", seconds)
    return link
