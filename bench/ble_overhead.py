"""BLE link cost: bytes on air per payload byte, and fragment + reassemble throughput.

Overhead: one 1200-byte session datagram in a unicast mesh frame (bluez.proto.mesh, 25 bytes),
cut into chunks (bluez.proto.fragments: 1 byte per chunk, 2 more in the first), each chunk one
Write Command / Notification with the ATT opcode and handle (3 bytes) and the L2CAP basic header
(4 bytes). Link-layer framing (preamble, access address, LL header, MIC, CRC) is left out: it is
the same for any protocol over the link.

Throughput: fragment + reassemble the same frame at each MTU against a plain slice and join of
the same pieces (no header, no checks); rounds interleaved (bench/support/timing.py), medians.

    .venv/bin/python bench/ble_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from support.timing import interleaved_medians

from bluez.proto.fragments import ATT_OVERHEAD, L2CAP_HEADER, Fragmenter, ReassemblyPool, chunk_capacity
from bluez.proto.mesh import MeshFrame, encode_frame

DATAGRAM = 1200
MTUS = (23, 185, 247)


def mesh_frame() -> bytes:
    return encode_frame(MeshFrame(1, b"A" * 8, b"C" * 8, 7, 0, os.urandom(DATAGRAM)))


def ours_op(frame: bytes, mtu: int) -> Callable[[], None]:
    fragmenter = Fragmenter()
    link = ReassemblyPool().open_link()

    def op() -> None:
        delivered = None
        for chunk in fragmenter.fragment(frame, mtu):
            delivered = link.receive(chunk, 0.0)
        if delivered is None or len(delivered) != len(frame):
            raise AssertionError("datagram lost")

    return op


def baseline_op(frame: bytes, mtu: int) -> Callable[[], None]:
    step = chunk_capacity(mtu)

    def op() -> None:
        pieces = [frame[offset : offset + step] for offset in range(0, len(frame), step)]
        if len(b"".join(pieces)) != len(frame):
            raise AssertionError("baseline lost bytes")

    return op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a second instead of ~15 s")
    args = parser.parse_args()
    frame = mesh_frame()
    print(f"one {DATAGRAM}-byte session datagram in a {len(frame)}-byte mesh frame:")
    for mtu in MTUS:
        chunks = Fragmenter().fragment(frame, mtu)
        on_air = sum(len(c) for c in chunks) + len(chunks) * (ATT_OVERHEAD + L2CAP_HEADER)
        print(
            f"  MTU {mtu:3}: {len(chunks):3} writes, {on_air:5} bytes on air, "
            f"{on_air / DATAGRAM:.3f} per payload byte"
        )
    rounds = 5 if args.quick else 15
    iterations = 300 if args.quick else 2000
    print(f"fragment + reassemble one frame; {rounds} interleaved rounds, medians:")
    for mtu in MTUS:
        sides = {"ble chunks": ours_op(frame, mtu), "slice+join": baseline_op(frame, mtu)}
        median = interleaved_medians(sides, iterations, rounds, warm_up=iterations // 10)
        for name, value in median.items():
            print(f"  MTU {mtu:3} {name:10} {value:>10,.0f} frames/s  {value * len(frame) / 1e6:7.1f} MB/s")
        print(
            f"  MTU {mtu:3} ratio ble chunks/slice+join  {median['ble chunks'] / median['slice+join']:.2f}x"
        )


if __name__ == "__main__":
    main()
