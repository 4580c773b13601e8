"""Real coturn 4.6.1 answers (captured by tests/fixtures/capture_coturn.py) through the codec:
each decodes, its FINGERPRINT and MESSAGE-INTEGRITY check out, and it re-encodes byte for byte
(coturn pads with zeros and puts MESSAGE-INTEGRITY and FINGERPRINT last, as we do)."""

from __future__ import annotations

import ipaddress
import json
import pathlib
from typing import Any

import pytest

from node.proto import stun

FIXTURE = pathlib.Path(__file__).parent.parent / "fixtures" / "coturn_packets.json"
DOC: dict[str, Any] = json.loads(FIXTURE.read_text())
KEY = stun.long_term_key(DOC["username"], DOC["realm"], DOC["password"])
PACKETS = {p["name"]: bytes.fromhex(p["hex"]) for p in DOC["packets"]}
LOOPBACK = ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize("name", sorted(PACKETS))
def test_decodes_verifies_and_reencodes(name: str) -> None:
    raw = PACKETS[name]
    msg = stun.decode(raw)
    signed = msg.find(stun.MessageIntegrity) is not None
    fingerprinted = msg.find(stun.Fingerprint) is not None
    assert stun.verify_fingerprint(raw) is fingerprinted
    assert stun.verify_integrity(raw, KEY) is signed
    if signed:
        assert not stun.verify_integrity(raw, stun.long_term_key("alice", "example.test", "x"))
    assert stun.encode(msg, key=KEY if signed else None, fingerprint=fingerprinted) == raw
    assert msg.unknown_comprehension_required() == ()


def test_binding_response_carries_rfc5780_addresses() -> None:
    msg = stun.decode(PACKETS["binding_success"])
    mapped = msg.find(stun.XorMappedAddress)
    assert mapped is not None and mapped.ip == LOOPBACK
    assert msg.find(stun.MappedAddress) == stun.MappedAddress(mapped.ip, mapped.port)
    assert msg.find(stun.ResponseOrigin) == stun.ResponseOrigin(LOOPBACK, 34780)
    other = msg.find(stun.OtherAddress)
    assert other == stun.OtherAddress(ipaddress.ip_address("127.0.0.2"), 34781)
    changed = stun.decode(PACKETS["binding_change_request"])
    assert changed.find(stun.ResponseOrigin) == stun.ResponseOrigin(other.ip, other.port)


def test_errors_and_challenge() -> None:
    challenge = stun.decode(PACKETS["allocate_401"])
    assert challenge.message_class is stun.MessageClass.ERROR
    assert challenge.find(stun.ErrorCodeAttr) == stun.ErrorCodeAttr(401, "Unauthorized")
    assert challenge.find(stun.Realm) == stun.Realm("example.test")
    assert challenge.find(stun.Nonce) is not None
    unknown = stun.decode(PACKETS["binding_unknown_attribute_420"])
    error = unknown.find(stun.ErrorCodeAttr)
    # coturn counts its zero padding inside the reason phrase; the codec keeps it verbatim.
    assert error is not None and error.code == stun.ErrorCode.UNKNOWN_ATTRIBUTE
    assert error.reason.rstrip("\0") == "Unknown Attribute"
    assert unknown.find(stun.UnknownAttributes) == stun.UnknownAttributes((0x7ABC,))
    mismatch = stun.decode(PACKETS["allocate_mismatch_437"]).find(stun.ErrorCodeAttr)
    assert mismatch is not None and mismatch.code == stun.ErrorCode.ALLOCATION_MISMATCH


def test_allocation() -> None:
    msg = stun.decode(PACKETS["allocate_success"])
    assert (msg.method, msg.message_class) == (stun.Method.ALLOCATE, stun.MessageClass.SUCCESS)
    relayed = msg.find(stun.XorRelayedAddress)
    assert relayed is not None and relayed.ip == LOOPBACK and 49152 <= relayed.port <= 49200
    assert msg.find(stun.Lifetime) == stun.Lifetime(600)
    refresh = stun.decode(PACKETS["refresh_delete_success"])
    assert refresh.find(stun.Lifetime) == stun.Lifetime(0)
    for name, method in [
        ("create_permission_success", stun.Method.CREATE_PERMISSION),
        ("channel_bind_success", stun.Method.CHANNEL_BIND),
    ]:
        answer = stun.decode(PACKETS[name])
        assert (answer.method, answer.message_class) == (method, stun.MessageClass.SUCCESS)
