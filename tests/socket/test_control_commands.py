"""The control socket's command kinds over a real unix socket, in-process: arguments read into
typed values, async commands under a timeout, and streams that are written as they come and never
queue for a client that does not read."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from node.cli import control_client
from node.errors import LocalError
from node.services import control
from node.services.control import Command, ErrorCode
from node.services.control_args import ArgumentError
from tests.support.nodeproc import control_exchange
from tests.support.tlsnodes import eventually


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True)
class EchoArgs:
    text: str
    times: int = 1
    colour: Colour = Colour.RED
    ratio: float | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.times < 1:
            raise ArgumentError("times", "must be at least 1")


def _echo(args: EchoArgs) -> dict[str, Any]:
    return {
        "text": args.text * args.times,
        "colour": args.colour.value,
        "ratio": args.ratio,
        "tags": list(args.tags),
        "types": [type(args.times).__name__, type(args.ratio).__name__],
    }


def _reply(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    out = control_exchange(path, json.dumps(request).encode() + b"\n")
    doc: dict[str, Any] = json.loads(out)
    return doc


def _code(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["error"]["code"], doc["error"]["message"]


async def test_arguments_are_read_into_typed_values(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    commands: control.Commands = {"echo": Command(_echo, args=EchoArgs), "status": lambda: {"ok": True}}
    async with control.ControlServer(path, commands):
        args = {"text": "ab", "times": 2, "colour": "blue", "ratio": 1, "tags": ["x"]}
        reply = await asyncio.to_thread(control_client.request, path, "echo", args=args)
        assert reply == {
            "text": "abab",
            "colour": "blue",
            "ratio": 1.0,
            "tags": ["x"],
            "types": ["int", "float"],
        }
        # Defaults, and `status` with or without an empty args object, as before.
        assert (await asyncio.to_thread(_reply, path, {"command": "echo", "args": {"text": "z"}}))[
            "colour"
        ] == "red"
        assert await asyncio.to_thread(_reply, path, {"command": "status"}) == {"ok": True}
        assert await asyncio.to_thread(_reply, path, {"command": "status", "args": {}}) == {"ok": True}


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        ({"command": "echo"}, "argument 'text' is required"),
        ({"command": "echo", "args": {"text": 3}}, "argument 'text' must be a string, got a number"),
        ({"command": "echo", "args": {"text": "a", "times": "2"}}, "argument 'times' must be an integer"),
        ({"command": "echo", "args": {"text": "a", "times": True}}, "argument 'times' must be an integer"),
        ({"command": "echo", "args": {"text": "a", "times": 0}}, "argument 'times' must be at least 1"),
        (
            {"command": "echo", "args": {"text": "a", "colour": "green"}},
            "argument 'colour' must be one of 'red', 'blue'",
        ),
        ({"command": "echo", "args": {"text": "a", "ratio": "NaN"}}, "argument 'ratio' must be a number"),
        ({"command": "echo", "args": {"text": "a", "tags": ["x", 1]}}, "argument 'tags[1]' must be a string"),
        (
            {"command": "echo", "args": {"text": "a", "tags": "x"}},
            "argument 'tags' must be a list of strings",
        ),
        ({"command": "echo", "args": {"text": "a", "colr": "red"}}, "argument 'colr' is not known"),
        ({"command": "echo", "args": ["text"]}, "'args' must be a JSON object, got an array"),
        ({"command": "status", "args": {"verbose": True}}, "argument 'verbose' is not known"),
        ({"command": "status", "args": 1}, "'args' must be a JSON object"),
    ],
)
async def test_a_bad_argument_is_bad_request_naming_it(
    tmp_path: Path, request_: dict[str, Any], words: str
) -> None:
    path = tmp_path / "c.sock"
    commands: control.Commands = {"echo": Command(_echo, args=EchoArgs), "status": lambda: {"ok": True}}
    async with control.ControlServer(path, commands) as server:
        code, message = _code(await asyncio.to_thread(_reply, path, request_))
        assert code == ErrorCode.BAD_REQUEST and words in message
        assert server.status().errors == {"bad_request": 1}
        assert await asyncio.to_thread(control_client.request, path, "status") == {"ok": True}


def test_an_unreadable_argument_type_fails_at_registration() -> None:
    @dataclass(frozen=True)
    class Odd:
        when: complex

    with pytest.raises(AssertionError, match=r"Odd\.when"):
        Command(lambda args: {}, args=Odd)


async def test_async_commands_run_while_others_are_served(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    release = asyncio.Event()

    async def slow() -> dict[str, Any]:
        await release.wait()
        return {"done": True}

    async def failing() -> dict[str, Any]:
        raise LocalError("the peer table is closed")

    async def faulty() -> dict[str, Any]:
        raise RuntimeError("a bug")

    commands: control.Commands = {
        "slow": Command(slow),
        "failing": Command(failing),
        "faulty": Command(faulty),
        "status": lambda: {"ok": True},
    }
    async with control.ControlServer(path, commands) as server:
        pending = asyncio.create_task(asyncio.to_thread(control_client.request, path, "slow", 30.0))
        await eventually(lambda: server.status().clients == 1)
        # The loop is not held by the waiting command: another client is answered meanwhile.
        assert await asyncio.to_thread(control_client.request, path, "status") == {"ok": True}
        release.set()
        assert await pending == {"done": True}
        with pytest.raises(control_client.Refused) as refused:
            await asyncio.to_thread(control_client.request, path, "failing")
        assert refused.value.code is ErrorCode.COMMAND_FAILED
        assert "the peer table is closed" in refused.value.detail
        with pytest.raises(control_client.Refused) as refused:
            await asyncio.to_thread(control_client.request, path, "faulty")
        assert refused.value.code is ErrorCode.COMMAND_FAILED
        assert server.status().faults == {"RuntimeError": 1}


async def test_an_async_command_over_its_timeout_is_told_so(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    cancelled = asyncio.Event()

    async def hang() -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return {}

    async with control.ControlServer(path, {"hang": Command(hang, timeout_s=0.2)}) as server:
        with pytest.raises(control_client.Refused) as refused:
            await asyncio.to_thread(control_client.request, path, "hang")
        assert refused.value.code is ErrorCode.COMMAND_TIMEOUT and "0.2 s" in refused.value.detail
        assert cancelled.is_set()
        assert server.status().errors == {"command_timeout": 1}


class Producer:
    """A stream that yields when told to, and records what it produced and whether it was closed."""

    def __init__(self, size: int = 10, endless: bool = False) -> None:
        self.size = size
        self.endless = endless
        self.produced = 0
        self.closed = asyncio.Event()
        self.go = asyncio.Event()

    async def items(self) -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                if not self.endless:
                    await self.go.wait()
                    self.go.clear()
                self.produced += 1
                yield {"n": self.produced, "pad": "x" * self.size}
                if not self.endless and self.produced == 3:
                    return
        finally:
            self.closed.set()


def _read_line(f: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(f.readline())
    return doc


async def test_a_stream_is_written_as_it_comes_and_ends_with_its_items(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    producer = Producer()
    async with control.ControlServer(path, {"events": Command(producer.items)}) as server:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(15)
        s.connect(str(path))
        f = s.makefile("rb")
        s.sendall(b'{"command": "events"}\n')
        for n in (1, 2, 3):
            producer.go.set()  # one item at a time: each is read before the next exists
            assert (await asyncio.to_thread(_read_line, f))["n"] == n
            assert n == 3 or server.status().streams == 1  # after the third, the producer ends
        assert await asyncio.to_thread(f.readline) == b""  # the stream ended: the node closed
        f.close()
        s.close()
        await eventually(lambda: server.status().streams == 0)
        assert producer.closed.is_set() and server.status().served == 1


async def test_the_client_helper_reads_a_stream(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    producer = Producer()
    async with control.ControlServer(path, {"events": Command(producer.items)}):
        producer.go.set()

        def read_all() -> list[int]:
            out = []
            for item in control_client.stream(path, "events"):
                out.append(item["n"])
                asyncio.run_coroutine_threadsafe(_set(producer.go), loop).result()
            return out

        loop = asyncio.get_running_loop()
        assert await asyncio.to_thread(read_all) == [1, 2, 3]


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_a_client_leaving_mid_stream_ends_it_and_its_producer(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    producer = Producer()
    async with control.ControlServer(path, {"events": Command(producer.items)}) as server:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        s.sendall(b'{"command": "events"}\n')
        await eventually(lambda: server.status().streams == 1)
        s.close()  # while the producer waits for its next item: noticed without a write
        await eventually(producer.closed.is_set)
        await eventually(lambda: server.status().streams == 0)
        assert server.status().faults == {}


async def test_a_client_that_does_not_read_loses_its_stream_not_the_nodes_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "STREAM_WRITE_TIMEOUT_S", 0.3)
    path = tmp_path / "c.sock"
    producer = Producer(size=64 * 1024, endless=True)
    async with control.ControlServer(
        path, {"events": Command(producer.items), "status": lambda: {"ok": True}}
    ) as server:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(str(path))
        s.sendall(b'{"command": "events"}\n')  # and never reads
        await eventually(lambda: server.status().streams_slow == 1)
        await eventually(producer.closed.is_set)
        assert server.status().streams == 0
        # Only what fits the socket buffers was produced, one item at a time: never a queue.
        sndbuf = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).getsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF
        )
        assert producer.produced <= sndbuf // (64 * 1024) + 4, producer.produced
        assert await asyncio.to_thread(control_client.request, path, "status") == {"ok": True}
        s.close()


async def test_streams_are_capped_and_leave_room_for_status(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    producers = [Producer() for _ in range(control.MAX_STREAMS + 1)]
    it = iter(producers)
    commands: control.Commands = {"events": Command(lambda: next(it).items()), "status": lambda: {"ok": True}}
    async with control.ControlServer(path, commands) as server:
        clients = []
        try:
            for _ in range(control.MAX_STREAMS):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                clients.append(s)
                s.connect(str(path))
                s.sendall(b'{"command": "events"}\n')
            await eventually(lambda: server.status().streams == control.MAX_STREAMS)
            with pytest.raises(control_client.Refused) as refused:
                await asyncio.to_thread(lambda: list(control_client.stream(path, "events")))
            assert refused.value.code is ErrorCode.TOO_MANY_STREAMS
            assert producers[-1].produced == 0
            assert await asyncio.to_thread(control_client.request, path, "status") == {"ok": True}
        finally:
            for s in clients:
                s.close()
        await eventually(lambda: server.status().streams == 0)


async def test_a_stream_that_fails_ends_with_an_error_line(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    async def broken() -> AsyncIterator[dict[str, Any]]:
        yield {"n": 1}
        raise LocalError("the subscription was dropped")

    async with control.ControlServer(path, {"events": Command(broken)}):
        got: list[dict[str, Any]] = []

        def read() -> None:
            for item in control_client.stream(path, "events"):
                got.append(item)

        with pytest.raises(control_client.Refused) as refused:
            await asyncio.to_thread(read)
        assert got == [{"n": 1}]
        assert refused.value.code is ErrorCode.COMMAND_FAILED
        assert "the subscription was dropped" in refused.value.detail
