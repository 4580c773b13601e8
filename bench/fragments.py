"""Fragmentation cost: node.proto.datagram (fragment + reassemble) against plain slicing and a join.

One operation = one message of 16 KiB or 1 MiB split into UDP-sized fragments (1168-byte
plaintext budget, node.proto.datagram.fragments.UDP_PLAINTEXT) and reassembled into a Frame,
in order. The baseline cuts the same payload into the same number of pieces with bytes slicing
and joins them back: no header, no checks, no caps. The ratio is what the wire format and
the bounded reassembler cost. Rounds are interleaved, alternating which side goes first;
figures are medians.

    .venv/bin/python bench/fragments.py [--quick]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from support.timing import interleaved_medians

from node.proto.datagram.fragments import UDP_PLAINTEXT, chunk_size, fragment
from node.proto.datagram.reassembly import Reassembler
from node.proto.vocabulary import Frame

MAX_MESSAGE = 1 << 20
CHUNK = chunk_size(UDP_PLAINTEXT)


def ours_op(size: int) -> Callable[[], None]:
    payload = os.urandom(size)
    reassembler: Reassembler[str] = Reassembler()
    message_id = 0

    def op() -> None:
        nonlocal message_id
        message_id += 1
        delivered = None
        for data in fragment(Frame(message_id, payload), UDP_PLAINTEXT, MAX_MESSAGE):
            delivered = reassembler.receive("peer", data, 0.0)
        if delivered is None or len(delivered.payload) != size:
            raise AssertionError("message lost")

    return op


def baseline_op(size: int) -> Callable[[], None]:
    payload = os.urandom(size)

    def op() -> None:
        pieces = [payload[offset : offset + CHUNK] for offset in range(0, size, CHUNK)]
        if len(b"".join(pieces)) != size:
            raise AssertionError("baseline lost bytes")

    return op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a second instead of ~20 s")
    args = parser.parse_args()
    rounds = 5 if args.quick else 15
    plan = {16 << 10: 2000 if args.quick else 10_000, 1 << 20: 20 if args.quick else 100}
    print(f"fragment + reassemble one message, {CHUNK}-byte chunks; {rounds} interleaved rounds, medians:")
    for size, iterations in plan.items():
        sides = {"fragments": ours_op(size), "slice+join": baseline_op(size)}
        median = interleaved_medians(sides, iterations, rounds, warm_up=max(1, iterations // 10))
        label = f"{size >> 10} KiB" if size < 1 << 20 else "1 MiB"
        for name, value in median.items():
            print(f"  {label:>7} {name:10} {value:>10,.0f} msgs/s  {value * size / 1e6:8.1f} MB/s")
        ratio = median["fragments"] / median["slice+join"]
        print(f"  {label:>7} ratio fragments/slice+join  {ratio:.2f}x")


if __name__ == "__main__":
    main()
