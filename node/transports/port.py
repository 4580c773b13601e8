"""A datagram port a STUN client can borrow: the node's own UDP socket, shared with its transport.

NAT discovery asks the servers what the NAT made of the port peers will actually reach, so its
Binding requests must leave from that port and their answers come back to it. The owner of the
socket (``UdpTransport``) sends for the client and hands it every STUN success or error response
whose transaction id the client registered (RFC 8489 §6.3: a response is matched to its
request by transaction id alone); responses nobody registered are counted by the owner as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeAlias

from node.proto.vocabulary import IpEndpoint

# (the response as received, where it came from)
StunDelivery: TypeAlias = Callable[[bytes, IpEndpoint], None]
# (a punch check as received, where it came from, the socket it arrived on: 0 the node's port)
PunchDelivery: TypeAlias = Callable[[bytes, IpEndpoint, int], None]


class DatagramPort(Protocol):
    @property
    def local(self) -> IpEndpoint | None:
        """Where the socket is bound (its address may be unspecified); None while it is closed."""

    def send_datagram(self, data: bytes, destination: IpEndpoint) -> None:
        """Send one datagram from the port. Raises ``TransportUsageError`` when it is closed."""

    def expect_stun(self, transaction_id: bytes, deliver: StunDelivery) -> None:
        """Hand responses carrying ``transaction_id`` to ``deliver`` until ``forget_stun``."""

    def forget_stun(self, transaction_id: bytes) -> None:
        """Stop handing them on (unknown ids are fine); later ones are counted as ignored."""
