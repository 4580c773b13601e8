"""``bitcraps-node turn`` from behind the lab's NATs against coturn: JSON keys and exit codes."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from node.proto.turn.uri import TurnTransport
from tests.lab.conftest import LabFactory
from tests.lab.turn_helpers import ECHO_PORT, connection, coturn

pytestmark = pytest.mark.lab


def _node_cli() -> list[str]:
    found = shutil.which("bitcraps-node", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "node.cli"]


class EchoThread:
    """A blocking UDP echo on a lab host, in a thread (the CLI under test blocks the loop)."""

    def __init__(self, lab: Lab, host: str) -> None:
        self.address = f"{lab.host(host).address}:{ECHO_PORT}"
        self.sock = lab.socket(host, socket.SOCK_DGRAM, bind=(str(lab.host(host).address), ECHO_PORT))
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.sock.sendto(data, addr)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def echo(nat_lab: Lab) -> Iterator[EchoThread]:
    server = EchoThread(nat_lab, "O1")
    try:
        yield server
    finally:
        server.close()


def turn(
    lab: Lab, host: str, *extra: str, password: str | None = None, transport: str = "udp"
) -> tuple[int, str, str]:
    config = coturn(lab)
    port = config.tls_port if transport == "tls" else config.port
    argv = [
        *_node_cli(),
        "turn",
        "--server",
        f"{config.primary}:{port}",
        "--user",
        config.username,
        "--password",
        config.password if password is None else password,
        "--transport",
        transport,
        "--ca",
        str(lab.workdir / "turn-cert.pem"),
        *extra,
    ]
    done = lab.run(host, argv, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_turn_prints_the_relay_and_talks_to_a_peer(nat_lab: Lab, echo: EchoThread, transport: str) -> None:
    nat_lab.set_nat("A", NatBehaviour.SYMMETRIC)
    extra = ("--peer", echo.address, "--count", "3", "--json")
    code, out, err = turn(nat_lab, "A1", *extra, transport=transport)
    assert code == 0, err
    document = json.loads(out)
    assert document["relayed_address"].startswith(f"{coturn(nat_lab).primary}:")
    assert document["mapped_address"].startswith(f"{nat_lab.topology.router('A').wan}:")
    assert document["transport"] == transport
    assert document["lifetime_s"] > 0
    assert (document["sent"], document["received"]) == (3, 3)
    assert document["rtt_ms"] > 0
    assert err == ""


def test_wrong_password_exits_3(nat_lab: Lab) -> None:
    code, out, err = turn(nat_lab, "A1", "--json", password="wrong")
    assert (code, out) == (3, "")
    assert err.count("\n") == 1 and "authentication failed" in err


def test_udp_blocked_exits_4(nat_lab: Lab) -> None:
    nat_lab.set_nat("A", NatBehaviour.UDP_BLOCKED)
    try:
        code, out, err = turn(nat_lab, "A1", "--timeout", "3")
    finally:
        nat_lab.set_nat("A", NatBehaviour.PORT_RESTRICTED)
    assert (code, out) == (4, "")
    assert err.count("\n") == 1


def test_a_silent_peer_exits_6(nat_lab: Lab) -> None:
    code, out, err = turn(nat_lab, "A1", "--peer", "203.0.113.12:9", "--count", "1", "--json")
    assert code == 6
    assert json.loads(out)["received"] == 0
    assert err.count("\n") == 1


def test_bad_usage_exits_2(nat_lab: Lab) -> None:
    code, out, _ = turn(nat_lab, "A1", "--peer", "not-an-address")
    assert (code, out) == (2, "")


async def test_quota_refusal_exits_5(lab_factory: LabFactory) -> None:
    lab = lab_factory()
    lab.start_coturn(replace(coturn(lab), user_quota=1))
    async with connection(lab, "B1", TurnTransport.UDP):  # takes the user's only allocation
        code, out, err = turn(lab, "A1", "--json")
    assert (code, out) == (5, "")
    assert "486" in err
