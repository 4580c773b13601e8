"""CoreTimer on a real event loop: when the core's handle_timer runs, and how often.

No timing assertions: deadlines are a few milliseconds ahead in loop time, and the tests wait on
events and assert the order and the number of calls (a marker timer at a later deadline says
"that time has passed")."""

from __future__ import annotations

import asyncio

from node.transports.timer import CoreTimer

HANG_GUARD_S = 5.0  # only against a hang: every wait below ends in milliseconds


class Core:
    """A core with one deadline, cleared when handled (as a retransmission or keepalive is)."""

    def __init__(self, log: list[str]) -> None:
        self.deadline: float | None = None
        self.handled = 0
        self.log = log
        self.then: float | None = None  # the next deadline, set by handle_timer

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.handled += 1
        self.log.append("handle")
        self.deadline, self.then = self.then, None


def make(log: list[str]) -> tuple[Core, CoreTimer, asyncio.Event]:
    core = Core(log)
    flushed = asyncio.Event()

    def flush() -> None:
        log.append("flush")
        flushed.set()

    return core, CoreTimer(asyncio.get_running_loop(), core.get_timer, core.handle_timer, flush), flushed


async def passed(at: float, log: list[str], name: str) -> None:
    """Wait until the loop's timers due at ``at`` have run; log ``name`` then."""
    reached = asyncio.Event()

    def mark() -> None:
        log.append(name)
        reached.set()

    asyncio.get_running_loop().call_at(at, mark)
    async with asyncio.timeout(HANG_GUARD_S):
        await reached.wait()


async def test_fires_once_at_the_deadline_then_flushes() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    core, timer, flushed = make(log)
    core.deadline = loop.time() + 0.005
    timer.rearm()
    timer.rearm()  # the same deadline again: still one handle
    assert timer.armed_at == core.deadline
    async with asyncio.timeout(HANG_GUARD_S):
        await flushed.wait()
    await passed(loop.time() + 0.02, log, "later")
    assert log == ["handle", "flush", "later"]
    assert timer.armed_at is None  # the core has no deadline left


async def test_a_deadline_moved_earlier_fires_there_and_not_again_at_the_old_one() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    core, timer, _ = make(log)
    old = core.deadline = loop.time() + 0.05
    timer.rearm()
    core.deadline = loop.time() + 0.005
    timer.rearm()
    await passed(old + 0.005, log, "old deadline")
    assert log == ["handle", "flush", "old deadline"]


async def test_a_deadline_moved_later_is_not_handled_before_it_comes() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    core, timer, flushed = make(log)
    first = core.deadline = loop.time() + 0.005
    timer.rearm()
    core.deadline = first + 0.02
    timer.rearm()  # later: the armed handle stays and re-arms when it fires
    assert timer.armed_at == first
    await passed(first, log, "first deadline")
    async with asyncio.timeout(HANG_GUARD_S):
        await flushed.wait()
    assert log == ["first deadline", "handle", "flush"]
    assert core.handled == 1


async def test_none_disarms() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    core, timer, _ = make(log)
    core.deadline = loop.time() + 0.005
    timer.rearm()
    core.deadline = None
    timer.rearm()
    assert timer.armed_at is None
    await passed(loop.time() + 0.02, log, "after")
    assert log == ["after"]


async def test_close_cancels_and_later_rearms_do_nothing() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    core, timer, _ = make(log)
    core.deadline = loop.time() + 0.005
    timer.rearm()
    timer.close()
    timer.rearm()
    assert timer.armed_at is None
    await passed(loop.time() + 0.02, log, "after")
    assert log == ["after"]


async def test_a_past_deadline_fires_on_the_next_turn_of_the_loop_not_inside_rearm() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    core, timer, flushed = make(log)
    core.deadline = loop.time() - 1.0
    timer.rearm()
    assert log == []
    async with asyncio.timeout(HANG_GUARD_S):
        await flushed.wait()
    assert log == ["handle", "flush"]


async def test_a_flush_that_rearms_from_inside_the_callback_keeps_one_timer_going() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    core = Core(log)
    done = asyncio.Event()

    def flush() -> None:
        log.append("flush")
        if core.handled < 3:
            core.deadline = loop.time() + 0.003
        else:
            done.set()
        timer.rearm()  # as a driver's flush does; the timer's own re-arm then finds it armed

    timer = CoreTimer(loop, core.get_timer, core.handle_timer, flush)
    core.deadline = loop.time() + 0.003
    timer.rearm()
    async with asyncio.timeout(HANG_GUARD_S):
        await done.wait()
    await passed(loop.time() + 0.02, log, "after")
    assert log == ["handle", "flush"] * 3 + ["after"]


async def test_the_core_can_set_its_next_deadline_while_handling_the_timer() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    core, timer, flushed = make(log)
    core.deadline = loop.time() + 0.003
    core.then = core.deadline + 0.005  # handle_timer moves the deadline on
    timer.rearm()
    async with asyncio.timeout(HANG_GUARD_S):
        while core.handled < 2:
            flushed.clear()
            await flushed.wait()
    await passed(loop.time() + 0.02, log, "after")
    assert log == ["handle", "flush", "handle", "flush", "after"]
