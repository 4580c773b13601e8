"""Sans-IO STUN Binding responder: every node answers Binding requests on its UDP port, so any
node with a public address can serve its peers as a STUN server (RFC 8489 §6.3).

Input: one datagram and the address it came from. Output: the response to send back, or None.
Malformed input is dropped and counted, never raised: one bad packet must not disturb the
node's service to everyone else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from node.proto import stun

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Outcome(Enum):
    ANSWERED = "answered"
    REJECTED = "rejected"  # answered with an error response (400, 420)
    NOT_STUN = "not_stun"  # someone else's datagram (application frames); not ours to judge
    MALFORMED = "malformed"  # looked like STUN but failed to decode or its FINGERPRINT: dropped
    IGNORED = "ignored"  # indications (keepalives) and responses: no answer is due


@dataclass(slots=True)
class ResponderCounters:
    answered: int = 0
    rejected: int = 0
    not_stun: int = 0
    malformed: int = 0
    ignored: int = 0


class BindingResponder:
    def __init__(self, software: str = "") -> None:
        self._software = (stun.Software(software),) if software else ()
        self.counters = ResponderCounters()

    def handle(self, data: bytes, source: tuple[IPAddress, int]) -> tuple[Outcome, bytes | None]:
        outcome, response = self._respond(data, source)
        setattr(self.counters, outcome.value, getattr(self.counters, outcome.value) + 1)
        return outcome, response

    def _respond(self, data: bytes, source: tuple[IPAddress, int]) -> tuple[Outcome, bytes | None]:
        if not stun.is_stun(data):
            return Outcome.NOT_STUN, None
        try:
            request = stun.decode(data)
        except stun.StunDecodeError:
            return Outcome.MALFORMED, None
        # RFC 8489 §7.3: a FINGERPRINT that does not match means this is not a STUN message.
        if request.find(stun.Fingerprint) is not None and not stun.verify_fingerprint(data):
            return Outcome.MALFORMED, None
        if request.message_class is not stun.MessageClass.REQUEST:
            # Indications (RFC 8489 §6.3.2) get no response; responses are for our client side.
            return Outcome.IGNORED, None
        unknown = request.unknown_comprehension_required()
        if unknown:
            # RFC 8489 §6.3.1.1: unknown comprehension-required attributes -> 420 listing them.
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
