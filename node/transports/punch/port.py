"""What a punch needs of the UDP transport (``UdpTransport`` has it): the node's port to send and
receive checks on, the adoption of the winning extra socket, and the secure session after."""

from __future__ import annotations

import socket
from typing import Protocol

from node.proto.vocabulary import Endpoint, IpEndpoint, PeerId
from node.transports.port import PunchDelivery


class PunchPort(Protocol):
    @property
    def local(self) -> IpEndpoint | None:
        """Where the node's port is bound; None while it is closed."""

    def send_datagram(self, data: bytes, destination: IpEndpoint, via: int = 0) -> None:
        """Send from the node's port (``via`` 0) or an adopted socket; TransportUsageError if closed."""

    def expect_punch(self, token: bytes, deliver: PunchDelivery) -> None:
        """Hand checks carrying ``token`` (from any of the transport's sockets) to ``deliver``."""

    def forget_punch(self, token: bytes) -> None:
        """Stop handing them on; later ones are counted as ``punch_unknown``."""

    def adopt(self, sock: socket.socket, remote: IpEndpoint) -> int:
        """Take ``sock`` over for the session with ``remote``; its ``via`` index."""


class SessionPort(PunchPort, Protocol):
    async def connect(self, peer: PeerId, endpoint: Endpoint) -> None:
        """Dial ``peer`` at ``endpoint`` until it proved its identity."""

    async def wait_session(self, peer: PeerId, at: IpEndpoint | None = None) -> IpEndpoint:
        """Wait until ``peer`` has an authenticated session (at ``at``)."""

    def release(self, remote: IpEndpoint) -> bool:
        """Close the socket adopted for ``remote`` (its handshake failed)."""
