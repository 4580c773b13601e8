"""The control socket over a real unix socket, in-process."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from pathlib import Path

import pytest

from node import control


def _commands() -> control.Commands:
    return {"status": lambda: {"ok": True}}


async def test_request_reply_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    async with control.ControlServer(path, _commands()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reply = await asyncio.to_thread(control.request, path, "status")
        assert reply == {"ok": True}
        unknown = await asyncio.to_thread(control.request, path, "reboot")
        assert "unknown command" in unknown["error"]
    assert not path.exists()


async def test_bad_and_oversize_requests_do_not_hurt_the_server(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"

    def raw(payload: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    async with control.ControlServer(path, _commands()):
        assert "bad request" in json.loads(await asyncio.to_thread(raw, b"not json\n"))["error"]
        assert "bad request" in json.loads(await asyncio.to_thread(raw, b'{"command": 3}\n'))["error"]
        assert await asyncio.to_thread(raw, b"x" * (control.MAX_REQUEST_BYTES + 10)) == b""
        assert await asyncio.to_thread(control.request, path, "status") == {"ok": True}


async def test_stale_socket_is_replaced_and_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed node leaves behind
    async with control.ControlServer(path, _commands()):
        with pytest.raises(control.AlreadyRunning):
            async with control.ControlServer(path, _commands()):
                pass
        assert await asyncio.to_thread(control.request, path, "status") == {"ok": True}


def test_request_without_a_server_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(control.NotRunning):
        control.request(tmp_path / "none.sock", "status")
