"""`bitcraps-node run` as a real process inside a lab host's namespace, and a STUN Binding to it
from another namespace, for the lab tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from netlink.lab.builder import Lab
from node.proto import stun

NODE = [sys.executable, "-m", "node.cli"]


@contextlib.contextmanager
def node_daemon(lab: Lab, host: str, config_toml: str, tmp: Path) -> Iterator[tuple[str, Path]]:
    """Run the node in ``host`` with ``config_toml``; yields (its first stdout line, its runtime
    directory) once it printed that line; stopped with SIGTERM after, which must exit 0."""
    config = tmp / "node.toml"
    config.write_text(config_toml)
    runtime, stderr_path = tmp / "run", tmp / "stderr"
    with stderr_path.open("w") as stderr:
        proc = lab.popen(
            host,
            [*NODE, "run", "--config", str(config), "--state-dir", str(tmp / "state"),
             "--runtime-dir", str(runtime)],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert first.startswith("peer_id="), stderr_path.read_text()
        yield first, runtime
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, stderr_path.read_text()
        if proc.stdout is not None:
            proc.stdout.close()


def binding_to_node(lab: Lab, name: str, source: str, destination: tuple[str, int]) -> tuple[str, int]:
    """A Binding from ``source`` (port 0) in ``name`` to the node at ``destination``, which must
    answer from there; returns the XOR-MAPPED-ADDRESS it reports."""
    sock = lab.socket(name, bind=(source, 0), timeout=3)
    try:
        request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())
        sock.sendto(stun.encode(request), destination)
        data, origin = sock.recvfrom(2048)
    finally:
        sock.close()
    assert origin == destination
    response = stun.decode(data)
    assert response.transaction_id == request.transaction_id
    mapped = response.find(stun.XorMappedAddress)
    assert mapped is not None
    return str(mapped.ip), mapped.port
