"""The session table's lazy deadline heap against a plain dict model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.proto.session.deadlines import Deadlines

OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "discard", "pop"]),
        st.integers(0, 5),
        st.none() | st.floats(0.0, 100.0, allow_nan=False),
    ),
    max_size=200,
)


@given(OPS)
def test_matches_a_model_that_keeps_the_earlier_deadline(ops: list[tuple[str, int, float | None]]) -> None:
    heap: Deadlines[int] = Deadlines()
    model: dict[int, float] = {}
    for op, key, value in ops:
        if op == "set":
            heap.set(key, value)
            if value is None:
                model.pop(key, None)
            else:
                model[key] = min(model.get(key, value), value)
        elif op == "discard":
            heap.discard(key)
            model.pop(key, None)
        else:
            now = value if value is not None else 50.0
            due = sorted((d, k) for k, d in model.items() if d <= now)
            assert [d for d, _ in due] == sorted(model[k] for k in heap.pop_due(now))
            for _, k in due:
                del model[k]
        assert heap.earliest() == min(model.values(), default=None)
        assert len(heap) == len(model)


def test_a_deadline_pushed_later_again_and_again_does_not_grow_the_heap() -> None:
    heap: Deadlines[str] = Deadlines()
    for i in range(10_000):
        heap.set("consent", 30.0 + i)
        heap.set(f"k{i % 10}", 100.0 - i * 0.001)  # moving earlier: pushes, then rebuilds
    assert len(heap._heap) <= 2 * len(heap) + 64 + 1
    assert heap.pop_due(30.0) == ["consent"]
