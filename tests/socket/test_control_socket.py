"""The control socket over a real unix socket, in-process."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from node.cli import control_client
from node.errors import LocalError
from node.paths import CONTROL_SOCKET_NAME
from node.services import control
from node.services.control import ErrorCode
from tests.support.nodeproc import cli, control_exchange
from tests.support.tlsnodes import eventually


def _commands() -> control.Commands:
    return {"status": lambda: {"ok": True}}


def _error(reply: bytes) -> tuple[str, str]:
    doc = json.loads(reply)
    return doc["error"]["code"], doc["error"]["message"]


@contextmanager
def _idle_clients(path: Path, n: int) -> Iterator[list[socket.socket]]:
    clients = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(s)
            s.connect(str(path))
        yield clients
    finally:
        for s in clients:
            s.close()


async def test_request_reply_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    async with control.ControlServer(path, _commands()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reply = await asyncio.to_thread(control_client.request, path, "status")
        assert reply == {"ok": True}
        with pytest.raises(control_client.Refused) as refused:
            await asyncio.to_thread(control_client.request, path, "reboot")
        assert refused.value.code is ErrorCode.UNKNOWN_COMMAND
        assert "'reboot'" in refused.value.detail
    assert not path.exists()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"not json\n", ErrorCode.BAD_REQUEST),
        (b'{"command": 3}\n', ErrorCode.BAD_REQUEST),
        (b'["status"]\n', ErrorCode.BAD_REQUEST),
        (b"\xff\xfe\x00\x01binary\x80\n", ErrorCode.BAD_REQUEST),
        # Under the size cap, yet json recurses once per bracket: a RecursionError in the handler.
        (b"[" * 60000 + b"\n", ErrorCode.BAD_REQUEST),
        (b'{"command": ' * 5000 + b"\n", ErrorCode.BAD_REQUEST),
        (b"x" * (control.MAX_REQUEST_BYTES + 10), ErrorCode.REQUEST_TOO_LARGE),
        (b" " * (control.MAX_REQUEST_BYTES + 1) + b"\n", ErrorCode.REQUEST_TOO_LARGE),
    ],
    ids=[
        "text",
        "command-not-string",
        "not-object",
        "binary",
        "nested-brackets",
        "nested-objects",
        "oversize",
        "oversize-line",
    ],
)
async def test_bad_requests_get_a_typed_error_and_do_not_hurt_the_server(
    tmp_path: Path, payload: bytes, code: ErrorCode
) -> None:
    path = tmp_path / "control.sock"
    async with control.ControlServer(path, _commands()) as server:
        got, message = _error(await asyncio.to_thread(control_exchange, path, payload))
        assert got == code
        assert message
        assert await asyncio.to_thread(control_client.request, path, "status") == {"ok": True}
        view = server.status()
        assert view.errors == {code.value: 1}
        assert view.served == 1
        assert view.faults == {}


async def test_a_request_ended_by_eof_instead_of_newline_is_answered(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    async with control.ControlServer(path, _commands()):
        assert json.loads(await asyncio.to_thread(control_exchange, path, b'{"command": "status"}')) == {
            "ok": True
        }


async def test_half_a_line_then_silence_times_out_with_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "CLIENT_TIMEOUT_S", 0.2)
    path = tmp_path / "control.sock"
    async with control.ControlServer(path, _commands()) as server:
        got, message = _error(await asyncio.to_thread(control_exchange, path, b'{"comm', False))
        assert got == ErrorCode.TIMEOUT
        assert "0.2 s" in message
        assert server.status().errors == {"timeout": 1}


async def test_clients_over_the_cap_are_refused_at_once_with_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    async with control.ControlServer(path, _commands(), max_clients=2) as server:
        with _idle_clients(path, 2):
            await eventually(lambda: server.status().clients == 2)
            # Refused without waiting: the reply comes although these clients hold their slots.
            got, _ = _error(await asyncio.to_thread(control_exchange, path, b""))
            assert got == ErrorCode.TOO_MANY_CLIENTS
            with pytest.raises(control_client.Refused) as refused:
                await asyncio.to_thread(control_client.request, path, "status", busy_retry=0)
            assert refused.value.code is ErrorCode.TOO_MANY_CLIENTS
            assert server.status().refused == 2
        await eventually(lambda: server.status().clients == 0)
        assert await asyncio.to_thread(control_client.request, path, "status", busy_retry=0) == {"ok": True}


async def test_a_busy_node_is_asked_again_until_a_slot_frees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "CLIENT_TIMEOUT_S", 0.5)  # the idle client's slot frees by itself
    path = tmp_path / "control.sock"
    async with control.ControlServer(path, _commands(), max_clients=1) as server:
        with _idle_clients(path, 1):
            await eventually(lambda: server.status().clients == 1)
            assert await asyncio.to_thread(control_client.request, path, "status") == {"ok": True}
        assert server.status().refused >= 1
        assert server.status().errors == {"timeout": 1}


class _Unavailable(LocalError):
    pass


def _failing_commands() -> control.Commands:
    def unavailable() -> dict[str, Any]:
        raise _Unavailable("the tcp_tls service is stopping")

    def bug() -> dict[str, Any]:
        return {"n": 1 // 0}

    return {
        "status": lambda: {"ok": True},
        "unavailable": unavailable,
        "bug": bug,
        "unserialisable": lambda: {"set": {1, 2}},  # fails in the handler, after the command
    }


async def test_a_command_that_fails_or_faults_closes_only_its_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "control.sock"
    async with control.ControlServer(path, _failing_commands()) as server:
        with pytest.raises(control_client.Refused) as refused:
            await asyncio.to_thread(control_client.request, path, "unavailable")
        assert refused.value.code is ErrorCode.COMMAND_FAILED
        assert refused.value.detail == "unavailable failed: the tcp_tls service is stopping"
        assert server.status().faults == {}  # a typed error is an answer, not a fault

        with pytest.raises(control_client.Refused) as refused:
            await asyncio.to_thread(control_client.request, path, "bug")
        assert refused.value.code is ErrorCode.COMMAND_FAILED
        assert server.status().faults == {"ZeroDivisionError": 1}

        # A fault in the connection's own handling: the wall closes this client only.
        with pytest.raises(control.ControlError, match="closed the connection without a reply"):
            await asyncio.to_thread(control_client.request, path, "unserialisable")
        assert server.status().faults == {"TypeError": 1, "ZeroDivisionError": 1}

        assert await asyncio.to_thread(control_client.request, path, "status") == {"ok": True}
    faults = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.exc_info[1].__class__.__name__ for r in faults if r.exc_info] == [
        "ZeroDivisionError",
        "TypeError",
    ]


async def test_closing_with_clients_connected_is_quiet_and_prompt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "control.sock"
    server = control.ControlServer(path, _commands(), max_clients=4)
    async with server:
        with _idle_clients(path, 6) as clients:
            await eventually(lambda: server.status().clients == 4)
            clients[0].sendall(b'{"comm')
    # Closing did not wait for the idle clients' CLIENT_TIMEOUT_S: none was answered.
    assert server.status().clients == 0
    assert server.status().errors == {}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not path.exists()


async def test_stale_socket_is_replaced_and_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed node leaves behind
    async with control.ControlServer(path, _commands()) as server:
        with pytest.raises(control.AlreadyRunning):
            async with control.ControlServer(path, _commands()):
                pass
        assert await asyncio.to_thread(control_client.request, path, "status") == {"ok": True}
        # The other node's probe connected and left without a word: not a bad request.
        assert server.status().errors == {}


def test_request_without_a_server_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(control_client.NotRunning):
        control_client.request(tmp_path / "none.sock", "status")


@pytest.mark.parametrize(
    ("commands", "code", "line"),
    [
        ({}, 2, "bitcraps-node: the node does not know this command (an older node?): no command 'status'\n"),
        (
            _failing_commands() | {"status": _failing_commands()["unavailable"]},
            1,
            "bitcraps-node: the node could not answer: status failed: the tcp_tls service is stopping\n",
        ),
    ],
    ids=["unknown-command", "command-failed"],
)
async def test_the_cli_prints_one_line_and_its_exit_code_for_a_typed_error(
    tmp_path: Path, commands: control.Commands, code: int, line: str
) -> None:
    async with control.ControlServer(tmp_path / CONTROL_SOCKET_NAME, commands):
        done = await asyncio.to_thread(cli, "status", "--runtime-dir", str(tmp_path))
    assert (done.returncode, done.stdout) == (code, "")
    assert done.stderr == line
