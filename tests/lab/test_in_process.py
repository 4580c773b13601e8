"""Code runs inside a lab host in-process (sockets made in its namespace) and as a subprocess."""

from __future__ import annotations

import asyncio

import pytest

from netlink.lab import probe
from netlink.lab.builder import Lab

pytestmark = pytest.mark.lab


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait((data, addr))


async def test_asyncio_endpoints_on_lab_sockets(nat_lab: Lab) -> None:
    """A socket made inside a namespace keeps it, so asyncio transports can run on it."""
    loop = asyncio.get_running_loop()
    server_sock = nat_lab.socket("srv", bind=("203.0.113.10", probe.PORT_2 + 100))
    host_sock = nat_lab.socket("O1", bind=(str(nat_lab.host("O1").address), 0))
    server_sock.setblocking(False)
    host_sock.setblocking(False)
    server_t, server = await loop.create_datagram_endpoint(_Collect, sock=server_sock)
    host_t, _ = await loop.create_datagram_endpoint(_Collect, sock=host_sock)
    try:
        host_t.sendto(b"from O1", ("203.0.113.10", probe.PORT_2 + 100))
        async with asyncio.timeout(2):
            data, addr = await server.got.get()
        assert data == b"from O1"
        assert addr[0] == str(nat_lab.host("O1").address)
    finally:
        host_t.close()
        server_t.close()


def test_subprocess_runs_inside_the_host(nat_lab: Lab) -> None:
    done = nat_lab.run("B1", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
    assert done.returncode == 0
    assert f"{nat_lab.host('B1').address}/24" in done.stdout.decode()
    assert nat_lab.command("B1", ["true"])[:4] == ["ip", "netns", "exec", nat_lab.netns_of("B1")]
