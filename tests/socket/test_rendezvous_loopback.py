"""Rendezvous by peer id between node processes on loopback (issue 16): two members registered
with an introducer node reach each other by id alone (no relay here, so ``connect`` answers only
once the punch of their host candidates proved a direct UDP path), and every way it cannot
happen ends in a typed refusal within ``--timeout``."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.app_cli import Listener, app, app_json
from tests.support.nodeproc import RunningNode
from tests.support.rendezvous_nodes import (
    introducer_entry,
    link_state,
    rendezvous,
    start_introducer,
    start_member,
)

pytestmark = pytest.mark.process

UNKNOWN_PEER = "a" * 52  # well-formed peer ids nobody has
OTHER_PEER = "b" * 52


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[RunningNode, RunningNode, RunningNode]]:
    """An introducer and two members registered with it."""
    started: list[RunningNode] = []
    try:
        introducer = start_introducer(tmp_path / "introducer")
        started.append(introducer)
        # a serves its metrics: the traversal's outcome is counted there.
        metrics = '[metrics]\nlisten = "127.0.0.1:0"\n'
        for name, extra in (("a", metrics), ("b", "")):
            started.append(start_member(tmp_path / name, introducer_entry(introducer), extra))
        yield started[0], started[1], started[2]
    finally:
        for node in started:
            node.kill()


def _exchange(sender: RunningNode, receiver: RunningNode, text: str) -> dict[str, object]:
    """``text`` from ``sender`` to ``receiver``, as ``listen`` on the receiver sees it."""
    listener = Listener.start(receiver)
    try:
        sent = app_json(sender, "send", receiver.peer_id, text)
        assert sent["acknowledged"] == 1, sent
        item = listener.next()
        while item["type"] != "message":
            item = listener.next()
        assert listener.stop() == 0
    finally:
        listener.proc.kill()
    assert base64.b64decode(item["data_b64"]) == text.encode()
    assert item["peer_id"] == sender.peer_id
    return item


def _traversals(node: RunningNode) -> dict[str, float]:
    """``bitcraps_nat_traversal_total`` by outcome, from the node's /metrics."""
    listen = json.loads(app(node, "status", "--json").stdout)["metrics"]["listen"]
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "bitcraps_nat_traversal_total"
    }


def test_members_connect_by_peer_id_alone_and_go_direct(
    trio: tuple[RunningNode, RunningNode, RunningNode],
) -> None:
    introducer, a, b = trio
    for member in (a, b):
        link = link_state(member, "registered")
        assert link["peer_id"] == introducer.peer_id and link["detail"] is None
    served = rendezvous(introducer)
    assert served["serve"] is True and served["registered_peers"] == 2
    assert served["introducer"]["registered_peers"] == 2

    done = app(a, "connect", b.peer_id, "--timeout", "20", "--json")
    assert done.returncode == 0, done.stderr.decode()
    connected = json.loads(done.stdout)
    assert connected["peer_id"] == b.peer_id
    assert connected["direct"] is True and connected["method"] in ("host", "srflx", "prflx"), connected
    assert connected["path"]["kind"] == "udp" and connected["path"]["endpoint"] == f"127.0.0.1:{b.udp_port}"
    assert connected["time_to_direct_ms"] is not None

    # Messages cross both ways on the punched path (the members share no other path).
    assert _exchange(a, b, "from a")["path"] == "udp"
    assert _exchange(b, a, "from b")["path"] == "udp"
    counts = rendezvous(a)["traversals"]
    assert counts["attempts"] == 1 and counts["direct"] == 1, counts
    assert rendezvous(a)["faults"] == {} and rendezvous(b)["faults"] == {}
    # Found at the peer's own (host) address: counted as direct, not punched.
    assert _traversals(a) == {"direct": 1.0, "punched": 0.0, "relayed": 0.0, "failed": 0.0}
    served = rendezvous(introducer)["introducer"]
    assert served["introductions"] == 1 and served["refusals"] == {} and served["drops"] == {}, served


def test_an_unknown_peer_id_is_refused_by_the_introducer_within_the_timeout(
    trio: tuple[RunningNode, RunningNode, RunningNode],
) -> None:
    introducer, a, _ = trio
    link_state(a, "registered")
    done = app(a, "connect", UNKNOWN_PEER, "--timeout", "3")
    assert done.returncode == 1
    why = done.stderr.decode()
    # The introducer's refusal, not only "no path came up".
    assert "connect_failed" in why and "not registered with the introducer" in why, why
    assert rendezvous(introducer)["introducer"]["refusals"]["unknown_peer"] >= 1


def test_a_wrongly_pinned_introducer_fails_its_link_and_connect_says_why(tmp_path: Path) -> None:
    introducer = start_introducer(tmp_path / "introducer")
    try:
        member = start_member(tmp_path / "m", introducer_entry(introducer, pinned=UNKNOWN_PEER))
        try:
            link = link_state(member, "failed")
            assert link["detail"], link
            done = app(member, "connect", OTHER_PEER, "--timeout", "3")
            assert done.returncode == 1
            why = done.stderr.decode()
            assert "connect_failed" in why and "no introducer link is registered" in why, why
            assert rendezvous(introducer)["registered_peers"] == 0
        finally:
            member.kill()
    finally:
        introducer.kill()
