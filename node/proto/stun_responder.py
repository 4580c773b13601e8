"""Sans-IO STUN Binding responder: every node answers Binding requests on its UDP port, so any
node with a public address can serve its peers as a STUN server (RFC 8489 §6.3).

Input: one datagram and the address it came from. Output: the response to send back, or None.
Malformed input is dropped and counted, never raised: one bad packet must not disturb the
node's service to everyone else.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from enum import Enum

from node.proto import stun

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
        unknown = (*request.unknown_comprehension_required(), *_unsupported_rfc5780(request))
        if unknown:
            # RFC 8489 §6.3.1.1: comprehension-required attributes we cannot honour -> 420.
            return Outcome.REJECTED, self._error(
                request, 420, "Unknown Attribute", (stun.UnknownAttributes(tuple(unknown)),)
            )
        if request.method is not stun.Method.BINDING:
            # We are a STUN server only; TURN methods belong to a TURN server.
            return Outcome.REJECTED, self._error(request, 400, "Bad Request")
        ip, port = source
        response = stun.Message(
            stun.Method.BINDING,
            stun.MessageClass.SUCCESS,
            request.transaction_id,
            (stun.XorMappedAddress(ip, port), *self._software),
        )
        return Outcome.ANSWERED, stun.encode(response)

    def _error(
        self,
        request: stun.Message,
        code: int,
        reason: str,
        extra: tuple[stun.Attribute, ...] = (),
    ) -> bytes:
        response = stun.Message(
            request.method,
            stun.MessageClass.ERROR,
            request.transaction_id,
            (stun.ErrorCodeAttr(code, reason), *extra, *self._software),
        )
        return stun.encode(response)


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
