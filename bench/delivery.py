"""Delivery cost: node.proto.delivery (sender + receiver cores, in memory) against bare copies.

One operation = one reliable NORMAL message of 64 B or 16 KiB: ``offer``, the DATA frame
encoded and decoded, ``receive`` and release into the inbox, ``consumed``, and the ACKs
(delayed: one per two messages) encoded, decoded and applied, freeing the window. No loss, virtual
time. The baseline copies the same payload into a new bytes object twice (out and back in), what
any carrier does at least. Rounds are interleaved, alternating which side goes first; medians.

    .venv/bin/python bench/delivery.py [--quick]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from support.timing import interleaved_medians

from node.proto.delivery.receiver import Receiver
from node.proto.delivery.sender import PeerSender
from node.proto.delivery.settings import DeliverySettings
from node.proto.delivery.wire import AckFrame, DataFrame, decode
from node.proto.vocabulary import Priority

PEER = "bench-peer"


def ours_op(size: int) -> Callable[[], None]:
    payload = os.urandom(size)
    settings = DeliverySettings()
    sender = PeerSender(settings)
    receiver = Receiver(settings)
    limit = settings.max_message_bytes
    clock = [0.0]

    def op() -> None:
        now = clock[0] = clock[0] + 1e-5
        if sender.offer(payload, Priority.NORMAL, now) is None:
            raise AssertionError("window full: acks lost")
        for transmit in sender.datagrams_to_send():
            frame = decode(transmit.data, limit)
            assert isinstance(frame, DataFrame)
            receiver.receive(PEER, frame, now)
        while (delivered := receiver.next_event()) is not None:
            receiver.consumed(len(delivered.payload), now)
        for _, raw in receiver.datagrams_to_send(now):
            ack = decode(raw, limit)
            assert isinstance(ack, AckFrame)
            sender.on_ack(ack, now)
        while sender.next_event() is not None:
            pass

    return op


def baseline_op(size: int) -> Callable[[], None]:
    payload = os.urandom(size)

    def op() -> None:
        there = bytes(bytearray(payload))
        if len(bytes(bytearray(there))) != size:
            raise AssertionError("baseline lost bytes")

    return op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of ~30 s")
    args = parser.parse_args()
    rounds = 5 if args.quick else 15
    plan = {64: 20_000 if args.quick else 100_000, 16 << 10: 5_000 if args.quick else 20_000}
    print(f"one reliable message through sender + receiver cores; {rounds} interleaved rounds, medians:")
    for size, iterations in plan.items():
        sides = {"delivery": ours_op(size), "2 copies": baseline_op(size)}
        median = interleaved_medians(sides, iterations, rounds, warm_up=max(1, iterations // 10))
        ratio = median["delivery"] / median["2 copies"]
        print(
            f"  {size:>6} B: delivery {median['delivery']:>10,.0f} msg/s"
            f"  2 copies {median['2 copies']:>12,.0f} msg/s  ratio {ratio:.3f}"
            f"  ({1e6 / median['delivery']:.1f} us per message)"
        )


if __name__ == "__main__":
    main()
