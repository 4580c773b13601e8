"""STUN codec throughput: node.proto.stun against aioice.stun, side by side in one run.

One operation = build a Binding success response with XOR-MAPPED-ADDRESS, encode it with
MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT, then decode it (FINGERPRINT checked while
parsing, on both sides) and verify its MESSAGE-INTEGRITY. Each side takes addresses in its own
native form (ours an ``ipaddress`` object, aioice a string); a second line for ours adds the
string-to-``ipaddress`` conversion so nothing is hidden. Rounds are interleaved and alternate
which side goes first; the figure is the median of the rounds.

    .venv/bin/python bench/stun_codec.py [--quick]
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import time
from collections.abc import Callable

from aioice import stun as aioice_stun

from node.proto import stun

KEY = b"VOkJxbRl1RmTxUk/WvJxBt"
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
IP_TEXT = "192.0.2.1"
IP = ipaddress.ip_address(IP_TEXT)
PORT = 32853


def _ours(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    msg = stun.Message(
        stun.Method.BINDING, stun.MessageClass.SUCCESS, TID, (stun.XorMappedAddress(ip, PORT),)
    )
    data = stun.encode(msg, key=KEY)
    decoded = stun.decode(data)
    if not stun.verify_integrity(data, KEY) or decoded.find(stun.XorMappedAddress) is None:
        raise AssertionError("ours failed")


def ours() -> None:
    _ours(IP)


def ours_from_text() -> None:
    """As aioice must: the address starts as text."""
    _ours(ipaddress.ip_address(IP_TEXT))


def theirs() -> None:
    msg = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.RESPONSE, transaction_id=TID)
    msg.attributes["XOR-MAPPED-ADDRESS"] = (IP_TEXT, PORT)
    msg.add_message_integrity(KEY)  # adds FINGERPRINT too
    data = bytes(msg)
    decoded = aioice_stun.parse_message(data)  # checks FINGERPRINT
    if not decoded.check_message_integrity(KEY) or "XOR-MAPPED-ADDRESS" not in decoded.attributes:
        raise AssertionError("aioice failed")


def cross_check() -> None:
    """Each codec accepts the other's bytes, so both do the same job."""
    msg = stun.Message(
        stun.Method.BINDING, stun.MessageClass.SUCCESS, TID, (stun.XorMappedAddress(IP, PORT),)
    )
    parsed = aioice_stun.parse_message(stun.encode(msg, key=KEY))
    assert parsed.check_message_integrity(KEY)
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == (IP_TEXT, PORT)
    theirs_msg = aioice_stun.Message(
        aioice_stun.Method.BINDING, aioice_stun.Class.RESPONSE, transaction_id=TID
    )
    theirs_msg.attributes["XOR-MAPPED-ADDRESS"] = (IP_TEXT, PORT)
    theirs_msg.add_message_integrity(KEY)
    data = bytes(theirs_msg)
    assert stun.verify_integrity(data, KEY) and stun.verify_fingerprint(data)
    assert stun.decode(data).find(stun.XorMappedAddress) == stun.XorMappedAddress(IP, PORT)


def rate(func: Callable[[], None], iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        func()
    return iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of ~a minute")
    args = parser.parse_args()
    rounds, iterations = (5, 4_000) if args.quick else (15, 20_000)
    cross_check()
    sides: dict[str, Callable[[], None]] = {
        "ours": ours,
        "ours (from str)": ours_from_text,
        "aioice": theirs,
    }
    for func in sides.values():
        rate(func, 500)  # warm up
    rates: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            rates[name].append(rate(sides[name], iterations))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print("STUN Binding success + XOR-MAPPED-ADDRESS + MESSAGE-INTEGRITY + FINGERPRINT,")
    print(f"encode then decode + verify; {rounds} interleaved rounds of {iterations}, medians:")
    for name, value in median.items():
        spread = f"{min(rates[name]):,.0f}-{max(rates[name]):,.0f}"
        print(f"  {name:16} {value:>10,.0f} msg/s   (rounds {spread})")
    print(f"  ratio ours/aioice            {median['ours'] / median['aioice']:.2f}x")
    print(f"  ratio ours (from str)/aioice {median['ours (from str)'] / median['aioice']:.2f}x")


if __name__ == "__main__":
    main()
