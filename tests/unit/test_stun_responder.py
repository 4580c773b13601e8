import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from node.proto import stun
from node.proto.stun_responder import BindingResponder, Outcome

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


@given(st.binary(max_size=600))
def test_arbitrary_datagrams_never_raise(data: bytes) -> None:
    outcome, response = BindingResponder().handle(data, SOURCE)
    assert (response is None) == (outcome not in (Outcome.ANSWERED, Outcome.REJECTED))


@given(st.binary(min_size=20, max_size=300))
def test_arbitrary_bodies_behind_a_valid_header_never_raise(body: bytes) -> None:
    header = b"\x00\x01" + len(body).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + b"\x01" * 12
    BindingResponder().handle(header + body, SOURCE)


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
    import pytest

    with pytest.raises(stun.StunEncodeError):
        BindingResponder(software="x" * 200)
