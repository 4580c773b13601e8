"""The installed node as a black box: status, a link flap, (later) NAT discovery and TCP-TLS ping."""

from __future__ import annotations

import json

import pytest
from hil.target import Target


def test_status_answers_with_identity_and_listening_addresses(target: Target) -> None:
    target.wait_ready()
    reply = target.status()
    assert len(reply["peer_id"]) == 52  # full SHA-256 in base32, never truncated
    assert reply["listen"] and all(addr.startswith(("udp://", "tls://")) for addr in reply["listen"])
    assert reply["transports"]
    # Plain text too, for a person on the board.
    assert reply["peer_id"] in target.check(["/opt/bitcraps-node/venv/bin/bitcraps-node", "status"])


@pytest.mark.timeout(120)
def test_node_keeps_running_and_serving_status_through_a_link_flap(target: Target, peer: Target) -> None:
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
    # And the link carries peers again.
    again = target.ping(peer, count=1)
    assert again.returncode == 0, again.stderr


@pytest.mark.timeout(120)
def test_pings_a_second_target_over_tcp_tls(target: Target, peer: Target) -> None:
    done = target.ping(peer)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    # The peer proved the identity its own status reports; three round trips were timed.
    assert reply["peer_id"] == peer.status()["peer_id"]
    assert len(reply["rtt_ms"]) == 3
    assert reply["trust"] in {"development", "pinned", "fleet_ca"}


@pytest.mark.timeout(180)
def test_nat_discovery_runs_against_the_peer_node_as_stun_server(target: Target, peer: Target) -> None:
    if peer.address is None or target.address is None:
        pytest.skip("the targets share no test network")
    port = peer.status()["listen"][0].rsplit(":", 1)[1]
    # The peer's node answers STUN Binding on its UDP port; nothing translates between the two,
    # so discovery must see our own address as the mapped one.
    done = target.node("nat", "--stun", f"{peer.address}:{port}", "--json", timeout=150)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["servers"][0]["outcome"] == "ok"
    assert report["mapped_address"].rsplit(":", 1)[0] == target.address
    assert report["nat_type"] in {"open", "unknown"}
