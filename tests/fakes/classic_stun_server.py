"""A sans-IO model of a classic RFC 3489 STUN server, for in-memory tests and (driven by
``tests/lab/classic_stund.py``) the NAT lab.

It knows nothing of RFC 5389/8489: the 16 bytes after the length are one opaque transaction id
that it echoes (RFC 3489 §11.1), so a request with the magic cookie gets the cookie back. It
listens on two addresses and two ports (§8: the four combinations), answers a Binding Request
(§8.1) with MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS (§11.2.1, §11.2.5, §11.2.3) and a
SERVER name, honours CHANGE-REQUEST (§11.2.4) by answering from the changed address, and answers
420 with UNKNOWN-ATTRIBUTES to an unknown mandatory attribute (§8.1, §11.2.10). Never XOR-MAPPED-ADDRESS,
RESPONSE-ORIGIN, OTHER-ADDRESS or FINGERPRINT; no TCP (RFC 3489 is UDP only).

``like_stund`` adds what Debian's ``stun-server`` (Vovida stund 0.97) sends as well: an attribute
0x0020 holding the mapped address XORed with the id's first bytes, which with our requests is a
correct XOR-MAPPED-ADDRESS (captured in tests/unit/test_stun_rfc3489.py).

Shape as ``StunServerModel``: ``addresses`` and ``receive(data, src, dst, now) -> list[Datagram]``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from node.proto import stun
from node.proto.stun.attrs import IPAddress
from tests.fakes.stun_server import Datagram, Drop, Endpoint


@dataclass
class ClassicStunServerModel:
    primary: Endpoint
    alternate: Endpoint  # RFC 3489 §8: a classic server needs both to serve CHANGE-REQUEST
    software: str = "classic-stun-model"
    like_stund: bool = False
    drops: Counter[Drop] = field(default_factory=Counter)
    answered: int = 0

    def __post_init__(self) -> None:
        if self.alternate[0] == self.primary[0] or self.alternate[1] == self.primary[1]:
            raise ValueError(f"alternate {self.alternate} must differ from {self.primary} in IP and port")

    @property
    def addresses(self) -> tuple[Endpoint, ...]:
        (pip, pport), (aip, aport) = self.primary, self.alternate
        return ((pip, pport), (pip, aport), (aip, pport), (aip, aport))

    def _flip_ip(self, ip: IPAddress) -> IPAddress:
        return self.alternate[0] if ip == self.primary[0] else self.primary[0]

    def _flip_port(self, port: int) -> int:
        return self.alternate[1] if port == self.primary[1] else self.primary[1]

    def receive(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> list[Datagram]:
        del now  # a classic server keeps no state
        if dst not in self.addresses:
            self.drops[Drop.NOT_OURS] += 1
            return []
        try:
            # Cookie or not, the id is echoed byte for byte: a 12-byte id after the cookie is
            # encoded back behind the same cookie.
            message = stun.decode(data, rfc3489=True)
        except stun.StunDecodeError:
            self.drops[Drop.MALFORMED] += 1
            return []
        if (message.method, message.message_class) != (stun.Method.BINDING, stun.MessageClass.REQUEST):
            self.drops[Drop.NOT_REQUEST] += 1
            return []
        unknown = message.unknown_comprehension_required()
        if unknown:
            attrs: list[stun.Attribute] = [
                stun.ErrorCodeAttr(420, "Unknown Attribute"),
                stun.UnknownAttributes(unknown),
            ]
            return [self._answer(message, stun.MessageClass.ERROR, attrs, dst, src)]
        source = dst
        change = message.find(stun.ChangeRequest)
        if change is not None:
            source = (
                self._flip_ip(dst[0]) if change.change_ip else dst[0],
                self._flip_port(dst[1]) if change.change_port else dst[1],
            )
        attrs = [
            stun.MappedAddress(*src),
            stun.SourceAddress(*source),
            # §11.2.3: where answers would come from with both flags set, seen from ``dst``.
            stun.ChangedAddress(self._flip_ip(dst[0]), self._flip_port(dst[1])),
        ]
        if self.like_stund:
            attrs.append(stun.XorMappedAddress(*src))
        return [self._answer(message, stun.MessageClass.SUCCESS, attrs, source, src)]

    def _answer(
        self,
        request: stun.Message,
        message_class: stun.MessageClass,
        attrs: list[stun.Attribute],
        source: Endpoint,
        target: Endpoint,
    ) -> Datagram:
        self.answered += 1
        if self.software:
            # SERVER (0x8022, RFC 8489's SOFTWARE) is not in RFC 3489, but stund sends it; an
            # optional attribute (>= 0x8000, §11.2) a classic client ignores.
            attrs.append(stun.Software(self.software))
        response = stun.Message(stun.Method.BINDING, message_class, request.transaction_id, tuple(attrs))
        return Datagram(source, target, stun.encode(response, fingerprint=False))
