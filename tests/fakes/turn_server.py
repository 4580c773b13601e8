"""A sans-IO TURN server model (RFC 8656) for in-memory tests of the TURN client, in virtual time.

It keeps what a real server keeps and expires it on the clock it is given: allocations (by the
client's address), permissions (by peer IP, RFC 8656 §9), channel bindings (RFC 8656 §12), the
long-term credential nonce (RFC 8489 §9.2). Data the client relays without a live allocation,
permission or channel is dropped and counted, so a client whose refresh timers are wrong loses
traffic here exactly as it would on coturn.

Knobs for the error branches: ``fail_next`` (answer the next request of a method with an error
code), ``rotate_nonce`` (the next authenticated request gets 438), ``silent`` (answer nothing: an
unreachable server), ``sign_responses`` and ``forge_integrity``.

Built on the STUN server model (``tests.fakes.stun_server``): the TURN methods are rows of its
method table, answers are its ``Datagram`` values (from the server address to the client; relayed
data from the relayed address to the peer), and Binding still works.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from node.proto import stun
from node.proto.stun.attrs import IPAddress
from tests.fakes.stun_server import Datagram, ServerRequest, StunServerModel

Address = tuple[IPAddress, int]
RELAY_IP = ipaddress.IPv4Address("198.51.100.1")
SERVER = (ipaddress.IPv4Address("198.51.100.10"), 3478)


@dataclass(slots=True)
class _Allocation:
    client: Address
    relayed: Address
    username: str
    expires: float
    permissions: dict[IPAddress, float] = field(default_factory=dict)
    channels: dict[int, tuple[Address, float]] = field(default_factory=dict)


AuthHandler = Callable[[ServerRequest, bytes], list[Datagram]]
Handler = Callable[[ServerRequest], list[Datagram]]


@dataclass(slots=True)
class _Failure:
    code: int
    attributes: tuple[stun.Attribute, ...] = ()


class TurnServerModel(StunServerModel):
    def __init__(
        self,
        *,
        primary: Address = SERVER,
        users: dict[str, str] | None = None,
        realm: str = "model.test",
        relay_ip: IPAddress = RELAY_IP,
        max_lifetime: int = 3600,
        default_lifetime: int = 600,
        permission_lifetime: float = 300.0,
        channel_lifetime: float = 600.0,
    ) -> None:
        super().__init__(primary, software="")
        for method, handler in (
            (stun.Method.ALLOCATE, self._allocate),
            (stun.Method.REFRESH, self._refresh),
            (stun.Method.CREATE_PERMISSION, self._permission),
            (stun.Method.CHANNEL_BIND, self._channel_bind),
        ):
            self.methods[(method, stun.MessageClass.REQUEST)] = self._authenticated(method, handler)
        self.methods[(stun.Method.SEND, stun.MessageClass.INDICATION)] = self._send_indication
        self.stream_clients: set[Address] = set()  # ChannelData to these is padded (RFC 8656 §12.5)
        self.users = users if users is not None else {"alice": "wonderland"}
        self.realm = realm
        self.relay_ip = relay_ip
        self.max_lifetime = max_lifetime
        self.default_lifetime = default_lifetime
        self.permission_lifetime = permission_lifetime
        self.channel_lifetime = channel_lifetime
        self.nonce = "nonce-0"
        self._nonce_serial = 0
        self.allocations: dict[Address, _Allocation] = {}
        self._by_relayed: dict[Address, _Allocation] = {}
        self._next_port = 50000
        self.fail_next: dict[stun.Method, _Failure] = {}
        self.silent = False
        self.sign_responses = True
        self.forge_integrity = False
        self.requests: Counter[stun.Method] = Counter()
        self.dropped: Counter[str] = Counter()
        self._answered: dict[bytes, bytes] = {}

    # -- knobs -----------------------------------------------------------------------------------
    def rotate_nonce(self) -> None:
        self._nonce_serial += 1
        self.nonce = f"nonce-{self._nonce_serial}"

    def fail(self, method: stun.Method, code: int, *attributes: stun.Attribute) -> None:
        self.fail_next[method] = _Failure(code, attributes)

    def forget_everything(self) -> None:
        """A restart: every allocation gone, a new nonce."""
        self.allocations.clear()
        self._by_relayed.clear()
        self.rotate_nonce()

    # -- I/O ---------------------------------------------------------------------------------------
    def receive(self, data: bytes, src: Address, dst: Address, now: float) -> list[Datagram]:
        if self.silent:
            return []
        if stun.is_channel_data(data) and not stun.is_stun(data):
            return self._channel_data(data, src, now)
        return super().receive(data, src, dst, now)

    def receive_from_peer(self, relayed: Address, peer: Address, data: bytes, now: float) -> list[Datagram]:
        """A datagram from ``peer`` to the relayed address ``relayed`` (RFC 8656 §11.3, §12.6)."""
        alloc = self._by_relayed.get(relayed)
        if alloc is None or now >= alloc.expires:
            self.dropped["peer_no_allocation"] += 1
            return []
        if alloc.permissions.get(peer[0], -math.inf) <= now:
            self.dropped["peer_no_permission"] += 1
            return []
        for number, (bound, expires) in alloc.channels.items():
            if bound == peer and now < expires:
                pad = alloc.client in self.stream_clients
                return [Datagram(self.primary, alloc.client, stun.encode_channel_data(number, data, pad=pad))]
        indication = stun.Message(
            stun.Method.DATA,
            stun.MessageClass.INDICATION,
            stun.new_transaction_id(),
            (stun.XorPeerAddress(peer[0], peer[1]), stun.Data(data)),
        )
        return [Datagram(self.primary, alloc.client, stun.encode(indication))]

    # -- authentication (RFC 8489 §9.2.4) ------------------------------------------------------------
    def _authenticated(self, method: stun.Method, handler: AuthHandler) -> Handler:
        def handle(request: ServerRequest) -> list[Datagram]:
            self.requests[method] += 1
            cached = self._answered.get(request.message.transaction_id)
            if cached is not None:  # a retransmission gets the same answer (RFC 8489 §6.3.1)
                return [Datagram(request.dst, request.src, cached)]
            key = self._key_for(request)
            if key is None:
                challenge = (stun.Realm(self.realm), stun.Nonce(self.nonce))
                return [self.error(request, 401, "Unauthorized", challenge)]
            if request.message.find(stun.Nonce) != stun.Nonce(self.nonce):
                challenge = (stun.Realm(self.realm), stun.Nonce(self.nonce))
                return [self.error(request, 438, "Stale Nonce", challenge)]
            failure = self.fail_next.pop(method, None)
            if failure is not None:
                answers = [self._error(request, failure.code, key, failure.attributes)]
            else:
                answers = handler(request, key)
            for answer in answers:
                self._answered[request.message.transaction_id] = answer.data
            if len(self._answered) > 64:
                del self._answered[next(iter(self._answered))]
            return answers

        return handle

    def _key_for(self, request: ServerRequest) -> bytes | None:
        msg = request.message
        username = msg.find(stun.Username)
        if msg.find(stun.MessageIntegrity) is None or username is None:
            return None
        password = self.users.get(username.value)
        if password is None:
            return None
        key = stun.long_term_key(username.value, self.realm, password)
        return key if stun.verify_integrity(request.raw, key) else None

    # -- methods -------------------------------------------------------------------------------------
    def _allocate(self, request: ServerRequest, key: bytes) -> list[Datagram]:
        msg, client, now = request.message, request.src, request.now
        existing = self.allocations.get(client)
        if existing is not None and now < existing.expires:
            return [self._error(request, 437, key)]
        if msg.find(stun.RequestedTransport) is None:
            return [self._error(request, 400, key)]
        username = msg.find(stun.Username)
        assert username is not None
        lifetime = self._lifetime(msg)
        relayed: Address = (self.relay_ip, self._next_port)
        self._next_port += 1
        alloc = _Allocation(client, relayed, username.value, now + lifetime)
        self.allocations[client] = alloc
        self._by_relayed[relayed] = alloc
        attrs = (
            stun.XorRelayedAddress(relayed[0], relayed[1]),
            stun.Lifetime(lifetime),
            stun.XorMappedAddress(client[0], client[1]),
        )
        return [self._success(request, key, attrs)]

    def _lifetime(self, msg: stun.Message) -> int:
        asked = msg.find(stun.Lifetime)
        wanted = asked.seconds if asked is not None else self.default_lifetime
        return min(wanted, self.max_lifetime)

    def _live(self, request: ServerRequest) -> _Allocation | None:
        alloc = self.allocations.get(request.src)
        if alloc is None or request.now >= alloc.expires:
            return None
        return alloc

    def _refresh(self, request: ServerRequest, key: bytes) -> list[Datagram]:
        alloc = self._live(request)
        if alloc is None:
            return [self._error(request, 437, key)]
        lifetime = self._lifetime(request.message)
        if lifetime == 0:
            del self.allocations[alloc.client]
            del self._by_relayed[alloc.relayed]
        else:
            alloc.expires = request.now + lifetime
        return [self._success(request, key, (stun.Lifetime(lifetime),))]

    def _permission(self, request: ServerRequest, key: bytes) -> list[Datagram]:
        alloc = self._live(request)
        if alloc is None:
            return [self._error(request, 437, key)]
        peers = request.message.find_all(stun.XorPeerAddress)
        if not peers:
            return [self._error(request, 400, key)]
        for peer in peers:
            alloc.permissions[peer.ip] = request.now + self.permission_lifetime
        return [self._success(request, key, ())]

    def _channel_bind(self, request: ServerRequest, key: bytes) -> list[Datagram]:
        alloc = self._live(request)
        if alloc is None:
            return [self._error(request, 437, key)]
        msg = request.message
        number, peer_attr = msg.find(stun.ChannelNumber), msg.find(stun.XorPeerAddress)
        if number is None or peer_attr is None or not stun.CHANNEL_MIN <= number.number <= stun.CHANNEL_MAX:
            return [self._error(request, 400, key)]
        peer = (peer_attr.ip, peer_attr.port)
        bound = alloc.channels.get(number.number)
        # RFC 8656 §12.2: a number bound to another peer, or a peer bound to another number: 400.
        if bound is not None and bound[0] != peer:
            return [self._error(request, 400, key)]
        if any(p == peer and n != number.number for n, (p, _) in alloc.channels.items()):
            return [self._error(request, 400, key)]
        alloc.channels[number.number] = (peer, request.now + self.channel_lifetime)
        alloc.permissions[peer[0]] = request.now + self.permission_lifetime
        return [self._success(request, key, ())]

    # -- data ------------------------------------------------------------------------------------------
    def _send_indication(self, request: ServerRequest) -> list[Datagram]:
        msg, now = request.message, request.now
        alloc = self._live(request)
        peer, data = msg.find(stun.XorPeerAddress), msg.find(stun.Data)
        if alloc is None or peer is None or data is None:
            self.dropped["send_no_allocation"] += 1
            return []
        if alloc.permissions.get(peer.ip, -math.inf) <= now:
            self.dropped["send_no_permission"] += 1
            return []
        return [Datagram(alloc.relayed, (peer.ip, peer.port), data.value)]

    def _channel_data(self, data: bytes, client: Address, now: float) -> list[Datagram]:
        alloc = self.allocations.get(client)
        try:
            frame = stun.decode_channel_data(data)
        except stun.StunDecodeError:
            self.dropped["malformed"] += 1
            return []
        if alloc is None or now >= alloc.expires:
            self.dropped["channel_no_allocation"] += 1
            return []
        bound = alloc.channels.get(frame.channel)
        if bound is None or now >= bound[1]:
            self.dropped["channel_unbound"] += 1
            return []
        if alloc.permissions.get(bound[0][0], -math.inf) <= now:
            self.dropped["channel_no_permission"] += 1
            return []
        return [Datagram(alloc.relayed, bound[0], frame.data)]

    # -- responses (signed with the long-term key, RFC 8489 §9.2.4) --------------------------------------
    def _signing_key(self, key: bytes) -> bytes | None:
        if not self.sign_responses:
            return None
        return b"not the key" if self.forge_integrity else key

    def _success(self, request: ServerRequest, key: bytes, attrs: tuple[stun.Attribute, ...]) -> Datagram:
        return self.success(request, attrs, key=self._signing_key(key))

    def _error(
        self, request: ServerRequest, code: int, key: bytes, attrs: tuple[stun.Attribute, ...] = ()
    ) -> Datagram:
        return self.error(request, code, "model", attrs, key=self._signing_key(key))
