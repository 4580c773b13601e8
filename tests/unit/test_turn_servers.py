"""Server order and per-server breakers for TURN."""

from __future__ import annotations

import pytest

from node.proto.breaker import CircuitBreaker
from node.proto.turn.errors import TurnUsageError
from node.proto.turn.servers import ServerPool


def pool() -> ServerPool[str]:
    return ServerPool(["a", "b"], lambda: CircuitBreaker(failure_threshold=2, recovery_timeout=10.0))


def test_servers_are_tried_in_order_and_a_broken_one_is_skipped() -> None:
    p = pool()
    assert p.pick(0.0) == "a"
    p.failed("a", 0.0)
    assert p.pick(0.0) == "a"  # one failure: still closed
    p.failed("a", 0.0)
    assert p.pick(1.0) == "b"  # open: skipped
    p.succeeded("b", 1.0)
    assert p.pick(2.0) == "b"
    p.failed("b", 2.0)
    assert p.pick(2.0) == "b"
    p.failed("b", 2.0)
    assert p.pick(3.0) is None
    assert p.next_retry(3.0) == 10.0
    assert p.pick(10.0) == "a"  # half-open trial


def test_an_alternate_goes_first_once() -> None:
    p = pool()
    p.redirect("alt")
    assert p.pick(0.0) == "alt"
    p.failed("alt", 0.0)  # not a configured server: no breaker to record on
    assert p.pick(0.0) == "a"
    assert p.next_retry(0.0) is None


def test_an_empty_pool_is_a_bug() -> None:
    with pytest.raises(TurnUsageError):
        ServerPool([], CircuitBreaker)
