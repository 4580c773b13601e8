"""Secure-session datagram cost: node.proto.session.secure_session against raw ChaCha20-Poly1305.

One operation = seal one datagram on one core and open it on the other (``send`` ->
``datagrams_to_send`` -> ``receive_datagram`` -> ``next_event``), against the same AEAD work done
directly with cryptography's ChaCha20Poly1305 (encrypt with a counter nonce and the 16-byte header
as associated data, then decrypt). The ratio is what the session's bookkeeping costs: header,
replay window, key lookup, events. Rounds are interleaved, alternating which side goes first;
figures are medians of CPU time (this process's, so other load on the machine does not skew
one side's rounds). Also printed: full handshakes per second (two cores, in memory).

    .venv/bin/python bench/secure_session.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from support.timing import interleaved_medians

from node.proto.identity import Identity, peer_id_of
from node.proto.session.secure_session import DatagramReceived, SecureSession


class AnyPeer:
    def verify(self, public_key: bytes, credential: bytes, expected_peer_id: str | None) -> str:
        return peer_id_of(public_key)


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def handshake(alice: Identity, bob: Identity) -> tuple[SecureSession, SecureSession]:
    a = SecureSession(alice, AnyPeer(), expected_peer_id=bob.peer_id)
    b = SecureSession(bob, AnyPeer())
    a.connect(0.0)
    while True:
        moved = False
        for src, dst in ((a, b), (b, a)):
            for datagram in src.datagrams_to_send(0.0):
                moved = True
                dst.receive_datagram(datagram, 0.0)
        if not moved:
            break
    while a.next_event() or b.next_event():
        pass
    if a.peer_id != bob.peer_id or b.peer_id != alice.peer_id:
        raise AssertionError("handshake failed")
    return a, b


def ours_op(size: int) -> Callable[[], None]:
    a, b = handshake(_identity(), _identity())
    payload = os.urandom(size)

    def op() -> None:
        a.send(payload, 0.0)
        for datagram in a.datagrams_to_send(0.0):
            b.receive_datagram(datagram, 0.0)
        event = b.next_event()
        if not isinstance(event, DatagramReceived):
            raise AssertionError("datagram lost")

    return op


def raw_op(size: int) -> Callable[[], None]:
    key = ChaCha20Poly1305.generate_key()
    seal, open_ = ChaCha20Poly1305(key), ChaCha20Poly1305(key)
    header = struct.Struct("<IIQ")
    payload = os.urandom(size)
    counter = 0

    def op() -> None:
        nonlocal counter
        aad = header.pack(4, 1, counter)
        nonce = bytes(4) + counter.to_bytes(8, "little")
        counter += 1
        sealed = seal.encrypt(nonce, payload, aad)
        if len(open_.decrypt(nonce, sealed, aad)) != size:
            raise AssertionError("raw failed")

    return op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of ~a minute")
    args = parser.parse_args()
    rounds, iterations, handshakes = (9, 5_000, 50) if args.quick else (41, 20_000, 400)
    print(f"seal + open of one datagram; {rounds} interleaved rounds of {iterations}, medians:")
    for size in (200, 1200):
        sides = {"session": ours_op(size), "raw AEAD": raw_op(size)}
        # CPU time of this process, not wall time: on a shared machine another process taking the
        # core during one side's round would count against that side alone (both sides are pure
        # CPU work in this one thread, so CPU time is what they cost).
        median = interleaved_medians(sides, iterations, rounds, warm_up=300, clock=time.process_time)
        for name, value in median.items():
            mbps = value * size / 1e6
            print(
                f"  {size:>5} B {name:9} {value:>10,.0f} datagrams/s  {mbps:7.1f} MB/s"
                f"  {1e6 / value:6.2f} us/datagram"
            )
        # The raw side is the ceiling (1.0x): the session cannot skip the AEAD work, so what it
        # adds per datagram is the difference.
        extra = 1e9 / median["session"] - 1e9 / median["raw AEAD"]
        print(
            f"  {size:>5} B ratio session/raw  {median['session'] / median['raw AEAD']:.2f}x"
            f"  (session bookkeeping {extra:,.0f} ns/datagram over the AEAD's own)"
        )
    alice, bob = _identity(), _identity()
    start = time.perf_counter()
    for _ in range(handshakes):
        handshake(alice, bob)
    per_second = handshakes / (time.perf_counter() - start)
    print(f"  full handshakes (both sides, in memory): {per_second:,.0f}/s")


if __name__ == "__main__":
    main()
