"""``deliver`` (what the control socket's ``send`` uses): the message id ``send`` gives, plus the
kind of path that carried the message, on two coordinators over real loopback transports."""

from __future__ import annotations

from pathlib import Path

from node.proto.vocabulary import Priority, TransportKind
from node.services.coordinator import InboundMessage
from tests.socket.coordinator_nodes import local_node


async def test_deliver_tells_the_kind_of_path_that_carried_the_message(tmp_path: Path) -> None:
    async with local_node(tmp_path, "a") as a, local_node(tmp_path, "b") as b:
        await a.api.connect(b.peer_id, [b.tls_uri], timeout=20)
        sent = await a.api.deliver(b.peer_id, b"over tls", Priority.HIGH)
        assert sent.path is TransportKind.TCP_TLS
        unreliable = await a.api.deliver(b.peer_id, b"once", reliable=False)
        assert unreliable.path is TransportKind.TCP_TLS
        inbox = b.api.messages()
        first: InboundMessage = await anext(inbox)
        assert first.message_id == str(sent.message_id) and first.data == b"over tls"
