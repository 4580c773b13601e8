"""Classic RFC 3489 messages in the codec: real answers captured from Debian's ``stun-server``
(Vovida stund 0.97, the packaged classic server), decoded; the classic server model checked byte
for byte against them; and the node's own demultiplexing left strict (magic cookie only).

Captured in a private network namespace with ``stund -h 127.0.0.1 -a 127.0.0.2 -p 3478 -o
3479``, the client on 127.0.0.1:40000: first a pystun3-shaped request (type, zero length and a
16-byte id, RFC 3489 §11.1), then our own RFC 8489 requests (magic cookie, 12-byte id,
FINGERPRINT), with and without CHANGE-REQUEST (§11.2.4).
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.proto import stun
from node.proto.stun.responder import BindingResponder, Outcome
from node.proto.stun.transaction import TransactionManager, TransactionSucceeded
from tests.fakes.classic_stun_server import ClassicStunServerModel
from tests.fakes.stun_server import Drop

IP = ipaddress.ip_address
CLIENT = (IP("127.0.0.1"), 40000)
PRIMARY = (IP("127.0.0.1"), 3478)
ALTERNATE = (IP("127.0.0.2"), 3479)
STUND = "Vovida.org 0.97\x00"  # its SERVER attribute (0x8022), NUL included

CLASSIC_ID = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")
OUR_ID = bytes.fromhex("0102030405060708090a0b0c")
TAIL = "80220010566f766964612e6f726720302e393700"  # SERVER "Vovida.org 0.97\0"


def _x(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# (name, request, where the answer came from, the answer), as captured
CAPTURES = [
    (
        "classic",
        _x("0001 0000 a1b2c3d4e5f60718293a4b5c6d7e8f90"),
        PRIMARY,
        _x(
            "0101 0044 a1b2c3d4e5f60718293a4b5c6d7e8f90"
            "0001 0008 0001 9c40 7f000001"  # MAPPED-ADDRESS 127.0.0.1:40000
            "0004 0008 0001 0d96 7f000001"  # SOURCE-ADDRESS 127.0.0.1:3478
            "0005 0008 0001 0d97 7f000002"  # CHANGED-ADDRESS 127.0.0.2:3479
            "0020 0008 0001 3df2 deb2c3d5" + TAIL  # XORed with the id's first bytes
        ),
    ),
    (
        "cookie",
        _x("0001 0008 2112a442 0102030405060708090a0b0c 8028 0004 5b20f9cc"),
        PRIMARY,
        _x(
            "0101 0044 2112a442 0102030405060708090a0b0c"
            "0001 0008 0001 9c40 7f000001"
            "0004 0008 0001 0d96 7f000001"
            "0005 0008 0001 0d97 7f000002"
            "0020 0008 0001 bd52 5e12a443" + TAIL  # a correct XOR-MAPPED-ADDRESS
        ),
    ),
    (
        "change-ip-and-port",
        _x("0001 0010 2112a442 0c0b0a0908070605040302 01 0003 0004 00000006 8028 0004 5e32d3fd"),
        ALTERNATE,
        _x(
            "0101 0044 2112a442 0c0b0a090807060504030201"
            "0001 0008 0001 9c40 7f000001"
            "0004 0008 0001 0d97 7f000002"  # sent from the alternate address and port
            "0005 0008 0001 0d97 7f000002"
            "0020 0008 0001 bd52 5e12a443" + TAIL
        ),
    ),
    (
        "change-port",
        _x("0001 0010 2112a442 1415161718191a1b1c1d1e1f 0003 0004 00000002 8028 0004 25c631d3"),
        (PRIMARY[0], ALTERNATE[1]),
        _x(
            "0101 0044 2112a442 1415161718191a1b1c1d1e1f"
            "0001 0008 0001 9c40 7f000001"
            "0004 0008 0001 0d97 7f000001"  # the primary address, the alternate port
            "0005 0008 0001 0d97 7f000002"
            "0020 0008 0001 bd52 5e12a443" + TAIL
        ),
    ),
]
CLASSIC_REQUEST, CLASSIC_RESPONSE = CAPTURES[0][1], CAPTURES[0][3]
OUR_REQUEST, STUND_TO_US = CAPTURES[1][1], CAPTURES[1][3]


def test_classic_answer_decodes_with_its_16_byte_id() -> None:
    message = stun.decode(CLASSIC_RESPONSE, rfc3489=True)
    assert message.classic and message.transaction_id == CLASSIC_ID
    assert (message.method, message.message_class) == (stun.Method.BINDING, stun.MessageClass.SUCCESS)
    assert message.find(stun.MappedAddress) == stun.MappedAddress(*CLIENT)
    assert message.find(stun.SourceAddress) == stun.SourceAddress(*PRIMARY)
    assert message.find(stun.ChangedAddress) == stun.ChangedAddress(*ALTERNATE)
    # stund's 0x0020 XORs with the header's bytes 4-8, as RFC 8489 does with the cookie.
    assert message.find(stun.XorMappedAddress) == stun.XorMappedAddress(*CLIENT)
    assert message.find(stun.Software) == stun.Software(STUND)


def test_classic_header_is_refused_unless_asked_for() -> None:
    # The node's demultiplexing (RFC 7983 §7) and default decoding stay RFC 8489's.
    assert not stun.is_stun(CLASSIC_RESPONSE) and not stun.is_stun(CLASSIC_REQUEST)
    with pytest.raises(stun.StunDecodeError) as info:
        stun.decode(CLASSIC_RESPONSE)
    assert info.value.reason is stun.DecodeReason.BAD_MAGIC


def test_node_responder_does_not_answer_a_classic_request() -> None:
    outcome, answer = BindingResponder().handle(CLASSIC_REQUEST, CLIENT)
    assert (outcome, answer) == (Outcome.NOT_STUN, None)


def test_answer_to_our_request_carries_our_id_and_matches_our_transaction() -> None:
    # stund echoes the 16 bytes: cookie and our id. So its answer is an RFC 8489 message to us.
    assert stun.decode(OUR_REQUEST).transaction_id == OUR_ID
    message = stun.decode(STUND_TO_US)
    assert not message.classic and message.transaction_id == OUR_ID
    assert stun.decode(STUND_TO_US, rfc3489=True) == message
    assert message.find(stun.ChangedAddress) == stun.ChangedAddress(*ALTERNATE)
    assert message.find(stun.OtherAddress) is None and message.find(stun.Fingerprint) is None
    manager: TransactionManager[str] = TransactionManager()
    manager.start("stund", OUR_ID, OUR_REQUEST, 0.0)
    manager.datagrams_to_send(0.0)
    assert manager.receive("stund", message.transaction_id, message, 0.01)
    event = manager.next_event()
    assert event is not None and isinstance(event[1], TransactionSucceeded)


@pytest.mark.parametrize(("name", "request_", "source", "answer"), CAPTURES, ids=[c[0] for c in CAPTURES])
def test_change_request_answers_name_where_they_came_from(
    name: str, request_: bytes, source: tuple[object, int], answer: bytes
) -> None:
    message = stun.decode(answer, rfc3489=True)
    origin = message.find(stun.SourceAddress)
    assert origin is not None and (origin.ip, origin.port) == source
    assert message.find(stun.MappedAddress) == stun.MappedAddress(*CLIENT)


@pytest.mark.parametrize(("name", "request_", "source", "answer"), CAPTURES, ids=[c[0] for c in CAPTURES])
def test_classic_model_answers_byte_for_byte_as_stund(
    name: str, request_: bytes, source: tuple[object, int], answer: bytes
) -> None:
    model = ClassicStunServerModel(PRIMARY, ALTERNATE, software=STUND, like_stund=True)
    [datagram] = model.receive(request_, CLIENT, PRIMARY, 0.0)
    assert (datagram.src, datagram.dst, datagram.data) == (source, CLIENT, answer)


def test_classic_model_without_stund_extras_sends_no_xor_address() -> None:
    model = ClassicStunServerModel(PRIMARY, ALTERNATE)
    [datagram] = model.receive(OUR_REQUEST, CLIENT, PRIMARY, 0.0)
    message = stun.decode(datagram.data)
    assert message.transaction_id == OUR_ID and message.find(stun.XorMappedAddress) is None
    assert message.find(stun.MappedAddress) == stun.MappedAddress(*CLIENT)


def test_classic_model_answers_420_to_an_unknown_mandatory_attribute_and_drops_the_rest() -> None:
    model = ClassicStunServerModel(PRIMARY, ALTERNATE)
    request = stun.Message(
        stun.Method.BINDING, stun.MessageClass.REQUEST, CLASSIC_ID, (stun.UnknownAttribute(0x0777, b""),)
    )
    [datagram] = model.receive(stun.encode(request, fingerprint=False), CLIENT, PRIMARY, 0.0)
    error = stun.decode(datagram.data, rfc3489=True)
    assert error.message_class is stun.MessageClass.ERROR and error.transaction_id == CLASSIC_ID
    assert error.find(stun.ErrorCodeAttr) == stun.ErrorCodeAttr(420, "Unknown Attribute")
    assert error.find(stun.UnknownAttributes) == stun.UnknownAttributes((0x0777,))
    assert model.receive(CLASSIC_RESPONSE, CLIENT, PRIMARY, 0.0) == []
    assert model.receive(b"\x00\x01\x00", CLIENT, PRIMARY, 0.0) == []
    assert model.receive(CLASSIC_REQUEST, CLIENT, (IP("127.0.0.3"), 3478), 0.0) == []
    assert (model.drops[Drop.NOT_REQUEST], model.drops[Drop.MALFORMED], model.drops[Drop.NOT_OURS]) == (
        1,
        1,
        1,
    )


def test_classic_message_encodes_without_cookie_and_round_trips() -> None:
    message = stun.Message(
        stun.Method.BINDING,
        stun.MessageClass.SUCCESS,
        CLASSIC_ID,
        (
            stun.MappedAddress(*CLIENT),
            stun.SourceAddress(*PRIMARY),
            stun.ChangedAddress(*ALTERNATE),
            stun.XorMappedAddress(*CLIENT),
            stun.Software(STUND),
        ),
    )
    data = stun.encode(message, fingerprint=False)
    assert data == CLASSIC_RESPONSE
    assert stun.decode(data, rfc3489=True) == message


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"key": b"k"}, {"key": b"k", "fingerprint": False}],
    ids=["fingerprint", "integrity+fingerprint", "integrity"],
)
def test_classic_message_takes_no_integrity_or_fingerprint(kwargs: dict[str, object]) -> None:
    message = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, CLASSIC_ID)
    with pytest.raises(stun.StunEncodeError, match="RFC 3489"):
        stun.encode(message, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 11, 13, 15, 17])
def test_transaction_id_of_another_size_is_refused(size: int) -> None:
    message = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, bytes(size))
    with pytest.raises(stun.StunEncodeError, match="12 bytes"):
        stun.encode(message, fingerprint=False)


@given(
    tid=st.binary(min_size=16, max_size=16),
    address=st.integers(0, 2**128 - 1),
    port=st.integers(0, 65535),
)
def test_xor_addresses_round_trip_in_classic_messages(tid: bytes, address: int, port: int) -> None:
    attrs = (
        stun.XorMappedAddress(ipaddress.IPv6Address(address), port),
        stun.XorPeerAddress(ipaddress.IPv4Address(address >> 96), port),
    )
    message = stun.Message(stun.Method.BINDING, stun.MessageClass.SUCCESS, tid, attrs)
    assert stun.decode(stun.encode(message, fingerprint=False), rfc3489=True) == message
