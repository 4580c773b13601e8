from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import pytest

from node.proto import vocabulary
from node.transports import base


class _Loopback(base.Transport):
    """The smallest real implementation: proves the interface is implementable as declared."""

    kind = vocabulary.TransportKind.UDP
    capabilities = vocabulary.Capabilities(max_message_size=8, reliable=False, ordered=False)

    def __init__(self) -> None:
        self.sent: list[tuple[str, vocabulary.Frame]] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def connect(self, peer: vocabulary.PeerId, endpoint: vocabulary.Endpoint) -> None:
        if not isinstance(endpoint, vocabulary.IpEndpoint):
            raise base.TransportUsageError(vocabulary.TransportReason.UNSUPPORTED_ENDPOINT, str(endpoint))

    async def send(self, peer: vocabulary.PeerId, frame: vocabulary.Frame) -> None:
        self.check_size(frame)
        self.sent.append((peer, frame))

    async def disconnect(self, peer: vocabulary.PeerId) -> None:
        return None

    async def events(self) -> AsyncIterator[vocabulary.TransportEvent]:
        for peer, frame in self.sent:
            yield vocabulary.MessageReceived(peer, frame)

    def health(self) -> vocabulary.TransportHealth:
        return vocabulary.TransportHealth(self.kind, vocabulary.TransportState.READY, connections=0)


async def test_oversize_frame_is_a_typed_local_error() -> None:
    async with _Loopback() as t:
        await t.send("p", vocabulary.Frame(1, b"12345678"))
        with pytest.raises(base.TransportUsageError) as info:
            await t.send("p", vocabulary.Frame(2, b"123456789", vocabulary.Priority.HIGH))
        assert info.value.reason is vocabulary.TransportReason.MESSAGE_TOO_LARGE
        assert [e async for e in t.events()] == [
            vocabulary.MessageReceived("p", vocabulary.Frame(1, b"12345678"))
        ]


async def test_endpoint_kinds_and_errors_are_typed() -> None:
    import ipaddress

    async with _Loopback() as t:
        await t.connect("p", vocabulary.IpEndpoint(ipaddress.ip_address("198.18.0.2"), 1))
        with pytest.raises(base.TransportUsageError) as info:
            await t.connect("p", vocabulary.BleEndpoint("AA:BB:CC:DD:EE:FF"))
    assert info.value.reason is vocabulary.TransportReason.UNSUPPORTED_ENDPOINT
    assert str(vocabulary.IpEndpoint(ipaddress.ip_address("2001:db8::1"), 5)) == "[2001:db8::1]:5"


def test_the_slot_setters_build_the_same_frozen_objects() -> None:
    import dataclasses

    # The setters follow the fields: a field added to Frame or MessageReceived must be added there.
    assert [f.name for f in dataclasses.fields(vocabulary.Frame)] == ["message_id", "payload", "priority"]
    assert [f.name for f in dataclasses.fields(vocabulary.MessageReceived)] == ["peer", "frame"]
    assert len(vocabulary.FRAME_SETTERS) == 3 and len(vocabulary.MESSAGE_SETTERS) == 2
    frame = vocabulary.make_frame(7, b"abc", vocabulary.Priority.HIGH)
    assert type(frame) is vocabulary.Frame
    assert frame == vocabulary.Frame(7, b"abc", vocabulary.Priority.HIGH)
    message = object.__new__(vocabulary.MessageReceived)
    for setter, value in zip(vocabulary.MESSAGE_SETTERS, ("p", frame), strict=True):
        setter(message, value)
    assert message == vocabulary.MessageReceived("p", frame)
    assert hash(message) == hash(
        vocabulary.MessageReceived("p", vocabulary.Frame(7, b"abc", vocabulary.Priority.HIGH))
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.payload = b"changed"  # type: ignore[misc]


async def test_batched_events_by_default_give_each_message_a_batch_of_its_own() -> None:
    endpoint = vocabulary.BleEndpoint("AA:BB:CC:DD:EE:FF")

    class _Connecting(_Loopback):
        async def events(self) -> AsyncIterator[vocabulary.TransportEvent]:
            yield vocabulary.PeerConnected("p", endpoint)
            async for event in super().events():
                yield event

    async with _Connecting() as t:
        await t.send("p", vocabulary.Frame(1, b"a"))
        await t.send("p", vocabulary.Frame(2, b"b"))
        assert [e async for e in t.batched_events()] == [
            vocabulary.PeerConnected("p", endpoint),
            vocabulary.MessagesReceived("p", (vocabulary.Frame(1, b"a"),)),
            vocabulary.MessagesReceived("p", (vocabulary.Frame(2, b"b"),)),
        ]
