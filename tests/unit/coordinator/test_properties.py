"""Properties over any sequence of inputs: choose never picks a failed path while another works,
and never raises anything but NO_PATH for a known peer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto.coordinator import (
    Coordinator,
    CoordinatorError,
    CoordinatorReason,
    DownReason,
    Health,
    Outcome,
    PathKey,
)
from node.proto.natprobe.types import NatType
from node.proto.vocabulary import DisconnectReason, Priority, TransportKind

from .harness import LAN, OTHER, PEER, TLS, TURN, UDP, UDP_WIFI, WIFI

KEYS = (UDP, TLS, TURN, UDP_WIFI)
PEERS = (PEER, OTHER)

op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(PEERS), st.sampled_from(KEYS)),
    st.tuples(st.just("remove"), st.sampled_from(PEERS), st.sampled_from(KEYS)),
    st.tuples(st.just("rtt"), st.sampled_from(PEERS), st.sampled_from(KEYS), st.floats(0.001, 2.0)),
    st.tuples(st.just("outcome"), st.sampled_from(PEERS), st.sampled_from(KEYS), st.sampled_from(Outcome)),
    st.tuples(st.just("failed"), st.sampled_from(PEERS), st.sampled_from(KEYS), st.sampled_from(DownReason)),
    st.tuples(st.just("link"), st.sampled_from((LAN, WIFI)), st.booleans()),
    st.tuples(st.just("wait"), st.floats(0.0, 40.0)),
)


def apply(c: Coordinator, action: tuple[object, ...], now: float) -> float:
    kind = action[0]
    if kind == "wait":
        now += float(action[1])  # type: ignore[arg-type]
        c.tick(now)
        return now
    if kind == "link":
        (c.link_down if action[2] else c.link_up)(str(action[1]), now)
        return now
    peer, key = str(action[1]), action[2]
    assert isinstance(key, PathKey)
    if kind == "add":
        c.add_path(peer, key, now)
        return now
    if peer not in c.peers() or key not in c.paths(peer):
        return now
    if kind == "remove":
        c.remove_path(peer, key, DisconnectReason.CLOSED_BY_PEER, now)
    elif kind == "rtt":
        c.record_rtt(peer, key, float(action[3]), now)  # type: ignore[arg-type]
    elif kind == "outcome":
        c.record_sent(peer, key, now)
        c.record_outcome(peer, key, action[3], now)  # type: ignore[arg-type]
    else:
        c.path_failed(peer, key, action[3], now)  # type: ignore[arg-type]
    return now


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NatType), st.lists(op, max_size=60))
def test_choose_never_returns_a_failed_path_when_another_works(
    nat: NatType, actions: list[tuple[object, ...]]
) -> None:
    c = Coordinator(nat=nat)
    now = 0.0
    for action in actions:
        now = apply(c, action, now)
        for peer in c.peers():
            for priority in Priority:
                try:
                    choice = c.choose(peer, priority, now)
                except CoordinatorError as error:
                    assert error.reason is CoordinatorReason.NO_PATH
                    choice = None
                view = next(v for v in c.snapshot(now) if v.peer == peer)
                health = {PathKey(TransportKind(r.kind), r.local, r.endpoint): r.health for r in view.paths}
                working = [k for k, h in health.items() if h > Health.FAILED]
                if choice is None:
                    assert not working
                    continue
                assert health[choice.primary] > Health.FAILED
                assert choice.extra is None or health[choice.extra] > Health.FAILED
                assert choice.extra != choice.primary
