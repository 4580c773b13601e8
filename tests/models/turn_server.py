"""A sans-IO TURN server model (RFC 8656) for in-memory tests of the TURN client, in virtual time.

It keeps what a real server keeps and expires it on the clock it is given: allocations (by the
client's address), permissions (by peer IP, RFC 8656 §9), channel bindings (RFC 8656 §12), the
long-term credential nonce (RFC 8489 §9.2). Data the client relays without a live allocation,
permission or channel is dropped and counted, so a client whose refresh timers are wrong loses
traffic here exactly as it would on coturn.

Knobs for the error branches: ``fail_next`` (answer the next request of a method with an error
code), ``rotate_nonce`` (the next authenticated request gets 438), ``silent`` (answer nothing: an
unreachable server), ``sign_responses`` and ``forge_integrity``.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from dataclasses import dataclass, field

from node.proto import stun

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Address = tuple[IPAddress, int]
RELAY_IP = ipaddress.IPv4Address("198.51.100.1")


@dataclass(frozen=True, slots=True)
class ToClient:
    client: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class ToPeer:
    relayed: Address
    peer: Address
    data: bytes


@dataclass(slots=True)
class _Allocation:
    client: Address
    relayed: Address
    username: str
    expires: float
    stream: bool
    permissions: dict[IPAddress, float] = field(default_factory=dict)
    channels: dict[int, tuple[Address, float]] = field(default_factory=dict)


@dataclass(slots=True)
class _Failure:
    code: int
    attributes: tuple[stun.Attribute, ...] = ()


class TurnServerModel:
    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        realm: str = "model.test",
        relay_ip: IPAddress = RELAY_IP,
        max_lifetime: int = 3600,
        default_lifetime: int = 600,
        permission_lifetime: float = 300.0,
        channel_lifetime: float = 600.0,
    ) -> None:
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
        self._out: list[ToClient | ToPeer] = []
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
    def take(self) -> list[ToClient | ToPeer]:
        out, self._out = self._out, []
        return out

    def receive_from_peer(self, relayed: Address, peer: Address, data: bytes, now: float) -> None:
        alloc = self._by_relayed.get(relayed)
        if alloc is None or now >= alloc.expires:
            self.dropped["peer_no_allocation"] += 1
            return
        if alloc.permissions.get(peer[0], -math.inf) <= now:
            self.dropped["peer_no_permission"] += 1
            return
        for number, (bound, expires) in alloc.channels.items():
            if bound == peer and now < expires:
                frame = stun.encode_channel_data(number, data, pad=alloc.stream)
                self._out.append(ToClient(alloc.client, frame))
                return
        indication = stun.Message(
            stun.Method.DATA,
            stun.MessageClass.INDICATION,
            stun.new_transaction_id(),
            (stun.XorPeerAddress(peer[0], peer[1]), stun.Data(data)),
        )
        self._out.append(ToClient(alloc.client, stun.encode(indication)))

    def receive(self, data: bytes, client: Address, now: float, *, stream: bool = False) -> None:
        if self.silent:
            return
        if stun.is_channel_data(data) and not stun.is_stun(data):
            self._channel_data(data, client, now)
            return
        try:
            msg = stun.decode(data)
        except stun.StunDecodeError:
            self.dropped["malformed"] += 1
            return
        if msg.message_class is stun.MessageClass.INDICATION:
            self._send_indication(msg, client, now)
            return
        if msg.message_class is not stun.MessageClass.REQUEST:
            self.dropped["not_request"] += 1
            return
        self.requests[msg.method] += 1
        cached = self._answered.get(msg.transaction_id)
        if cached is not None:  # a retransmission gets the same answer (RFC 8489 §6.3.1)
            self._out.append(ToClient(client, cached))
            return
        key = self._authenticate(msg, data, client)
        if key is None:
            return
        failure = self.fail_next.pop(msg.method, None)
        if failure is not None:
            self._error(msg, client, failure.code, key, failure.attributes)
            return
        handler = {
            stun.Method.ALLOCATE: self._allocate,
            stun.Method.REFRESH: self._refresh,
            stun.Method.CREATE_PERMISSION: self._permission,
            stun.Method.CHANNEL_BIND: self._channel_bind,
        }.get(msg.method)
        if handler is None:
            self._error(msg, client, 400, key)
            return
        handler(msg, client, key, now, stream)

    # -- authentication (RFC 8489 §9.2.4) ------------------------------------------------------------
    def _authenticate(self, msg: stun.Message, raw: bytes, client: Address) -> bytes | None:
        username = msg.find(stun.Username)
        if msg.find(stun.MessageIntegrity) is None or username is None:
            self._error(msg, client, 401, None, (stun.Realm(self.realm), stun.Nonce(self.nonce)))
            return None
        password = self.users.get(username.value)
        key = stun.long_term_key(username.value, self.realm, password) if password is not None else None
        if key is None or not stun.verify_integrity(raw, key):
            self._error(msg, client, 401, None, (stun.Realm(self.realm), stun.Nonce(self.nonce)))
            return None
        nonce = msg.find(stun.Nonce)
        if nonce is None or nonce.value != self.nonce:
            self._error(msg, client, 438, None, (stun.Realm(self.realm), stun.Nonce(self.nonce)))
            return None
        return key

    # -- methods -------------------------------------------------------------------------------------
    def _allocate(self, msg: stun.Message, client: Address, key: bytes, now: float, stream: bool) -> None:
        existing = self.allocations.get(client)
        if existing is not None and now < existing.expires:
            self._error(msg, client, 437, key)
            return
        if msg.find(stun.RequestedTransport) is None:
            self._error(msg, client, 400, key)
            return
        username = msg.find(stun.Username)
        assert username is not None
        lifetime = self._lifetime(msg)
        relayed: Address = (self.relay_ip, self._next_port)
        self._next_port += 1
        alloc = _Allocation(client, relayed, username.value, now + lifetime, stream)
        self.allocations[client] = alloc
        self._by_relayed[relayed] = alloc
        self._success(
            msg,
            client,
            key,
            (
                stun.XorRelayedAddress(relayed[0], relayed[1]),
                stun.Lifetime(lifetime),
                stun.XorMappedAddress(client[0], client[1]),
            ),
        )

    def _lifetime(self, msg: stun.Message) -> int:
        asked = msg.find(stun.Lifetime)
        wanted = asked.seconds if asked is not None else self.default_lifetime
        return min(wanted, self.max_lifetime)

    def _live(self, msg: stun.Message, client: Address, key: bytes, now: float) -> _Allocation | None:
        alloc = self.allocations.get(client)
        if alloc is None or now >= alloc.expires:
            self._error(msg, client, 437, key)
            return None
        return alloc

    def _refresh(self, msg: stun.Message, client: Address, key: bytes, now: float, _stream: bool) -> None:
        alloc = self._live(msg, client, key, now)
        if alloc is None:
            return
        lifetime = self._lifetime(msg)
        if lifetime == 0:
            del self.allocations[client]
            del self._by_relayed[alloc.relayed]
        else:
            alloc.expires = now + lifetime
        self._success(msg, client, key, (stun.Lifetime(lifetime),))

    def _permission(self, msg: stun.Message, client: Address, key: bytes, now: float, _stream: bool) -> None:
        alloc = self._live(msg, client, key, now)
        if alloc is None:
            return
        peers = msg.find_all(stun.XorPeerAddress)
        if not peers:
            self._error(msg, client, 400, key)
            return
        for peer in peers:
            alloc.permissions[peer.ip] = now + self.permission_lifetime
        self._success(msg, client, key, ())

    def _channel_bind(
        self, msg: stun.Message, client: Address, key: bytes, now: float, _stream: bool
    ) -> None:
        alloc = self._live(msg, client, key, now)
        if alloc is None:
            return
        number, peer_attr = msg.find(stun.ChannelNumber), msg.find(stun.XorPeerAddress)
        if number is None or peer_attr is None or not stun.CHANNEL_MIN <= number.number <= stun.CHANNEL_MAX:
            self._error(msg, client, 400, key)
            return
        peer = (peer_attr.ip, peer_attr.port)
        bound = alloc.channels.get(number.number)
        # RFC 8656 §12.2: a number bound to another peer, or a peer bound to another number: 400.
        if bound is not None and bound[0] != peer:
            self._error(msg, client, 400, key)
            return
        if any(p == peer and n != number.number for n, (p, _) in alloc.channels.items()):
            self._error(msg, client, 400, key)
            return
        alloc.channels[number.number] = (peer, now + self.channel_lifetime)
        alloc.permissions[peer[0]] = now + self.permission_lifetime
        self._success(msg, client, key, ())

    # -- data ------------------------------------------------------------------------------------------
    def _send_indication(self, msg: stun.Message, client: Address, now: float) -> None:
        alloc = self.allocations.get(client)
        peer, data = msg.find(stun.XorPeerAddress), msg.find(stun.Data)
        if alloc is None or now >= alloc.expires or peer is None or data is None:
            self.dropped["send_no_allocation"] += 1
            return
        if alloc.permissions.get(peer.ip, -math.inf) <= now:
            self.dropped["send_no_permission"] += 1
            return
        self._out.append(ToPeer(alloc.relayed, (peer.ip, peer.port), data.value))

    def _channel_data(self, data: bytes, client: Address, now: float) -> None:
        alloc = self.allocations.get(client)
        try:
            frame = stun.decode_channel_data(data)
        except stun.StunDecodeError:
            self.dropped["malformed"] += 1
            return
        if alloc is None or now >= alloc.expires:
            self.dropped["channel_no_allocation"] += 1
            return
        bound = alloc.channels.get(frame.channel)
        if bound is None or now >= bound[1]:
            self.dropped["channel_unbound"] += 1
            return
        if alloc.permissions.get(bound[0][0], -math.inf) <= now:
            self.dropped["channel_no_permission"] += 1
            return
        self._out.append(ToPeer(alloc.relayed, bound[0], frame.data))

    # -- responses ------------------------------------------------------------------------------------
    def _success(
        self, msg: stun.Message, client: Address, key: bytes, attrs: tuple[stun.Attribute, ...]
    ) -> None:
        reply = stun.Message(msg.method, stun.MessageClass.SUCCESS, msg.transaction_id, attrs)
        self._reply(reply, client, key)

    def _error(
        self,
        msg: stun.Message,
        client: Address,
        code: int,
        key: bytes | None,
        attrs: tuple[stun.Attribute, ...] = (),
    ) -> None:
        reply = stun.Message(
            msg.method,
            stun.MessageClass.ERROR,
            msg.transaction_id,
            (stun.ErrorCodeAttr(code, "model"), *attrs),
        )
        self._reply(reply, client, key)

    def _reply(self, reply: stun.Message, client: Address, key: bytes | None) -> None:
        if key is not None and self.forge_integrity:
            key = b"not the key"
        data = stun.encode(reply, key=key if self.sign_responses else None)
        self._answered[reply.transaction_id] = data
        if len(self._answered) > 64:
            del self._answered[next(iter(self._answered))]
        self._out.append(ToClient(client, data))
