"""The adversarial tier: the node as a real process, attacked through its public surfaces.

Every case asserts what a stranger must never achieve: the node stops, grows without bound
(memory, descriptors), stops serving a legitimate peer, or refuses something without saying
so in ``status``. Services add their cases here as they gain a surface a stranger can reach.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.probes import NodeUnderAttack
from tests.support.nodeproc import start_node


@pytest.fixture
def attacked(tmp_path: Path) -> Iterator[NodeUnderAttack]:
    """A node on loopback in development trust mode (any client may prove an identity)."""
    node = start_node(tmp_path)
    try:
        yield NodeUnderAttack(node, tmp_path)
    finally:
        node.kill()
