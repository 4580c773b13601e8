"""The largest message the issue requires (transport.max_message_bytes, 1 MiB) goes through the
coordinator on each transport, the delivery header on top; one byte more is a typed TOO_LARGE."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.services.coordinator import ApiReason, ApiUsageError
from tests.socket.coordinator_nodes import local_node

LARGEST = 1 << 20  # transport.max_message_bytes' default


@pytest.mark.parametrize("kind", ["udp", "tls"])
async def test_a_message_of_max_message_bytes_arrives_whole(tmp_path: Path, kind: str) -> None:
    async with local_node(tmp_path, "a") as a, local_node(tmp_path, "b") as b:
        await a.api.connect(b.peer_id, [b.udp_uri if kind == "udp" else b.tls_uri], timeout=20)
        data = bytes(range(256)) * (LARGEST // 256)
        await a.api.send(b.peer_id, data)
        message = await anext(b.api.messages())
        assert message.data == data
        with pytest.raises(ApiUsageError) as too_large:
            await a.api.send(b.peer_id, data + b"!")
        assert too_large.value.reason is ApiReason.TOO_LARGE
        assert a.coordinator.status().to_json()["messages"]["failed"] == 0
