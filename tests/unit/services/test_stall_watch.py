"""StallWatch: a send stuck on a path's backpressure is interrupted after the bound and named;
sends that keep finishing are never interrupted however long the flush runs (real asyncio)."""

from __future__ import annotations

import asyncio

import pytest

from node.proto.coordinator import PathKey
from node.proto.vocabulary import TransportKind
from node.services.coordinator.stall import StallWatch

TLS = PathKey(TransportKind.TCP_TLS, "198.51.100.2", "203.0.113.10:7947")
BOUND = 0.05


async def test_a_send_that_drains_nothing_is_interrupted_and_its_path_named() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()  # a socket buffer that never drains
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as guard:
            watch = StallWatch(loop, guard, BOUND)
            try:
                watch.begin(TLS)
                await never
            finally:
                watch.close()
    assert watch.stalled == TLS


async def test_sends_that_finish_are_never_interrupted_however_long_the_flush() -> None:
    loop = asyncio.get_running_loop()
    # Real time: each send must stay far inside the bound even when a loaded machine stretches
    # its 30 ms sleep (a 5 ms one against 50 ms failed in CI); 40 of them outlast the bound.
    bound = 1.0
    async with asyncio.timeout(None) as guard:
        watch = StallWatch(loop, guard, bound)
        try:
            for _ in range(40):
                watch.begin(TLS)
                await asyncio.sleep(bound / 33)
                watch.end()
        finally:
            watch.close()
    assert watch.stalled is None


async def test_time_between_sends_does_not_count_as_a_stall() -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as guard:
        watch = StallWatch(loop, guard, BOUND)
        try:
            await asyncio.sleep(BOUND * 3)  # the flush does other work, no send waits
            watch.begin(TLS)
            await asyncio.sleep(0)
            watch.end()
        finally:
            watch.close()
    assert watch.stalled is None
