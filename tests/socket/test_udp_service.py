"""The UDP service on loopback: STUN Binding answered, garbage survived, bind errors typed."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.config import Config, NodeSection
from node.proto import stun
from node.proto.identity import Identity
from node.proto.stun.responder import BindingResponder, IPAddress, Outcome
from node.proto.vocabulary import TransportState
from node.services.udp import BindError, UdpService


def _identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def _exchange(port: int, junk: tuple[bytes, ...], request: bytes) -> tuple[bytes, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.bind(("127.0.0.1", 0))
        for datagram in (*junk, request):
            client.sendto(datagram, ("127.0.0.1", port))
        data = client.recv(2048)
        return data, client.getsockname()[1]


async def test_answers_binding_and_survives_garbage() -> None:
    async with UdpService(
        Config(node=NodeSection(listen_address="127.0.0.1", udp_port=0, software="t")), _identity()
    ) as udp:
        assert udp.state is TransportState.READY
        # Two STUN-shaped datagrams that cannot decode, one that is not STUN at all.
        junk = (
            b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"\x00" * 12,
            b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"\x00" * 12 + b"\x00\x01\x00\x09",
            b"\x80" * 64,
        )
        request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())
        data, client_port = await asyncio.to_thread(_exchange, udp.local.port, junk, stun.encode(request))
        mapped = stun.decode(data).find(stun.XorMappedAddress)
        assert mapped is not None and mapped.port == client_port
        assert udp.responder.counters[Outcome.ANSWERED] == 1
        assert udp.responder.counters[Outcome.NOT_STUN] == 1
        assert udp.responder.counters[Outcome.MALFORMED] == 2
        view = udp.status()
        assert view.stun_json() == {"answered": 1, "rejected": 0, "not_stun": 1, "malformed": 2, "ignored": 0}
        # The datagram neither STUN nor a session message is counted as malformed on the port too.
        assert view.to_json() == {
            "trust": "development (INSECURE: any peer is accepted)",
            "sessions": 0,
            "handshakes": 0,
            "cookies_sent": 0,
            "malformed": 1,
            "reassembly_drops": 0,
            "punch_unknown": 0,
            "faults": {},
        }
    assert udp.state is TransportState.STOPPED


async def test_port_in_use_is_a_bind_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        with pytest.raises(BindError) as info:
            async with UdpService(
                Config(node=NodeSection(listen_address="127.0.0.1", udp_port=busy.getsockname()[1])),
                _identity(),
            ):
                pass
        assert info.value.port == busy.getsockname()[1]


class _TripsOnBoom(BindingResponder):
    """A responder with a bug one datagram's bytes reach (what the isolation wall is for)."""

    def handle(self, data: bytes, source: tuple[IPAddress, int]) -> tuple[Outcome, bytes | None]:
        if data == b"boom":
            raise KeyError("a bug met on one datagram")
        return super().handle(data, source)


async def test_a_fault_on_one_datagram_is_contained_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="node.transports.isolation"):
        async with UdpService(
            Config(node=NodeSection(listen_address="127.0.0.1", udp_port=0)),
            _identity(),
            responder=_TripsOnBoom(),
        ) as udp:
            request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())
            data, client_port = await asyncio.to_thread(
                _exchange, udp.local.port, (b"boom",), stun.encode(request)
            )
            mapped = stun.decode(data).find(stun.XorMappedAddress)
            assert mapped is not None and (mapped.ip, mapped.port) == (
                ipaddress.ip_address("127.0.0.1"),
                client_port,
            )
            assert udp.state is TransportState.READY
            assert udp.status().to_json()["faults"] == {"KeyError": 1}
            assert udp.status().stun_json()["answered"] == 1
    faults = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(faults) == 1 and "datagram from 127.0.0.1" in faults[0].getMessage()
