"""GET /metrics on a running node: the Prometheus text format with the issue's metric names, a
count that moves with traffic, the bound address in status, and a port in use that costs the node
its metrics, not its life."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.nodeproc import RunningNode, cli, start_node

pytestmark = pytest.mark.process

NAMES = {
    "bitcraps_transport_connections",
    "bitcraps_messages_sent",
    "bitcraps_messages_received",
    "bitcraps_failovers",
    "bitcraps_breaker_state",
    "bitcraps_path_rtt_seconds",
    "bitcraps_nat_traversal",
}


def _status(node: RunningNode) -> dict[str, object]:
    done = cli("status", "--json", "--runtime-dir", str(node.runtime_dir))
    assert done.returncode == 0, done.stderr
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(listen: str) -> tuple[set[str], Samples]:
    """The metric families' names (those without samples yet included) and every sample."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain; version=")
        text = reply.read().decode()
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    return {f.name for f in families}, samples


def _ping(node: RunningNode, tmp_path: Path) -> None:
    """A peer pings the node over UDP: a secure session, which the node keeps afterwards."""
    done = cli(
        "ping", f"udp://127.0.0.1:{node.udp_port}", "--peer", node.peer_id, "--count", "1",
        "--state-dir", str(tmp_path / "pinger"), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_running_node_serves_its_metrics(tmp_path: Path) -> None:
    node = start_node(tmp_path, extra_config='[metrics]\nlisten = "127.0.0.1:0"\n')
    try:
        metrics = _status(node)["metrics"]
        assert isinstance(metrics, dict) and metrics["error"] is None
        listen = metrics["listen"]
        assert isinstance(listen, str) and listen.startswith("127.0.0.1:") and not listen.endswith(":0")
        families, before = _scrape(listen)
        assert families >= NAMES
        assert before[("bitcraps_nat_traversal_total", (("outcome", "punched"),))] == 0
        assert before[("bitcraps_failovers_total", ())] == 0
        sessions = ("bitcraps_transport_connections", (("transport", "udp"),))
        assert before[sessions] == 0
        _ping(node, tmp_path)
        _, after = _scrape(listen)
        assert after[sessions] == 1
        assert _status(node)["metrics"]["responses"] == {"200": 2}  # type: ignore[index]
    finally:
        node.kill()


def test_metrics_off_by_empty_listen(tmp_path: Path) -> None:
    node = start_node(tmp_path)  # the fixture's default: [metrics] listen = ""
    try:
        assert _status(node)["metrics"] == {"listen": None, "error": None, "responses": {}, "faults": {}}
    finally:
        node.kill()


def test_a_port_in_use_is_reported_and_the_node_runs_on(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = start_node(tmp_path, extra_config=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        try:
            metrics = _status(node)["metrics"]
            assert isinstance(metrics, dict) and metrics["listen"] is None
            assert (
                metrics["error"] == f"cannot listen on 127.0.0.1:{port}: Address already in use (EADDRINUSE)"
            )
            _ping(node, tmp_path)  # still serving peers
            assert node.proc.poll() is None
            # Logged once, before status could answer (the service started before the control socket).
            assert node.stderr_path.read_text().count("metrics not served") == 1
        finally:
            node.kill()
