from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import pytest

from node.transports import base


class _Loopback(base.Transport):
    """The smallest real implementation: proves the interface is implementable as declared."""

    kind = base.TransportKind.UDP
    capabilities = base.Capabilities(max_message_size=8, reliable=False, ordered=False)

    def __init__(self) -> None:
        self.sent: list[tuple[str, base.Frame]] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def connect(self, peer: base.PeerId, endpoint: base.Endpoint) -> None:
        if not isinstance(endpoint, base.IpEndpoint):
            raise base.TransportUsageError(base.TransportReason.UNSUPPORTED_ENDPOINT, str(endpoint))

    async def send(self, peer: base.PeerId, frame: base.Frame) -> None:
        self.check_size(frame)
        self.sent.append((peer, frame))

    async def disconnect(self, peer: base.PeerId) -> None:
        return None

    async def events(self) -> AsyncIterator[base.TransportEvent]:
        for peer, frame in self.sent:
            yield base.MessageReceived(peer, frame)

    def health(self) -> base.TransportHealth:
        return base.TransportHealth(self.kind, base.TransportState.READY, connections=0)


async def test_oversize_frame_is_a_typed_local_error() -> None:
    async with _Loopback() as t:
        await t.send("p", base.Frame(1, b"12345678"))
        with pytest.raises(base.TransportUsageError) as info:
            await t.send("p", base.Frame(2, b"123456789", base.Priority.HIGH))
        assert info.value.reason is base.TransportReason.MESSAGE_TOO_LARGE
        assert [e async for e in t.events()] == [base.MessageReceived("p", base.Frame(1, b"12345678"))]


async def test_endpoint_kinds_and_errors_are_typed() -> None:
    import ipaddress

    async with _Loopback() as t:
        await t.connect("p", base.IpEndpoint(ipaddress.ip_address("198.18.0.2"), 1))
        with pytest.raises(base.TransportUsageError) as info:
            await t.connect("p", base.BleEndpoint("AA:BB:CC:DD:EE:FF"))
    assert info.value.reason is base.TransportReason.UNSUPPORTED_ENDPOINT
    assert str(base.IpEndpoint(ipaddress.ip_address("2001:db8::1"), 5)) == "[2001:db8::1]:5"


def test_the_slot_setters_build_the_same_frozen_objects() -> None:
    import dataclasses

    # The setters follow the fields: a field added to Frame or MessageReceived must be added there.
    assert [f.name for f in dataclasses.fields(base.Frame)] == ["message_id", "payload", "priority"]
    assert [f.name for f in dataclasses.fields(base.MessageReceived)] == ["peer", "frame"]
    assert len(base.FRAME_SETTERS) == 3 and len(base.MESSAGE_SETTERS) == 2
    frame = base.make_frame(7, b"abc", base.Priority.HIGH)
    assert type(frame) is base.Frame
    assert frame == base.Frame(7, b"abc", base.Priority.HIGH)
    message = object.__new__(base.MessageReceived)
    for setter, value in zip(base.MESSAGE_SETTERS, ("p", frame), strict=True):
        setter(message, value)
    assert message == base.MessageReceived("p", frame)
    assert hash(message) == hash(base.MessageReceived("p", base.Frame(7, b"abc", base.Priority.HIGH)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.payload = b"changed"  # type: ignore[misc]


async def test_batched_events_by_default_give_each_message_a_batch_of_its_own() -> None:
    endpoint = base.BleEndpoint("AA:BB:CC:DD:EE:FF")

    class _Connecting(_Loopback):
        async def events(self) -> AsyncIterator[base.TransportEvent]:
            yield base.PeerConnected("p", endpoint)
            async for event in super().events():
                yield event

    async with _Connecting() as t:
        await t.send("p", base.Frame(1, b"a"))
        await t.send("p", base.Frame(2, b"b"))
        assert [e async for e in t.batched_events()] == [
            base.PeerConnected("p", endpoint),
            base.MessagesReceived("p", (base.Frame(1, b"a"),)),
            base.MessagesReceived("p", (base.Frame(2, b"b"),)),
        ]
