"""The RFC 6479 anti-replay window against the simplest model that states the rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.proto.session.replay_window import ReplayVerdict, ReplayWindow


class Model:
    """Accept a counter once, unless it is ``size`` or more behind the highest accepted."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()

    def check(self, counter: int) -> ReplayVerdict:
        if self.seen and max(self.seen) - counter >= self.size:
            return ReplayVerdict.TOO_OLD
        return ReplayVerdict.REPLAYED if counter in self.seen else ReplayVerdict.FRESH


@settings(max_examples=300)
@given(
    blocks=st.integers(2, 5),
    steps=st.lists(
        st.tuples(st.integers(-300, 300), st.booleans()),  # offset from the highest; authentic?
        max_size=200,
    ),
)
def test_window_matches_the_model(blocks: int, steps: list[tuple[int, bool]]) -> None:
    window = ReplayWindow(blocks)
    model = Model(window.size)
    for offset, authentic in steps:
        top = window.highest if window.highest is not None else 0
        counter = max(0, top + offset)
        verdict = window.check(counter)
        assert verdict is model.check(counter), (counter, sorted(model.seen)[-5:])
        if verdict is ReplayVerdict.FRESH and authentic:
            window.mark(counter)
            model.seen.add(counter)


@settings(max_examples=100)
@given(st.permutations(range(300)))
def test_any_order_within_the_window_is_accepted_once(order: list[int]) -> None:
    window = ReplayWindow(8)  # 448 counters: all of these fit
    for counter in order:
        assert window.check(counter) is ReplayVerdict.FRESH
        window.mark(counter)
    assert all(window.check(c) is ReplayVerdict.REPLAYED for c in range(300))


def test_large_jumps_clear_the_ring() -> None:
    window = ReplayWindow(4)
    window.mark(5)
    window.mark(10_000)
    assert window.check(5) is ReplayVerdict.TOO_OLD
    # Counters just behind the new top share ring words with 5's old word: they must be clear.
    assert window.check(10_000 - 1) is ReplayVerdict.FRESH
    assert window.check(10_000 - window.size + 1) is ReplayVerdict.FRESH
    assert window.check(10_000 - window.size) is ReplayVerdict.TOO_OLD
    assert window.check(10_000) is ReplayVerdict.REPLAYED
    assert window.check(2**64 - 1) is ReplayVerdict.FRESH


def test_a_window_needs_slack() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(1)
