"""The BLE mesh relay (bluez.proto.mesh): the frame codec, a 3-node line and a 5-node ring in
virtual time over fragmenting links, duplicates, TTL, jitter, routes and bounded tables."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bluez.proto.errors import BleProtoMisuse, BleProtoUsageError, MeshDrop, MeshFrameError
from bluez.proto.mesh import (
    BROADCAST_HEADER,
    MAX_TTL,
    UNICAST_HEADER,
    MeshFrame,
    MeshLimits,
    MeshRouter,
    decode_frame,
    encode_frame,
)
from tests.unit.ble.meshnet import MeshNet, prefix

A, B, C = prefix("A"), prefix("B"), prefix("C")


def router(own: bytes = A, links: tuple[str, ...] = ("x", "y"), **limits: object) -> MeshRouter[str]:
    return MeshRouter(own, links, rng=random.Random(1), limits=MeshLimits(**limits))  # type: ignore[arg-type]


def frame(source: bytes = B, dest: bytes | None = A, ttl: int = 3, hops: int = 0, mid: int = 1) -> bytes:
    return encode_frame(MeshFrame(mid, source, dest, ttl, hops, b"payload"))


def test_codec_round_trip_and_header_sizes() -> None:
    for dest in (C, None):
        original = MeshFrame(2**64 - 1, B, dest, 5, 2, b"x" * 1200)
        data = encode_frame(original)
        assert len(data) == 1200 + (UNICAST_HEADER if dest else BROADCAST_HEADER)
        assert decode_frame(data) == original
    assert (UNICAST_HEADER, BROADCAST_HEADER) == (25, 17)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", MeshDrop.TRUNCATED),
        (frame()[: UNICAST_HEADER - 1], MeshDrop.TRUNCATED),
        (frame()[:UNICAST_HEADER], MeshDrop.EMPTY),
        (bytes([0x40]) + frame()[1:], MeshDrop.RESERVED_BITS),
        (bytes([7 << 3 | 1]) + frame()[1:], MeshDrop.BAD_TTL),
    ],
)
def test_malformed_frames_are_typed_errors_and_counted_drops(data: bytes, reason: MeshDrop) -> None:
    with pytest.raises(MeshFrameError) as error:
        decode_frame(data)
    assert error.value.reason is reason
    r = router()
    assert r.receive(data, "x", 0.0).dropped is reason
    assert r.stats().drops == {reason: 1}


def test_encode_refuses_misuse() -> None:
    with pytest.raises(BleProtoUsageError) as error:
        encode_frame(MeshFrame(1, b"short", None, 1, 0, b"x"))
    assert error.value.reason is BleProtoMisuse.BAD_PREFIX
    with pytest.raises(BleProtoUsageError) as error:
        encode_frame(MeshFrame(1, A, None, MAX_TTL, 1, b"x"))
    assert error.value.reason is BleProtoMisuse.BAD_TTL


def test_line_a_reaches_c_through_b_and_learns_the_route_with_hops() -> None:
    net = MeshNet([("A", "B"), ("B", "C")])
    payload = random.Random(0).randbytes(1200)
    net.send("A", payload, to="C")
    net.run(until=5.0)
    assert [d.payload for _, d in net.nodes["C"].inbox] == [payload]
    assert net.nodes["C"].inbox[0][1].hops == 2
    assert net.nodes["B"].inbox == []  # not for B: relayed only
    assert net.nodes["B"].router.stats().relayed == 1
    route = net.nodes["C"].router.route(A, net.now)
    assert route is not None and route.hops == 2 and route.link == frozenset("BC")
    # C answers along the learnt route; A now sees C two hops away.
    net.send("C", b"pong", to="A")
    net.run(until=10.0)
    assert [d.payload for _, d in net.nodes["A"].inbox] == [b"pong"]
    assert net.nodes["A"].router.route(C, net.now).hops == 2  # type: ignore[union-attr]


def test_ring_of_five_suppresses_duplicates_and_delivers_once() -> None:
    ring = [("A", "B"), ("B", "C"), ("C", "D"), ("D", "E"), ("E", "A")]
    net = MeshNet(ring, seed=3)
    net.send("A", b"hello all", to=None)
    net.run(until=10.0)
    for name in "BCDE":
        assert [d.payload for _, d in net.nodes[name].inbox] == [b"hello all"], name
    assert net.nodes["A"].inbox == []
    seen = sum(n.router.stats().drops.get(MeshDrop.SEEN, 0) for n in net.nodes.values())
    assert seen == 2  # C and D each heard it from both sides of the ring
    # Every node relays the broadcast at most once on each other link: a ring of 5 sends at most
    # 2 (A) + 4 x 1 frames; without the duplicate cache the copies would circle until TTL ran out.
    assert len(net.sent) <= 2 + 4


def test_ttl_exhaustion_stops_a_long_line() -> None:
    names = [chr(ord("A") + i) for i in range(MAX_TTL + 3)]  # 10 nodes: 9 radio hops
    net = MeshNet(list(itertools.pairwise(names)))
    net.send("A", b"far", to=None)
    net.run(until=20.0)
    reached = [n for n in names[1:] if net.nodes[n].inbox]
    # TTL 7: the origin's neighbour plus 7 relays = 8 hops; the 9th node away never hears it.
    assert reached == names[1 : MAX_TTL + 2]
    last = net.nodes[names[MAX_TTL + 1]]
    assert last.inbox[0][1].hops == MAX_TTL + 1
    assert not last.router.stats().relayed


def test_ttl_0_not_for_us_is_dropped() -> None:
    r = router()
    assert r.receive(frame(dest=C, ttl=0), "x", 0.0).dropped is MeshDrop.TTL_EXPIRED
    assert r.receive(frame(dest=A, ttl=0, mid=2), "x", 0.0).delivered is not None


def test_relay_delay_lies_within_the_jitter_bounds() -> None:
    r = router(links=("x", "y", "z"))
    dues = []
    for mid in range(300):
        assert r.receive(frame(dest=None, mid=mid), "x", 100.0).relayed == 2
        due = r.get_timer()
        assert due is not None
        dues.append(due)
        assert len(r.transmit(due)) == 2
        assert r.get_timer() is None
    assert all(100.010 <= d <= 100.220 for d in dues)
    assert max(dues) - min(dues) > 0.1  # spread out, not one fixed delay


def test_relayed_copy_has_ttl_down_hops_up_and_goes_on_the_routed_link_only() -> None:
    r = router(links=("x", "y", "z"))
    r.receive(frame(source=C, dest=None, mid=9), "z", 0.0)  # teaches: C via z, 1 hop
    r.transmit(1.0)
    assert r.receive(frame(dest=C, ttl=4, hops=1, mid=10), "x", 2.0).relayed == 1
    ((link, data),) = r.transmit(3.0)
    assert link == "z"
    relayed = decode_frame(data)
    assert (relayed.ttl, relayed.hops, relayed.destination) == (3, 2, C)


def test_unknown_destination_floods_other_links_and_no_link_is_a_drop() -> None:
    r = router(links=("x", "y"))
    assert r.receive(frame(dest=C), "x", 0.0).relayed == 1
    lonely = router(links=("x",))
    assert lonely.receive(frame(dest=C), "x", 0.0).dropped is MeshDrop.NO_LINK


def test_own_frame_echo_is_dropped_even_after_the_cache_forgot_it() -> None:
    r = router(seen_entries=1)
    sent = r.originate(b"mine", None, 0.0)
    assert {link for link, _ in sent} == {"x", "y"}
    r.receive(frame(mid=77), "x", 0.0)  # pushes our id out of the one-entry cache
    assert r.receive(sent[0][1], "y", 0.1).dropped is MeshDrop.OWN_FRAME


def test_seen_cache_is_bounded_and_forgets_after_5_minutes() -> None:
    r = router()
    for mid in range(1500):
        r.receive(frame(mid=mid), "x", 0.0)
    assert r.stats().seen == 1000
    assert r.receive(frame(mid=1499), "x", 299.0).dropped is MeshDrop.SEEN
    assert r.receive(frame(mid=0), "x", 299.0).delivered is not None  # evicted by size
    assert r.receive(frame(mid=1499), "x", 300.0).delivered is not None  # expired by age


def test_routes_expire_are_bounded_and_leave_with_their_link() -> None:
    r = router(max_routes=3, route_age=60.0)
    for i in range(5):
        r.receive(frame(source=bytes([i]) * 8, mid=i), "x", 0.0)
    assert len(r.routes(0.0)) == 3 and r.stats().routes_evicted == 2
    assert r.route(bytes([4]) * 8, 59.9) is not None
    assert r.route(bytes([4]) * 8, 60.0) is None
    assert r.routes(60.0) == {}
    r.receive(frame(source=C, dest=None, mid=50), "y", 61.0)
    r.remove_link("x")
    assert r.routes(61.0).keys() == {C}
    r.remove_link("y")
    assert r.routes(61.0) == {}


def test_shorter_route_kept_over_a_longer_one_until_it_goes_stale() -> None:
    r = router(links=("x", "y"))
    r.receive(frame(source=C, dest=None, hops=0, mid=1), "x", 0.0)
    r.receive(frame(source=C, dest=None, hops=3, mid=2), "y", 1.0)
    assert r.route(C, 1.0).link == "x"  # type: ignore[union-attr]
    r.receive(frame(source=C, dest=None, hops=3, mid=3), "y", 61.0)
    assert r.route(C, 61.0).hops == 4  # type: ignore[union-attr]


def test_relay_queue_is_bounded_and_dropped_with_its_link() -> None:
    r = router(links=("x", "y"), max_pending=2)
    for mid in range(3):
        r.receive(frame(dest=C, mid=mid), "x", 0.0)
    assert r.stats().pending == 2 and r.stats().drops[MeshDrop.QUEUE_FULL] == 1
    r.remove_link("y")
    assert r.stats().pending == 0 and r.stats().drops[MeshDrop.LINK_GONE] == 2
    assert r.transmit(1.0) == []


def test_frame_from_an_unknown_link_is_our_misuse() -> None:
    with pytest.raises(BleProtoUsageError) as error:
        router().receive(frame(), "nope", 0.0)
    assert error.value.reason is BleProtoMisuse.UNKNOWN_LINK


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=40))
def test_random_bytes_never_raise_and_tables_stay_bounded(frames: list[bytes]) -> None:
    r = router(max_routes=4, max_pending=4, seen_entries=8)
    for i, data in enumerate(frames):
        outcome = r.receive(data, "x" if i % 2 else "y", float(i))
        assert outcome.delivered is not None or outcome.relayed or outcome.dropped is not None
    stats = r.stats()
    assert stats.routes <= 4 and stats.pending <= 4 and stats.seen <= 8
