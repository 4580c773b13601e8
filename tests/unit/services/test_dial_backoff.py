"""The wait between redials of a static peer or an introducer link (``Backoff``): exponential
after a failed dial, and exactly until the remote's breaker half-opens after a dial its open
breaker refused."""

from __future__ import annotations

from node.proto.vocabulary import TransportReason
from node.services.coordinator.dialing import Backoff
from node.transports.base import BreakerOpenError, TransportPeerError

REFUSED = TransportPeerError(TransportReason.CONNECT_FAILED, "127.0.0.1:9: Connection refused (ECONNREFUSED)")


def test_failed_dials_wait_exponentially_up_to_the_ceiling_and_reset_after_a_success() -> None:
    backoff = Backoff(0.5, 30.0)
    assert [backoff.after(REFUSED) for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    backoff.reset()
    assert backoff.after(REFUSED) == 0.5


def test_an_open_breaker_is_waited_out_exactly_and_does_not_grow_the_backoff() -> None:
    backoff = Backoff(0.5, 30.0)
    for _ in range(5):  # 0.5 .. 8 s: the remote's breaker opened on the fifth failure
        backoff.after(REFUSED)
    # The next exponential wait would be 16 s and then 30 s; the breaker half-opens in 12.5 s.
    assert backoff.after(BreakerOpenError("127.0.0.1:9 failed too often", 12.5)) == 12.5
    assert backoff.after(REFUSED) == 16  # the trial failed: back on the exponential schedule


def test_a_breaker_whose_trial_is_under_way_still_costs_the_first_wait() -> None:
    """Half-open with its one trial taken: there is no deadline (retry in 0 s), and a loop that
    slept 0 would spin on the refusals until the trial ends."""
    backoff = Backoff(0.5, 30.0)
    assert backoff.after(BreakerOpenError("127.0.0.1:9 failed too often", 0.0)) == 0.5
