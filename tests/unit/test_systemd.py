import asyncio
import os
import socket
from pathlib import Path

import pytest

from node.services.systemd import Notifier, watchdog_interval


def test_watchdog_interval_is_half_of_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}, 42) == 2.0


def test_watchdog_off_without_usec_or_for_another_pid() -> None:
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "41"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "42"}, 42) == 0.0005


@pytest.fixture
def listener(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    return sock


def _received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_messages_reach_the_notify_socket(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.getsockname())
    n = Notifier()
    assert n.enabled
    n.ready("peer abc;\nlistening")
    n.status("2 peers")
    n.stopping()
    assert _received(listener) == ["READY=1\nSTATUS=peer abc; listening", "STATUS=2 peers", "STOPPING=1"]
    listener.close()


def test_without_notify_socket_nothing_is_sent(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    n = Notifier()
    assert not n.enabled
    n.ready("x")
    n.watchdog()
    assert _received(listener) == []
    listener.close()


async def test_watchdog_task_pings_only_for_our_pid(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.getsockname())
    monkeypatch.setenv("WATCHDOG_USEC", "20000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    await asyncio.wait_for(Notifier().run_watchdog(), 5)  # returns at once: not our watchdog
    assert _received(listener) == []

    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    assert n.watchdog_interval == 0.01
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(n.run_watchdog())
        async with asyncio.timeout(10):  # a hang guard, not a timing check
            first = await asyncio.get_running_loop().sock_recv(listener, 4096)
        task.cancel()
    assert first == b"WATCHDOG=1"
    assert set(_received(listener)) <= {"WATCHDOG=1"}
    listener.close()
