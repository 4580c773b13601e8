"""Receiver: epochs, the inbox and BUSY, unreliable messages, the ACK policy."""

from __future__ import annotations

import random

from node.proto.delivery.receiver import Receiver
from node.proto.delivery.sender import PeerSender
from node.proto.delivery.settings import DeliverySettings
from node.proto.delivery.wire import AckFrame, DataFrame, decode
from node.proto.vocabulary import Priority
from tests.unit.delivery.harness import PEER, Channel, Sim

N = Priority.NORMAL


def data(
    seq: int, epoch: int = 7, priority: Priority = N, reliable: bool = True, floor: int = 0
) -> DataFrame:
    return DataFrame(epoch, priority, seq, reliable, b"p%d" % seq, floor if reliable else seq)


def acks(receiver: Receiver, now: float) -> list[AckFrame]:
    out = []
    for _, raw in receiver.datagrams_to_send(now):
        frame = decode(raw, 1 << 20)
        assert isinstance(frame, AckFrame)
        out.append(frame)
    return out


def payloads(receiver: Receiver) -> list[bytes]:
    out = []
    while (event := receiver.next_event()) is not None:
        out.append(event.payload)
    return out


def test_a_restarted_sender_new_epoch_is_not_deduplicated() -> None:
    r = Receiver(DeliverySettings())
    for seq in range(3):
        r.receive(PEER, data(seq, epoch=1), 0.0)
    assert payloads(r) == [b"p0", b"p1", b"p2"]
    for seq in range(3):  # same sequences, new epoch: new messages
        r.receive(PEER, data(seq, epoch=2), 1.0)
    assert payloads(r) == [b"p0", b"p1", b"p2"]
    r.receive(PEER, data(0, epoch=1), 2.0)  # a straggler of the closed epoch
    assert payloads(r) == []
    assert r.stats().stale_epoch == 1


def test_real_restarted_sender_through_the_channel() -> None:
    sim = Sim(Channel(random.Random(0)))
    sim.send_all([(N, b"before")])
    sim.sender = PeerSender(sim.settings)  # a new process: a random epoch, sequences from 0
    sim.send_all([(N, b"after")])
    assert [d.payload for d in sim.delivered] == [b"before", b"after"]


def test_inbox_full_stops_acks_sender_waits_then_resumes() -> None:
    settings = DeliverySettings(inbox_messages=2, window_messages=8)
    sim = Sim(Channel(random.Random(0)), settings, consume=False)
    for i in range(6):
        assert sim.sender.offer(b"m%d" % i, N, 0.0) is not None
    sim.run_until(60.0)  # a minute of a full inbox: many probe periods, far past every retry
    assert [d.payload for d in sim.delivered] == [b"m0", b"m1"]
    assert sim.acks_seen[-1].busy and sim.acks_seen[-1].next == 2
    assert not sim.failed and sim.sender.stats().in_flight == 4  # waiting, not failed over
    assert sim.sender.offer(b"x", N, sim.now) is not None  # (window 8: room for more)

    for delivered in sim.delivered:  # a subscriber drains the inbox
        sim.receiver.consumed(len(delivered.payload), sim.now)
    sim.consume = True
    sim.run_until(sim.now + 1.0)
    assert [d.payload for d in sim.delivered] == [b"m%d" % i for i in range(6)] + [b"x"]
    assert len(sim.acknowledged) == 7 and not sim.failed
    assert not sim.acks_seen[-1].busy


def test_unreliable_delivered_at_once_at_most_once_not_held_for_order() -> None:
    r = Receiver(DeliverySettings())
    r.receive(PEER, data(5, reliable=False), 0.0)
    r.receive(PEER, data(5, reliable=False), 0.0)  # a copy (multipath)
    r.receive(PEER, data(2, reliable=False), 0.0)  # older, never seen: delivered
    assert payloads(r) == [b"p5", b"p2"]
    assert r.get_timer() is None  # never acknowledged


def test_out_of_order_is_held_and_selectively_acked_at_once() -> None:
    r = Receiver(DeliverySettings())
    r.receive(PEER, data(2), 0.0)
    r.receive(PEER, data(4), 0.0)
    assert payloads(r) == []
    assert acks(r, 0.0) == [AckFrame(7, N, 0, ((2, 2), (4, 4)))]
    r.receive(PEER, data(0), 0.0)
    r.receive(PEER, data(1), 0.0)
    assert payloads(r) == [b"p0", b"p1", b"p2"]
    assert acks(r, 0.0) == [AckFrame(7, N, 3, ((4, 4),))]


def test_bulk_acks_are_delayed_or_every_second_message_control_at_once() -> None:
    r = Receiver(DeliverySettings())
    r.receive(PEER, data(0, priority=Priority.BULK), 0.0)
    assert acks(r, 0.0) == []
    assert r.get_timer() == 0.025  # max_ack_delay
    assert [a.next for a in acks(r, 0.025)] == [1]
    r.receive(PEER, data(1, priority=Priority.BULK), 1.0)
    r.receive(PEER, data(2, priority=Priority.BULK), 1.0)
    assert [a.next for a in acks(r, 1.0)] == [3]  # the second one acknowledges both
    r.receive(PEER, data(0, priority=Priority.CONTROL), 2.0)
    assert [a.next for a in acks(r, 2.0)] == [1]


def test_a_restarted_receiver_starts_at_the_senders_floor() -> None:
    r = Receiver(DeliverySettings())  # knows nothing of epoch 7, whose 0..9 were delivered before
    r.receive(PEER, data(11, floor=10), 0.0)
    r.receive(PEER, data(10, floor=10), 0.0)
    assert payloads(r) == [b"p10", b"p11"]


def test_beyond_the_reorder_buffer_is_refused_not_held() -> None:
    r = Receiver(DeliverySettings(reorder_messages=4))
    r.receive(PEER, data(4), 0.0)
    assert r.stats().refused == 1
    assert acks(r, 0.0) == [AckFrame(7, N, 0, ())]


def test_receive_tells_news_from_copies_and_stragglers() -> None:
    r = Receiver(DeliverySettings())
    assert r.receive(PEER, data(1), 0.0)  # out of order: held, news
    assert r.receive(PEER, data(0), 0.0)  # fills the hole: news
    assert not r.receive(PEER, data(0), 0.1)  # released before: a copy
    assert not r.receive(PEER, data(1), 0.1)
    assert r.receive(PEER, data(0, epoch=8), 0.2)  # a new stream
    assert not r.receive(PEER, data(5, epoch=7), 0.3)  # a straggler of the closed one
    assert r.receive(PEER, data(0, epoch=8, reliable=False), 0.4)
    assert not r.receive(PEER, data(0, epoch=8, reliable=False), 0.4)
