"""The per-connection wall: a fault ends its connection, is counted by type, never escapes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from node.transports.isolation import ConnectionIsolation


class Boom(Exception):
    pass


async def test_a_fault_in_one_connection_stays_in_it(caplog: pytest.LogCaptureFixture) -> None:
    wall = ConnectionIsolation("svc")
    closed: list[str] = []

    async def bad() -> int:
        raise Boom("peer bytes made us trip")

    async def good() -> int:
        await asyncio.sleep(0)
        return 7

    with caplog.at_level(logging.ERROR, logger="node.transports.isolation"):
        async with asyncio.TaskGroup() as tasks:  # the service's TaskGroup sees no exception
            failed = tasks.create_task(wall.run(bad(), "connection from x", lambda: closed.append("x")))
            fine = tasks.create_task(wall.run(good(), "connection from y"))
    assert failed.result() is None and fine.result() == 7
    assert closed == ["x"]
    assert wall.snapshot() == {"Boom": 1}
    faults = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(faults) == 1 and "connection from x" in faults[0].getMessage()  # logged once
    assert faults[0].exc_info is not None  # with the traceback: it is a bug to fix


async def test_cancellation_passes_the_wall() -> None:
    wall = ConnectionIsolation("svc")
    task = asyncio.ensure_future(wall.run(asyncio.sleep(10), "idle"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wall.snapshot() == {}


def test_a_synchronous_handler_and_a_close_that_fails_too() -> None:
    wall = ConnectionIsolation("udp")

    def handler(data: bytes) -> int:
        if data == b"bad":
            raise ValueError(data)
        return len(data)

    def broken_close() -> None:
        raise OSError("already gone")

    assert wall.call(handler, "datagram from a", b"good") == 4
    assert wall.call(handler, "datagram from b", b"bad") is None
    assert wall.snapshot() == {"ValueError": 1}

    async def fails() -> None:
        raise KeyError("k")

    assert asyncio.run(wall.run(fails(), "c", broken_close)) is None
    assert wall.snapshot() == {"KeyError": 1, "ValueError": 1}


def test_base_exceptions_that_stop_the_process_are_not_swallowed() -> None:
    wall = ConnectionIsolation("svc")

    def leave() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        wall.call(leave, "x")


def test_a_flood_of_one_fault_logs_its_traceback_once_then_at_powers_of_two(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wall = ConnectionIsolation("udp")

    def handler() -> None:
        raise ValueError("the same bug, again")

    with caplog.at_level(logging.DEBUG, logger="node.transports.isolation"):
        for i in range(1000):
            wall.call(handler, f"datagram {i}")
    lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.exc_info is not None for r in lines] == [True] + [False] * 9  # 1, then 2, 4 ... 512
    assert "512 faults of type ValueError" in lines[-1].getMessage()
    assert wall.snapshot() == {"ValueError": 1000}


async def test_run_later_makes_the_work_only_when_the_task_runs() -> None:
    wall = ConnectionIsolation("svc")
    made: list[str] = []

    async def work() -> str:
        return "done"

    def factory() -> Coroutine[Any, Any, str]:
        made.append("made")
        return work()

    async with asyncio.TaskGroup() as tasks:
        cancelled = tasks.create_task(wall.run_later(factory, "never ran"))
        cancelled.cancel()  # before its first step: the work is never made, so never left unawaited
        ran = tasks.create_task(wall.run_later(factory, "ran"))
    assert cancelled.cancelled() and ran.result() == "done"
    assert made == ["made"]
