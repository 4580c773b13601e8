"""Shared pieces of the TURN lab tests: connections from a lab host and a UDP echo peer."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import replace
from typing import Any

from netlink.lab.builder import Lab
from netlink.lab.coturn import CoturnConfig
from node.proto.stun.transaction import Timing
from node.proto.turn.credentials import Credentials
from node.proto.turn.events import Address
from node.proto.turn.uri import TurnServerAddress, TurnTransport
from node.transports.turn.connection import TurnConnection, tls_context

# Fail fast in the lab (RFC 8489 §6.2.1 lets RTO, Rc and Rm be configured): 0.2 s doubling,
# 4 sends, then 4 RTO: an unreachable server is known in about 2.2 s instead of 39.5 s.
LAB_TIMING = Timing(rto=0.2, rc=4, rm=4)
ECHO_PORT = 7000


def coturn(lab: Lab) -> CoturnConfig:
    config = lab.coturn_config
    assert config is not None
    return config


def server_address(lab: Lab, transport: TurnTransport) -> TurnServerAddress:
    config = coturn(lab)
    port = config.tls_port if transport is TurnTransport.TLS else config.port
    return TurnServerAddress(str(config.primary), port, transport)


def connection(
    lab: Lab,
    host: str,
    transport: TurnTransport,
    *,
    password: str | None = None,
    credentials: Credentials | None = None,
    **kwargs: Any,
) -> TurnConnection:
    config = coturn(lab)
    kwargs.setdefault("timing", LAB_TIMING if transport is TurnTransport.UDP else Timing(reliable=True, ti=3))
    return TurnConnection(
        server_address(lab, transport),
        credentials or Credentials(config.username, config.password if password is None else password),
        ssl_context=tls_context(lab.workdir / "turn-cert.pem"),
        socket_factory=lambda _family, kind: lab.socket(host, kind),
        connect_timeout=3.0,
        **kwargs,
    )


def short_lifetimes(lab: Lab, seconds: int) -> CoturnConfig:
    """Restart the lab's coturn with every lifetime, the nonce's too, ``seconds`` long, so
    refreshes happen and some of them meet a stale nonce (438)."""
    config = replace(
        coturn(lab),
        max_allocate_lifetime=seconds,
        permission_lifetime=seconds,
        channel_lifetime=seconds,
        stale_nonce=seconds,
    )
    lab.start_coturn(config)
    return config


class _Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.count += 1
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def echo_peer(lab: Lab, host: str) -> tuple[Address, _Echo, asyncio.BaseTransport]:
    """A UDP echo server on ``host`` (an open host or the server namespace), port 7000."""
    ip = ipaddress.IPv4Address(str(lab.host(host).address))
    sock = lab.socket(host, socket.SOCK_DGRAM, bind=(str(ip), ECHO_PORT))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Echo, sock=sock)
    return (ip, ECHO_PORT), protocol, transport
