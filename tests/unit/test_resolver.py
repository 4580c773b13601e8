"""node.transports.resolver: lookups on a few daemon threads, given up at once by a caller that leaves.

The lookups here are stand-ins for getaddrinfo that block until the test releases them, since a
real slow DNS needs a network namespace (tests/adversarial/test_hostile_config.py has one)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from node.os_errors import os_reason
from node.transports import resolver


class Blocking:
    """A lookup that blocks until released, and records who ran and how many at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.two_running = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.hosts: list[str] = []

    def __call__(self, host: str, port: int, family: int, socktype: int) -> list[tuple[Any, ...]]:
        with self.lock:
            self.hosts.append(host)
            self.running += 1
            self.most = max(self.most, self.running)
            if self.running == 2:
                self.two_running.set()
        try:
            if host.startswith("slow") and not self.release.wait(30):
                raise AssertionError("never released")
            if host.startswith("bad"):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET, socktype, 0, "", ("192.0.2.1", port))]
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def blocking() -> Iterator[Blocking]:
    lookup = Blocking()
    yield lookup
    lookup.release.set()  # the pool's threads are daemons; never leave one blocked


async def test_the_real_lookup_answers_from_the_hosts_file() -> None:
    async with asyncio.timeout(10):
        infos = await resolver.getaddrinfo(
            "localhost", 3478, family=socket.AF_INET, socktype=socket.SOCK_DGRAM
        )
    assert infos[0][4] == ("127.0.0.1", 3478)


async def test_at_most_threads_lookups_run_at_once(blocking: Blocking) -> None:
    pool = resolver.ResolverPool(2, blocking)
    async with asyncio.TaskGroup() as tasks:
        jobs = [tasks.create_task(pool.getaddrinfo(f"slow{i}", 1)) for i in range(6)]
        assert await asyncio.to_thread(blocking.two_running.wait, 10)
        blocking.release.set()
    assert blocking.most == 2
    assert all(job.result()[0][4] == ("192.0.2.1", 1) for job in jobs)


async def test_a_resolver_error_reaches_the_caller_typed(blocking: Blocking) -> None:
    pool = resolver.ResolverPool(1, blocking)
    with pytest.raises(socket.gaierror) as info:
        await pool.getaddrinfo("bad.example", 1)
    assert os_reason(info.value) == "Name or service not known (EAI_NONAME)"


@pytest.mark.parametrize("name", ["nowhere.invalid", "X.Invalid.", "invalid"])
async def test_names_under_invalid_fail_at_once_and_never_reach_a_lookup(name: str) -> None:
    """RFC 6761 §6.4: an immediate negative answer, and no DNS query leaves the machine."""
    asked: list[str] = []

    def lookup(host: str, *_: object) -> list[resolver.AddrInfo]:
        asked.append(host)
        return []

    pool = resolver.ResolverPool(1, lookup)
    with pytest.raises(socket.gaierror) as info:
        await pool.getaddrinfo(name, 3478)
    assert info.value.errno == socket.EAI_NONAME
    assert asked == []


async def test_a_caller_leaves_a_blocked_lookup_and_its_queued_one_is_skipped(blocking: Blocking) -> None:
    pool = resolver.ResolverPool(1, blocking)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await pool.getaddrinfo("slow", 1)  # the only thread blocks in it
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await pool.getaddrinfo("queued", 1)  # waits behind it; its caller leaves
    blocking.release.set()
    async with asyncio.timeout(10):
        assert await pool.getaddrinfo("after", 1)
    assert blocking.hosts == ["slow", "after"]


def test_an_answer_for_a_closed_loop_is_dropped(blocking: Blocking) -> None:
    pool = resolver.ResolverPool(1, blocking)

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pool.getaddrinfo("slow", 1)

    asyncio.run(give_up())  # the loop closes while the thread still blocks
    blocking.release.set()
    assert asyncio.run(pool.getaddrinfo("after", 1))  # the thread lived on
