"""Exactly once, in order per class, through loss, duplication and reordering (virtual time)."""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto.delivery.settings import DeliverySettings
from node.proto.vocabulary import Priority
from tests.unit.delivery.harness import Channel, Sim

# The channel's fates come from a seeded PRNG, not from hypothesis's own draws: hypothesis would
# otherwise steer every draw to "lost" and shrink to a dead link, which must fail (see
# test_sender.py). Twenty resends: with at most 25% loss each way, a message fails only after 21
# lost rounds in a row (~1e-9), so the property can demand that every message arrives.
PATIENT = DeliverySettings(retries=20, window_messages=16)


def payload(priority: Priority, index: int) -> bytes:
    return f"{priority.name}:{index}".encode()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0.0, 0.25),
    duplicate=st.floats(0.0, 0.3),
    jitter=st.floats(0.0, 0.3),
    classes=st.lists(st.sampled_from(list(Priority)), min_size=1, max_size=80),
)
def test_every_reliable_message_arrives_exactly_once_in_order_per_class(
    seed: int, loss: float, duplicate: float, jitter: float, classes: list[Priority]
) -> None:
    sim = Sim(Channel(random.Random(seed), loss=loss, duplicate=duplicate, jitter=jitter), PATIENT)
    messages = [(priority, payload(priority, i)) for i, priority in enumerate(classes)]
    sim.send_all(messages)

    assert not sim.failed
    assert len(sim.acknowledged) == len(messages)
    by_class: dict[Priority, list[bytes]] = defaultdict(list)
    for delivered in sim.delivered:
        by_class[delivered.message_id.priority].append(delivered.payload)
    for priority in Priority:
        assert by_class[priority] == [p for c, p in messages if c is priority]


def test_multipath_copies_are_delivered_once_and_either_ack_completes() -> None:
    sim = Sim(Channel(random.Random(1), duplicate=1.0, jitter=0.05))  # every copy twice, reordered
    messages = [(Priority.CONTROL, b"c%d" % i) for i in range(20)] + [(Priority.HIGH, b"h")]
    sim.send_all(messages)

    assert all(t.multipath for t in sim.sent)  # CONTROL and HIGH go on two paths
    control = [d.payload for d in sim.delivered if d.message_id.priority is Priority.CONTROL]
    assert control == [p for c, p in messages if c is Priority.CONTROL]
    assert [d.payload for d in sim.delivered if d.message_id.priority is Priority.HIGH] == [b"h"]
    assert sim.receiver.stats().duplicates >= 20  # 2 paths x 2 channel copies each
    assert len(sim.acknowledged) == len(messages)
    assert sim.sender.stats().resends == 0


def test_bulk_is_not_multipath() -> None:
    sim = Sim(Channel(random.Random(1)))
    sim.send_all([(Priority.BULK, b"x"), (Priority.NORMAL, b"y")])
    assert not any(t.multipath for t in sim.sent)
