"""Sans-IO STUN Binding responder: every node answers Binding requests on its UDP port, so any
node with a public address can serve its peers as a STUN server (RFC 8489 §6.3).

Input: one datagram and the address it came from. Output: the response to send back, or None.
Malformed input is dropped and counted, never raised: one bad packet must not disturb the
node's service to everyone else. Every datagram is counted under exactly one ``Outcome``.

Amplification: a UDP source address is not proven, so a stranger can aim our answers at someone
else (a reflector; RFC 8489 §16 leaves the defence to the usage). No answer is larger than
``AMPLIFICATION_FACTOR`` times its request (the limit QUIC sets for an unvalidated address, RFC
9000 §8.1) nor than ``MAX_ANSWER_BYTES``. What always fits: the smallest request is a 20-byte
header, so the budget is 60 bytes; a Binding success is header 20 + XOR-MAPPED-ADDRESS 12 (IPv4)
or 24 (IPv6) + FINGERPRINT 8 = 40 or 52; a 400 is 20 + ERROR-CODE 20 + FINGERPRINT 8 = 48; a
420 needs a request holding an attribute (>= 24 bytes, budget 72) and is 20 + ERROR-CODE 28 +
UNKNOWN-ATTRIBUTES 8 + FINGERPRINT 8 = 64. So only the optional parts are cut: SOFTWARE (RFC
8489 §14.14, optional) is sent only when it fits, and a 420 lists as many unknown types as fit.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import replace
from enum import Enum

from node.proto import stun

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AMPLIFICATION_FACTOR = 3  # RFC 9000 §8.1: at most three times the bytes received from an address
# RFC 8489 §6.1 (RFC 5389 §7.1): without a known path MTU, a message fits a 576-byte IPv4 packet;
# less the largest IPv4 header (60) and the UDP header (8), so it is never fragmented.
MAX_ANSWER_BYTES = 576 - 60 - 8
_ATTRIBUTE_HEADER = 4  # type and length (RFC 8489 §14)


class Outcome(Enum):
    ANSWERED = "answered"
    REJECTED = "rejected"  # answered with an error response (400, 420)
    NOT_STUN = "not_stun"  # someone else's datagram (application frames); not ours to judge
    MALFORMED = "malformed"  # looked like STUN but failed to decode (FINGERPRINT included): dropped
    IGNORED = "ignored"  # indications (keepalives) and responses: no answer is due


class BindingResponder:
    def __init__(self, software: str = "") -> None:
        # Encoded once here so a SOFTWARE the codec refuses fails at start, not per packet.
        self._software = (stun.Software(software),) if software else ()
        stun.encode(
            stun.Message(stun.Method.BINDING, stun.MessageClass.INDICATION, bytes(12), self._software)
        )
        self.counters: Counter[Outcome] = Counter()

    def handle(self, data: bytes, source: tuple[IPAddress, int]) -> tuple[Outcome, bytes | None]:
        outcome, response = self._respond(data, source)
        self.counters[outcome] += 1
        return outcome, response

    def _respond(self, data: bytes, source: tuple[IPAddress, int]) -> tuple[Outcome, bytes | None]:
        if not stun.is_stun(data):
            return Outcome.NOT_STUN, None
        try:
            # decode() also rejects a FINGERPRINT that does not match (RFC 8489 §7.3).
            request = stun.decode(data)
        except stun.StunDecodeError:
            return Outcome.MALFORMED, None
        if request.message_class is not stun.MessageClass.REQUEST:
            # Indications (RFC 8489 §6.3.2) get no response; responses are for our client side.
            return Outcome.IGNORED, None
        budget = min(AMPLIFICATION_FACTOR * len(data), MAX_ANSWER_BYTES)
        # RFC 8489 §14.13 lists attribute types: each once, unknown ones in the order first met.
        unknown = tuple(
            dict.fromkeys((*request.unknown_comprehension_required(), *_unsupported_rfc5780(request)))
        )
        if unknown:
            # RFC 8489 §6.3.1.1: comprehension-required attributes we cannot honour -> 420.
            return Outcome.REJECTED, self._unknown_attribute(request, unknown, budget)
        if request.method is not stun.Method.BINDING:
            # We are a STUN server only; TURN methods belong to a TURN server.
            return Outcome.REJECTED, self._fit(_error(request, 400, "Bad Request"), budget)
        ip, port = source
        response = stun.Message(
            stun.Method.BINDING,
            stun.MessageClass.SUCCESS,
            request.transaction_id,
            (stun.XorMappedAddress(ip, port),),
        )
        return Outcome.ANSWERED, self._fit(response, budget)

    def _unknown_attribute(self, request: stun.Message, unknown: tuple[int, ...], budget: int) -> bytes:
        bare = _error(request, 420, "Unknown Attribute")
        # Two bytes a type, the value padded to 4 (RFC 8489 §14): whole pairs of types fit.
        room = (budget - len(stun.encode(bare)) - _ATTRIBUTE_HEADER) // 4 * 2
        listed = stun.UnknownAttributes(unknown[:room])
        return self._fit(_plus(bare, listed), budget)

    def _fit(self, response: stun.Message, budget: int) -> bytes:
        """The response with SOFTWARE when the whole answer stays within ``budget``, else without."""
        if self._software:
            data = stun.encode(_plus(response, *self._software))
            if len(data) <= budget:
                return data
        return stun.encode(response)


def _plus(message: stun.Message, *attributes: stun.Attribute) -> stun.Message:
    return replace(message, attributes=(*message.attributes, *attributes))


def _error(request: stun.Message, code: int, reason: str) -> stun.Message:
    return stun.Message(
        request.method, stun.MessageClass.ERROR, request.transaction_id, (stun.ErrorCodeAttr(code, reason),)
    )


def _unsupported_rfc5780(request: stun.Message) -> tuple[int, ...]:
    """RFC 5780 requests a node with one address cannot honour.

    CHANGE-REQUEST (asking to answer from another address or port) and RESPONSE-PORT are
    comprehension-required; a server without an alternate address must not answer as if it had
    honoured them (RFC 5780 §6.1, §7.2), so they are reported like unknown attributes. A
    CHANGE-REQUEST with neither flag set asks for nothing we cannot do and is answered.
    """
    found: list[int] = []
    change = request.find(stun.ChangeRequest)
    if change is not None and (change.change_ip or change.change_port):
        found.append(stun.AttributeType.CHANGE_REQUEST)
    if request.find(stun.ResponsePort) is not None:
        found.append(stun.AttributeType.RESPONSE_PORT)
    return tuple(found)
