"""The installed node as a black box: status, a link flap, (later) NAT discovery and TCP-TLS ping."""

from __future__ import annotations

import pytest
from hil.target import Target


def test_status_answers_with_identity_and_listening_addresses(target: Target) -> None:
    target.wait_ready()
    reply = target.status()
    assert len(reply["peer_id"]) == 52  # full SHA-256 in base32, never truncated
    assert reply["listen"] and all(addr.startswith(("udp://", "tcp://")) for addr in reply["listen"])
    assert reply["transports"]
    # Plain text too, for a person on the board.
    assert reply["peer_id"] in target.check(["/opt/bitcraps-node/venv/bin/bitcraps-node", "status"])


@pytest.mark.timeout(120)
def test_node_keeps_running_and_serving_status_through_a_link_flap(target: Target) -> None:
    iface = target.test_iface
    if iface is None:
        pytest.skip(f"{target.name} has no test link to flap (--target-iface)")
    before = target.wait_ready()
    seen_down: list[str] = []
    answered_down: list[str] = []

    def while_down() -> None:
        seen_down.append(target.check(["ip", "-o", "link", "show", "dev", iface]))
        # The control socket is local: the node answers with its link gone.
        answered_down.append(target.status()["peer_id"])

    target.flap_link(4.0, while_down)
    # The flap was real: the node's side lost carrier (NO-CARRIER, operstate LOWERLAYERDOWN/DOWN).
    assert "NO-CARRIER" in seen_down[0]
    assert "LOWER_UP" in target.check(["ip", "-o", "link", "show", "dev", iface])
    after = target.wait_ready()
    assert (after.main_pid, after.restarts) == (before.main_pid, before.restarts)
    assert answered_down == [target.status()["peer_id"]]
