import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.proto import stun
from node.proto.stun.responder import MAX_ANSWER_BYTES, BindingResponder, Outcome

SOURCE = (ipaddress.ip_address("203.0.113.7"), 40001)
SOURCE6 = (ipaddress.ip_address("2001:db8::7"), 40002)


def _request(*attrs: stun.Attribute, method: stun.Method = stun.Method.BINDING) -> stun.Message:
    return stun.Message(method, stun.MessageClass.REQUEST, stun.new_transaction_id(), attrs)


def test_binding_request_gets_its_source_as_xor_mapped_address() -> None:
    responder = BindingResponder(software="bitcraps-node test")
    for source in (SOURCE, SOURCE6):
        request = _request()
        outcome, data = responder.handle(stun.encode(request), source)
        assert outcome is Outcome.ANSWERED and data is not None
        assert stun.verify_fingerprint(data)
        response = stun.decode(data)
        assert response.message_class is stun.MessageClass.SUCCESS
        assert response.method is stun.Method.BINDING
        assert response.transaction_id == request.transaction_id
        mapped = response.find(stun.XorMappedAddress)
        assert mapped is not None and (mapped.ip, mapped.port) == source
        software = response.find(stun.Software)
        assert software is not None and software.value == "bitcraps-node test"
    assert responder.counters[Outcome.ANSWERED] == 2


def test_unknown_comprehension_required_attribute_gets_420_listing_it() -> None:
    request = _request(stun.UnknownAttribute(0x7F01, b"abcd"))
    outcome, data = BindingResponder().handle(stun.encode(request), SOURCE)
    assert outcome is Outcome.REJECTED and data is not None
    response = stun.decode(data)
    assert response.message_class is stun.MessageClass.ERROR
    error = response.find(stun.ErrorCodeAttr)
    assert error is not None and error.code == 420
    unknown = response.find(stun.UnknownAttributes)
    assert unknown is not None and tuple(unknown.types) == (0x7F01,)


def test_unknown_comprehension_optional_attribute_is_ignored() -> None:
    request = _request(stun.UnknownAttribute(0xC0FE, b"x"))
    outcome, _ = BindingResponder().handle(stun.encode(request), SOURCE)
    assert outcome is Outcome.ANSWERED


def test_turn_request_to_a_stun_only_responder_gets_400() -> None:
    request = _request(stun.RequestedTransport(17), method=stun.Method.ALLOCATE)
    outcome, data = BindingResponder().handle(stun.encode(request), SOURCE)
    assert outcome is Outcome.REJECTED and data is not None
    error = stun.decode(data).find(stun.ErrorCodeAttr)
    assert error is not None and error.code == 400


def test_indications_and_responses_get_no_answer() -> None:
    responder = BindingResponder()
    tid = stun.new_transaction_id()
    for cls in (stun.MessageClass.INDICATION, stun.MessageClass.SUCCESS, stun.MessageClass.ERROR):
        message = stun.Message(stun.Method.BINDING, cls, tid)
        assert responder.handle(stun.encode(message), SOURCE) == (Outcome.IGNORED, None)
    assert responder.counters[Outcome.IGNORED] == 3


def test_wrong_fingerprint_is_dropped_as_malformed() -> None:
    data = bytearray(stun.encode(_request()))
    data[-1] ^= 0xFF
    responder = BindingResponder()
    assert responder.handle(bytes(data), SOURCE) == (Outcome.MALFORMED, None)
    assert responder.counters[Outcome.MALFORMED] == 1


def test_non_stun_datagrams_are_left_alone() -> None:
    responder = BindingResponder()
    assert responder.handle(b"\xffhello", SOURCE) == (Outcome.NOT_STUN, None)
    assert responder.counters[Outcome.NOT_STUN] == 1


LONGEST_SOFTWARE = "s" * 127  # RFC 8489 §14.14: fewer than 128 characters


@given(st.binary(max_size=600))
def test_arbitrary_datagrams_never_raise(data: bytes) -> None:
    outcome, response = BindingResponder().handle(data, SOURCE)
    assert (response is None) == (outcome not in (Outcome.ANSWERED, Outcome.REJECTED))


@given(st.binary(min_size=20, max_size=300))
def test_arbitrary_bodies_behind_a_valid_header_never_raise(body: bytes) -> None:
    header = b"\x00\x01" + len(body).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + b"\x01" * 12
    BindingResponder().handle(header + body, SOURCE)


def _wire(method: int, *attributes: tuple[int, bytes]) -> bytes:
    """A request built byte by byte, so it may repeat attributes the codec would not write."""
    body = b"".join(struct.pack("!HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in attributes)
    return struct.pack("!HH", method, len(body)) + b"\x21\x12\xa4\x42" + stun.new_transaction_id() + body


@given(
    st.sampled_from([0x0001, 0x0003, 0x0111]),  # Binding, Allocate, Binding indication
    st.lists(
        st.tuples(
            st.sampled_from([0x0003, 0x0027, 0x7F01, 0x7F02, 0x8022, 0xC0FE]),
            st.binary(max_size=12),
        ),
        max_size=12,
    ),
    st.sampled_from([SOURCE, SOURCE6]),
)
def test_no_answer_is_larger_than_three_times_its_request(
    method: int, attributes: list[tuple[int, bytes]], source: tuple[ipaddress.IPv4Address, int]
) -> None:
    data = _wire(method, *attributes)
    _, response = BindingResponder(LONGEST_SOFTWARE).handle(data, source)
    assert response is None or len(response) <= 3 * len(data)


def test_every_outcome_is_counted() -> None:
    responder = BindingResponder("t")
    tid = stun.new_transaction_id()
    sent = {
        Outcome.ANSWERED: stun.encode(_request()),
        Outcome.REJECTED: stun.encode(_request(method=stun.Method.ALLOCATE)),
        Outcome.NOT_STUN: b"\x80" * 40,
        Outcome.MALFORMED: b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12),  # length past the end
        Outcome.IGNORED: stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.INDICATION, tid)),
    }
    assert set(sent) == set(Outcome)  # a new outcome must join this test
    for outcome, data in sent.items():
        for _ in range(outcome.name.__len__()):  # a different count for each, so none is swapped
            assert responder.handle(data, SOURCE)[0] is outcome
    assert dict(responder.counters) == {o: len(o.name) for o in Outcome}


def test_420_lists_each_unknown_type_once_in_order_of_first_appearance() -> None:
    """Unknown types first, in wire order; then the RFC 5780 ones a single-address node refuses."""
    data = _wire(
        0x0001,
        (0x7F02, b""),
        (0x7F01, b"ab"),
        (0x7F02, b"x"),
        (stun.AttributeType.CHANGE_REQUEST, b"\x00\x00\x00\x04"),
        (0x7F01, b""),
        (0x7F03, b""),
        (stun.AttributeType.CHANGE_REQUEST, b"\x00\x00\x00\x02"),
    )
    outcome, response = BindingResponder().handle(data, SOURCE)
    assert outcome is Outcome.REJECTED and response is not None
    unknown = stun.decode(response).find(stun.UnknownAttributes)
    assert unknown is not None
    assert tuple(unknown.types) == (0x7F02, 0x7F01, 0x7F03, stun.AttributeType.CHANGE_REQUEST)


@pytest.mark.parametrize("source", [SOURCE, SOURCE6])
def test_minimal_binding_with_the_longest_software_stays_within_three_times(
    source: tuple[ipaddress.IPv4Address, int],
) -> None:
    """A 20-byte Binding would have had 172 (IPv4) or 184 (IPv6) bytes back: SOFTWARE is left out."""
    responder = BindingResponder(LONGEST_SOFTWARE)
    request = stun.encode(_request(), fingerprint=False)
    assert len(request) == 20
    outcome, response = responder.handle(request, source)
    assert outcome is Outcome.ANSWERED and response is not None
    assert len(response) <= 60
    answer = stun.decode(response)
    mapped = answer.find(stun.XorMappedAddress)
    assert mapped is not None and (mapped.ip, mapped.port) == source
    assert answer.find(stun.Software) is None
    # A request large enough to cover it gets SOFTWARE, still within the bound.
    padded = stun.encode(_request(stun.UnknownAttribute(0xC0FE, bytes(60))))
    outcome, response = responder.handle(padded, source)
    assert response is not None and len(response) <= 3 * len(padded)
    software = stun.decode(response).find(stun.Software)
    assert software is not None and software.value == LONGEST_SOFTWARE


def test_64k_request_of_unknown_attributes_gets_a_short_420() -> None:
    """The largest UDP payload, all distinct unknown types: the 420 lists the first ones that fit
    one unfragmented datagram (it grew to 32 KB), SOFTWARE left out to make room for them."""
    types = range(0x4000, 0x4000 + (65507 - 20) // 4)
    data = _wire(0x0001, *((t, b"") for t in types))
    outcome, response = BindingResponder("bitcraps-node").handle(data, SOURCE)
    assert outcome is Outcome.REJECTED and response is not None
    assert len(response) <= MAX_ANSWER_BYTES
    answer = stun.decode(response)
    unknown = answer.find(stun.UnknownAttributes)
    assert unknown is not None and len(unknown.types) > 100
    assert tuple(unknown.types) == tuple(types[: len(unknown.types)])
    assert answer.find(stun.Software) is None


def test_rfc5780_requests_a_single_address_node_cannot_honour_get_420() -> None:
    responder = BindingResponder()
    for attrs, expected in (
        ((stun.ChangeRequest(change_ip=True, change_port=False),), (stun.AttributeType.CHANGE_REQUEST,)),
        ((stun.ChangeRequest(change_ip=False, change_port=True),), (stun.AttributeType.CHANGE_REQUEST,)),
        ((stun.ResponsePort(4000),), (stun.AttributeType.RESPONSE_PORT,)),
    ):
        outcome, data = responder.handle(stun.encode(_request(*attrs)), SOURCE)
        assert outcome is Outcome.REJECTED and data is not None
        unknown = stun.decode(data).find(stun.UnknownAttributes)
        assert unknown is not None and tuple(unknown.types) == expected
    no_change = _request(stun.ChangeRequest(change_ip=False, change_port=False))
    assert responder.handle(stun.encode(no_change), SOURCE)[0] is Outcome.ANSWERED


def test_software_the_codec_refuses_fails_at_construction() -> None:
    with pytest.raises(stun.StunEncodeError):
        BindingResponder(software="x" * 200)
