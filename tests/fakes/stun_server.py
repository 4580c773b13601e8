"""A sans-IO STUN server model for in-memory tests: RFC 8489 Binding plus RFC 5780 NAT behaviour
discovery (CHANGE-REQUEST, RESPONSE-PORT, RESPONSE-ORIGIN, OTHER-ADDRESS).

Shape: ``receive(data, src, dst, now) -> list[Datagram]``. ``dst`` is the server address the
datagram arrived at (one of ``addresses``); every returned ``Datagram`` names the server address it
is sent *from*, so a virtual network can deliver it with the right source (RFC 5780 answers from
an address other than the one asked).

Extending it (the TURN server model does): requests are dispatched through ``self.methods``, a
table keyed by ``(Method, MessageClass)`` whose handlers take a ``ServerRequest`` and return the
datagrams to send. A subclass registers more rows, e.g.
``self.methods[(Method.ALLOCATE, MessageClass.REQUEST)] = self._allocate``, and builds answers with
``success``/``error``. Unknown comprehension-required attributes are answered 420 before dispatch
(RFC 8489 §6.3.1.1); a request with no row gets 400; indications with no row are dropped.

Faults a test can switch on: ``ignore_change_request`` (answer CHANGE-REQUEST from the address
asked, as broken servers do), ``omit_other_address`` (a plain RFC 5389 server), ``lie_origin``
(RESPONSE-ORIGIN names an address that did not send the response), ``reject_change_request``
(offer OTHER-ADDRESS but answer CHANGE-REQUEST with 420, as a one-address server does),
``misreport_port`` (add this to the port in XOR-MAPPED-ADDRESS: a server that gets mappings wrong).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from node.proto import stun
from node.proto.stun.attrs import IPAddress

Endpoint = tuple[IPAddress, int]


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP datagram: ``src`` and ``dst`` are (ip, port)."""

    src: Endpoint
    dst: Endpoint
    data: bytes


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """A decoded request (or indication) as a handler sees it."""

    message: stun.Message
    raw: bytes
    src: Endpoint  # the client's transport address as the server sees it
    dst: Endpoint  # the server address it arrived at
    now: float


class Drop(Enum):
    NOT_STUN = "not_stun"
    MALFORMED = "malformed"
    NOT_REQUEST = "not_request"  # responses, and indications without a handler
    NOT_OURS = "not_ours"  # sent to an address this server does not own


Handler = Callable[[ServerRequest], list[Datagram]]


@dataclass
class StunServerModel:
    """A STUN server on ``primary`` and, with ``alternate``, on the four RFC 5780 addresses
    (primary ip/port x alternate ip/port)."""

    primary: Endpoint
    alternate: Endpoint | None = None
    software: str = "stun-model"
    ignore_change_request: bool = False
    reject_change_request: bool = False
    omit_other_address: bool = False
    lie_origin: bool = False
    misreport_port: int = 0
    methods: dict[tuple[stun.Method, stun.MessageClass], Handler] = field(default_factory=dict)
    drops: Counter[Drop] = field(default_factory=Counter)
    answered: int = 0

    def __post_init__(self) -> None:
        self.methods.setdefault((stun.Method.BINDING, stun.MessageClass.REQUEST), self._binding)

    @property
    def addresses(self) -> tuple[Endpoint, ...]:
        """Every transport address the server receives on."""
        if self.alternate is None:
            return (self.primary,)
        (pip, pport), (aip, aport) = self.primary, self.alternate
        return ((pip, pport), (pip, aport), (aip, pport), (aip, aport))

    def other(self, dst: Endpoint) -> Endpoint | None:
        """OTHER-ADDRESS for a request that arrived at ``dst``: differs in both IP and port
        (RFC 5780 §7.4)."""
        if self.alternate is None:
            return None
        return (self._flip_ip(dst[0]), self._flip_port(dst[1]))

    def _flip_ip(self, ip: IPAddress) -> IPAddress:
        assert self.alternate is not None
        return self.alternate[0] if ip == self.primary[0] else self.primary[0]

    def _flip_port(self, port: int) -> int:
        assert self.alternate is not None
        return self.alternate[1] if port == self.primary[1] else self.primary[1]

    # -- input ----------------------------------------------------------------------------------
    def receive(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> list[Datagram]:
        if dst not in self.addresses:
            self.drops[Drop.NOT_OURS] += 1
            return []
        if not stun.is_stun(data):
            self.drops[Drop.NOT_STUN] += 1
            return []
        try:
            message = stun.decode(data)
        except stun.StunDecodeError:
            self.drops[Drop.MALFORMED] += 1
            return []
        request = ServerRequest(message, data, src, dst, now)
        if message.message_class is stun.MessageClass.REQUEST:
            unknown = message.unknown_comprehension_required()
            if unknown:
                return [self.error(request, 420, "Unknown Attribute", (stun.UnknownAttributes(unknown),))]
        handler = self.methods.get((message.method, message.message_class))
        if handler is None:
            if message.message_class is stun.MessageClass.REQUEST:
                return [self.error(request, 400, "Bad Request")]
            self.drops[Drop.NOT_REQUEST] += 1
            return []
        return handler(request)

    # -- Binding (RFC 8489 §6.3, RFC 5780 §6) -----------------------------------------------------
    def _binding(self, request: ServerRequest) -> list[Datagram]:
        message = request.message
        change = message.find(stun.ChangeRequest)
        wants_change = change is not None and (change.change_ip or change.change_port)
        cannot = self.alternate is None or (wants_change and self.reject_change_request)
        if (wants_change or message.find(stun.ResponsePort) is not None) and cannot:
            # RFC 5780 §6.1: a server without an alternate address cannot honour them.
            types = [stun.AttributeType.CHANGE_REQUEST] if wants_change else []
            if message.find(stun.ResponsePort) is not None:
                types.append(stun.AttributeType.RESPONSE_PORT)
            return [self.error(request, 420, "Unknown Attribute", (stun.UnknownAttributes(tuple(types)),))]
        source = request.dst
        if change is not None and wants_change and not self.ignore_change_request:
            ip = self._flip_ip(source[0]) if change.change_ip else source[0]
            port = self._flip_port(source[1]) if change.change_port else source[1]
            source = (ip, port)
        ip, port = request.src
        attrs: list[stun.Attribute] = [stun.XorMappedAddress(ip, (port + self.misreport_port) % 65536)]
        other = self.other(request.dst)
        if other is not None and not self.omit_other_address:
            origin = other if self.lie_origin else source
            attrs += [stun.ResponseOrigin(*origin), stun.OtherAddress(*other)]
        return [self.success(request, attrs, source=source)]

    # -- building answers (for handlers, here and in subclasses) ----------------------------------
    def success(
        self,
        request: ServerRequest,
        attrs: list[stun.Attribute] | tuple[stun.Attribute, ...],
        *,
        source: Endpoint | None = None,
        key: bytes | None = None,
    ) -> Datagram:
        message = request.message
        response = stun.Message(
            message.method,
            stun.MessageClass.SUCCESS,
            message.transaction_id,
            (*attrs, *self._software()),
        )
        return self._answer(request, stun.encode(response, key=key), source)

    def error(
        self,
        request: ServerRequest,
        code: int,
        reason: str,
        extra: tuple[stun.Attribute, ...] = (),
        *,
        key: bytes | None = None,
    ) -> Datagram:
        message = request.message
        response = stun.Message(
            message.method,
            stun.MessageClass.ERROR,
            message.transaction_id,
            (stun.ErrorCodeAttr(code, reason), *extra, *self._software()),
        )
        return self._answer(request, stun.encode(response, key=key), None)

    def _answer(self, request: ServerRequest, data: bytes, source: Endpoint | None) -> Datagram:
        self.answered += 1
        target = request.src
        port = request.message.find(stun.ResponsePort)
        if port is not None and self.alternate is not None:
            target = (target[0], port.port)  # RFC 5780 §6.1: answer to that port instead
        return Datagram(source or request.dst, target, data)

    def _software(self) -> tuple[stun.Attribute, ...]:
        return (stun.Software(self.software),) if self.software else ()
