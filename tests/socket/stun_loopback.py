"""The STUN server model served on real loopback sockets: UDP on its four RFC 5780 addresses
(127.0.0.1 and 127.0.0.2, two ports) and STUN over TCP on the primary."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from node.proto import stun
from tests.fakes.stun_server import Endpoint, StunServerModel

PRIMARY_IP = ipaddress.IPv4Address("127.0.0.1")
ALTERNATE_IP = ipaddress.IPv4Address("127.0.0.2")


def _bound(ip: ipaddress.IPv4Address, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((str(ip), port))
    return sock


class _Answer(asyncio.DatagramProtocol):
    def __init__(self, server: LoopbackStunServer, address: Endpoint) -> None:
        self.server = server
        self.address = address

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        src = (ipaddress.ip_address(str(addr[0])), int(addr[1]))
        model = self.server.model
        assert model is not None
        for answer in model.receive(data, src, self.address, 0.0):
            self.server.transports[answer.src].sendto(answer.data, (str(answer.dst[0]), answer.dst[1]))


class LoopbackStunServer:
    """``async with LoopbackStunServer(udp=True, tcp=True, **faults) as server:`` then
    ``server.label`` is "127.0.0.1:PORT"."""

    def __init__(self, *, udp: bool = True, tcp: bool = True, **faults: bool) -> None:
        self._udp, self._tcp, self._faults = udp, tcp, faults
        self.model: StunServerModel | None = None
        self.transports: dict[Endpoint, asyncio.DatagramTransport] = {}
        self._stack = AsyncExitStack()
        self.port = 0

    @property
    def label(self) -> str:
        return f"{PRIMARY_IP}:{self.port}"

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        # Same port on both addresses: take a free one on the primary, then the alternate's.
        primary = _bound(PRIMARY_IP, 0)
        self.port = primary.getsockname()[1]
        alt_primary = _bound(PRIMARY_IP, 0)
        alt_port = alt_primary.getsockname()[1]
        sockets = {
            (PRIMARY_IP, self.port): primary,
            (PRIMARY_IP, alt_port): alt_primary,
            (ALTERNATE_IP, self.port): _bound(ALTERNATE_IP, self.port),
            (ALTERNATE_IP, alt_port): _bound(ALTERNATE_IP, alt_port),
        }
        self.model = StunServerModel((PRIMARY_IP, self.port), (ALTERNATE_IP, alt_port), **self._faults)
        async with AsyncExitStack() as stack:
            for address, sock in sockets.items():
                if not self._udp:
                    sock.close()  # keeps nothing listening: ICMP unreachable, as a blocked path
                    continue
                transport, _ = await loop.create_datagram_endpoint(
                    lambda a=address: _Answer(self, a),  # type: ignore[misc]
                    sock=sock,
                )
                self.transports[address] = transport
                stack.callback(transport.close)
            if self._tcp:
                server = await asyncio.start_server(self._serve_tcp, str(PRIMARY_IP), self.port)
                stack.push_async_callback(server.wait_closed)
                stack.callback(server.close)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = stun.StreamFramer()
        peer = writer.get_extra_info("peername")
        src = (ipaddress.ip_address(peer[0]), int(peer[1]))
        try:
            while data := await reader.read(4096):
                framer.feed(data)
                while (frame := framer.next_frame()) is not None:
                    assert isinstance(frame, stun.StunFrame) and self.model is not None
                    for answer in self.model.receive(frame.raw, src, (PRIMARY_IP, self.port), 0.0):
                        writer.write(answer.data)
                    await writer.drain()
        except (ConnectionError, stun.StunDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
