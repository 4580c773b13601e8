"""Sans-IO TURN client (RFC 8656, RFC 5766): one allocation on one connection to one server.

aioquic's shape: ``receive(data, now)`` (a datagram, or stream bytes when ``stream`` is set),
``datagrams_to_send(now)``, ``get_timer()``, ``handle_timer(now)``, ``next_event()``. Nothing here
reads a clock or touches a socket.

What it does:
- Allocate with REQUESTED-TRANSPORT UDP; a 401 gives REALM and NONCE and the request is repeated
  once with long-term credentials (RFC 8489 §9.2); a 401 after that is ``TurnAuthError``. A 438
  (stale nonce) on any request repeats it with the new nonce (§9.2.5). 300 is ``TurnTryAlternate``
  with the ALTERNATE-SERVER; 437, 486, 508 and other codes are ``TurnRefusedError``.
- Every response to an authenticated request is checked: a success must carry a
  MESSAGE-INTEGRITY(-SHA256) that verifies, an error may lack one (the server could not know the
  key) but a wrong one is dropped. So a forged packet may deny service, never fake a success.
- The allocation is refreshed at a safe margin before its LIFETIME runs out (``refresh_after``).
- Sending to a peer: CreatePermission first (data waits in a bounded queue), then ChannelBind;
  until the channel is bound, data goes in Send indications (RFC 8656 §11), afterwards in
  ChannelData (§12), padded to 4 bytes on streams (§12.5). Permissions of peers in use are
  refreshed well inside their lifetime (300 s, §9); a bound channel is refreshed with ChannelBind,
  which refreshes its permission too (§12.3). An idle peer's permission lapses; using it again
  installs a new one.
- ``close`` sends Refresh with LIFETIME 0 (§7.5).
- A server that falls silent is found within seconds, not at the next refresh: silence while
  sending, or a long idle spell, starts a short probe (a Refresh); no answer loses the
  allocation (``node.proto.turn.liveness``).

Bad input never raises: undecodable datagrams, responses that match no transaction, a broken
integrity, ChannelData for an unbound channel are dropped and counted in ``counters``.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from node.proto import stun
from node.proto.stun.channeldata import encode_channel_data, is_channel_data
from node.proto.stun.stream import StreamFramer, StunFrame
from node.proto.stun.transaction import DEFAULT_TIMING, Timing, TransactionManager, TransactionTimedOut
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import (
    TurnAuthError,
    TurnClosedError,
    TurnError,
    TurnProtocolError,
    TurnRefusedError,
    TurnTryAlternate,
    TurnUnreachableError,
    TurnUsageError,
)
from node.proto.turn.events import (
    Address,
    Allocated,
    AllocationFailed,
    AllocationLost,
    AllocationRefreshed,
    ChannelBound,
    Closed,
    DataReceived,
    PermissionFailed,
    PermissionInstalled,
    TurnEvent,
)
from node.proto.turn.liveness import DEFAULT_LIVENESS, Liveness, ServerWatch

PERMISSION_LIFETIME: Final = 300.0  # RFC 8656 §9: permissions last 300 s
CHANNEL_LIFETIME: Final = 600.0  # RFC 8656 §12: channel bindings last 10 minutes
DEFAULT_LIFETIME: Final = 600  # RFC 8656 §7.2: the default allocation lifetime
MAX_REFRESH_MARGIN: Final = 60.0  # refresh this long before expiry (> a UDP transaction's 39.5 s)
MAX_STALE_NONCE_RETRIES: Final = 3  # 438s in a row on one request before giving up
_SERVER: Final = 0  # one server per client: the TransactionManager key


def refresh_after(lifetime: float) -> float:
    """Seconds after a grant to refresh it: a minute before expiry, or at half of a short one.

    60 s exceeds a UDP transaction's 39.5 s worst case, so a refresh that needs every
    retransmission still lands in time; for the short lifetimes of tests, half leaves margin."""
    return max(lifetime / 2.0, lifetime - MAX_REFRESH_MARGIN)


@dataclass(frozen=True, slots=True)
class TurnTiming:
    """Lifetimes the server does not announce (RFC 8656 fixes them; coturn can shorten them with
    ``--permission-lifetime``/``--channel-lifetime``), and how long a peer counts as in use."""

    permission_lifetime: float = PERMISSION_LIFETIME
    channel_lifetime: float = CHANNEL_LIFETIME
    idle_after: float = PERMISSION_LIFETIME  # no traffic for this long: stop refreshing

    def __post_init__(self) -> None:
        for name in ("permission_lifetime", "channel_lifetime", "idle_after"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise TurnUsageError(f"{name} must be a positive finite number, got {value}")


class AllocationState(enum.Enum):
    IDLE = "idle"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class AllocationInput(enum.Enum):
    ALLOCATE = "allocate"
    GRANTED = "granted"
    REJECTED = "rejected"
    LOST = "lost"
    CLOSE = "close"
    RELEASED = "released"


_S = AllocationState
_I = AllocationInput

# Every legal (state, input) pair in one place (h11's _state.py).
TRANSITIONS: Final[dict[tuple[AllocationState, AllocationInput], AllocationState]] = {
    (_S.IDLE, _I.ALLOCATE): _S.ALLOCATING,
    (_S.IDLE, _I.CLOSE): _S.CLOSED,
    (_S.ALLOCATING, _I.GRANTED): _S.ALLOCATED,
    (_S.ALLOCATING, _I.REJECTED): _S.FAILED,
    (_S.ALLOCATING, _I.CLOSE): _S.CLOSED,
    (_S.ALLOCATED, _I.LOST): _S.FAILED,
    (_S.ALLOCATED, _I.CLOSE): _S.CLOSING,
    (_S.CLOSING, _I.RELEASED): _S.CLOSED,
    (_S.CLOSING, _I.LOST): _S.CLOSED,
    (_S.FAILED, _I.CLOSE): _S.CLOSED,
    (_S.CLOSED, _I.CLOSE): _S.CLOSED,
}


class RequestKind(enum.Enum):
    ALLOCATE = "allocate"
    REFRESH = "refresh"
    PERMISSION = "permission"
    CHANNEL = "channel"
    RELEASE = "release"  # Refresh with LIFETIME 0
    PROBE = "probe"  # Refresh with the short liveness timing: is the server still there?


_METHOD = {
    RequestKind.ALLOCATE: stun.Method.ALLOCATE,
    RequestKind.REFRESH: stun.Method.REFRESH,
    RequestKind.PERMISSION: stun.Method.CREATE_PERMISSION,
    RequestKind.CHANNEL: stun.Method.CHANNEL_BIND,
    RequestKind.RELEASE: stun.Method.REFRESH,
    RequestKind.PROBE: stun.Method.REFRESH,
}


@dataclass(slots=True)
class TurnCounters:
    """What happened, for metrics and tests (mutable: the client bumps them)."""

    allocate_requests: int = 0
    allocations: int = 0
    refreshes: int = 0
    probes: int = 0  # liveness probes (node.proto.turn.liveness)
    permission_requests: int = 0
    channel_requests: int = 0
    stale_nonces: int = 0
    sent_indications: int = 0
    sent_channel_data: int = 0
    received_indications: int = 0
    received_channel_data: int = 0
    dropped_malformed: int = 0
    dropped_integrity: int = 0
    dropped_unmatched: int = 0
    dropped_unknown_channel: int = 0
    dropped_queue_full: int = 0
    dropped_refused_peer: int = 0


@dataclass(slots=True)
class _Pending:
    kind: RequestKind
    attributes: tuple[stun.Attribute, ...]
    started: float
    authenticated: bool
    peer: Address | None = None
    stale_retries: int = 0


@dataclass(slots=True)
class _Peer:
    address: Address
    last_used: float
    permission_until: float = -math.inf  # our conservative estimate of the server's expiry
    channel: int | None = None
    channel_bound: bool = False
    channel_until: float = -math.inf
    pending: RequestKind | None = None  # the outstanding CreatePermission/ChannelBind, one at a time
    channel_refused: bool = False  # a ChannelBind was refused: Send indications only
    refresh_at: float | None = None
    queue: deque[bytes] = field(default_factory=deque)


class TurnClient:
    """One allocation. Create, ``allocate(now)``, then drive it (module docstring)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        stream: bool = False,
        timing: Timing | None = None,
        turn_timing: TurnTiming = TurnTiming(),
        requested_lifetime: int | None = DEFAULT_LIFETIME,
        software: str = "",
        use_channels: bool = True,
        max_queued_per_peer: int = 256,
        liveness: Liveness = DEFAULT_LIVENESS,
    ) -> None:
        self.credentials = credentials
        self.stream = stream
        self._timing = timing if timing is not None else (Timing(reliable=True) if stream else DEFAULT_TIMING)
        self.turn_timing = turn_timing
        self.liveness = liveness
        self._probe_timing = liveness.probe_timing(stream=stream)
        self._watch = ServerWatch(liveness)
        self._requested_lifetime = requested_lifetime
        self._software: tuple[stun.Attribute, ...] = (stun.Software(software),) if software else ()
        self.use_channels = use_channels
        self.max_queued_per_peer = max_queued_per_peer
        self.state = AllocationState.IDLE
        self.counters = TurnCounters()
        self.relayed: Address | None = None
        self.mapped: Address | None = None
        self.lifetime = 0
        self._realm: str | None = None
        self._nonce: str | None = None
        self._key: bytes | None = None
        self._refresh_at: float | None = None
        self._expires_at = math.inf
        self._transactions: TransactionManager[int] = TransactionManager(max_queued=10_000)
        self._pending: dict[bytes, _Pending] = {}
        self._peers: dict[Address, _Peer] = {}
        self._by_channel: dict[int, _Peer] = {}
        self._last_peer: Address | None = None  # encode_data's last lookup
        self._last_entry: _Peer | None = None
        self._next_channel = stun.CHANNEL_MIN
        self._out: list[bytes] = []
        self._events: deque[TurnEvent] = deque()
        self._framer = StreamFramer() if stream else None
        self._timer: float | None = None
        self._timer_dirty = True

    # -- state table ---------------------------------------------------------------------------
    def _fire(self, input_: AllocationInput) -> None:
        new = TRANSITIONS.get((self.state, input_))
        if new is None:
            raise TurnUsageError(f"cannot {input_.value} while {self.state.value}")
        self.state = new

    # -- public API: commands -----------------------------------------------------------------
    def allocate(self, now: float) -> None:
        self._fire(AllocationInput.ALLOCATE)
        attrs: list[stun.Attribute] = [stun.RequestedTransport(int(stun.TransportProtocol.UDP))]
        if self._requested_lifetime is not None:
            attrs.append(stun.Lifetime(self._requested_lifetime))
        self._start(RequestKind.ALLOCATE, tuple(attrs), now, authenticated=False)

    def send(self, peer: Address, data: bytes, now: float) -> None:
        """Relay ``data`` to ``peer``: at once when its permission is live, else after it is."""
        if self.state is not AllocationState.ALLOCATED:
            raise TurnUsageError(f"cannot send while {self.state.value}")
        wire = self.encode_data(peer, data, now)
        if wire is not None:
            self._out.append(wire)
            return
        entry = self._peers.get(peer)
        if entry is None:
            entry = self._peers[peer] = _Peer(peer, now)
        entry.last_used = now
        if len(entry.queue) >= self.max_queued_per_peer:
            self.counters.dropped_queue_full += 1
        else:
            entry.queue.append(data)
        if entry.pending is None:
            self._renew(entry, now)

    def encode_data(self, peer: Address, data: bytes, now: float) -> bytes | None:
        """The fast path of ``send``: the wire bytes for ``data`` when ``peer``'s permission is
        live (ChannelData on a bound channel, else a Send indication), for the driver to write
        itself; None when ``send`` must queue it. No timer or event changes on this path."""
        # The same address object, sent to again and again: skip hashing it (an ipaddress hash
        # is a Python call). Entries are never removed, so a cached one stays right.
        if peer is self._last_peer:
            entry: _Peer | None = self._last_entry
        else:
            entry = self._peers.get(peer)
            if entry is not None:
                self._last_peer, self._last_entry = peer, entry
        if entry is None or now >= entry.permission_until or self.state is not AllocationState.ALLOCATED:
            return None
        entry.last_used = now
        if self._watch.sent(now):
            self._timer_dirty = True
        if entry.channel_bound and now < entry.channel_until:
            self.counters.sent_channel_data += 1
            return encode_channel_data(entry.channel or 0, data, pad=self.stream)
        self.counters.sent_indications += 1
        return self._indication(peer, data)

    def receive_channel_data(self, data: bytes) -> tuple[Address, bytes] | None:
        """One ChannelData datagram (not for streams; ``is_channel_data(data)`` said so): the peer
        and the payload, or None when it was dropped (counted). The fast path of ``receive``: a
        driver calls it directly, with no event, timer or address work."""
        size = len(data)
        length = (data[2] << 8) | data[3]
        if not length + 4 <= size <= length + 7:  # up to 3 bytes of padding (RFC 8656 §12.5)
            self.counters.dropped_malformed += 1
            return None
        entry = self._by_channel.get((data[0] << 8) | data[1])
        if entry is None:
            self.counters.dropped_unknown_channel += 1
            return None
        self.counters.received_channel_data += 1
        return entry.address, data[4 : 4 + length]

    def open_peer(self, peer: Address, now: float) -> None:
        """Install the permission (and channel) for ``peer`` before any data is sent, e.g. to let
        a peer's traffic in, or to restore peers on a new allocation."""
        if self.state is not AllocationState.ALLOCATED:
            raise TurnUsageError(f"cannot open a peer while {self.state.value}")
        entry = self._peers.get(peer)
        if entry is None:
            entry = self._peers[peer] = _Peer(peer, now)
        entry.last_used = now
        if entry.pending is None and now >= entry.permission_until:
            self._renew(entry, now)

    def refresh(self, now: float) -> None:
        """Refresh the allocation now (a liveness probe: a dead server shows as AllocationLost)."""
        if self.state is AllocationState.ALLOCATED and not self._has_pending(RequestKind.REFRESH):
            self._start_refresh(now)

    def probe(self, now: float) -> None:
        """Ask the server now with the short liveness timing: no answer after the probe's tries
        is ``AllocationLost`` (``TurnUnreachableError``)."""
        if self.state is AllocationState.ALLOCATED and not self._has_pending(RequestKind.PROBE):
            self._watch.probing(now)
            self.counters.probes += 1
            lifetime = self._requested_lifetime if self._requested_lifetime is not None else self.lifetime
            self._start(RequestKind.PROBE, (stun.Lifetime(lifetime),), now, authenticated=True)

    def heard(self, now: float) -> None:
        """The driver read from the server without ``receive`` (``receive_channel_data``):
        call once per batch of reads, so the server counts as alive."""
        self._watch.last_heard = now

    @property
    def timer_dirty(self) -> bool:
        """True when ``get_timer`` may have moved earlier (the fast data paths can arm the
        liveness check): a driver that skipped its re-arm should re-arm now."""
        return self._timer_dirty

    def close(self, now: float) -> None:
        """Release the allocation (Refresh with LIFETIME 0, RFC 8656 §7.5)."""
        was = self.state
        self._fire(AllocationInput.CLOSE)
        self._cancel_all(now)
        if was is AllocationState.ALLOCATED:
            self._start(RequestKind.RELEASE, (stun.Lifetime(0),), now, authenticated=True)
        elif was is not AllocationState.CLOSED:
            self._events.append(Closed())

    def connection_lost(self, now: float, error: TurnError | None = None) -> None:
        """The stream to the server ended, or the server is known to be gone (an ICMP port
        unreachable on a connected UDP socket)."""
        self._lose(error or TurnClosedError("connection to the server ended"), now)

    # -- public API: I/O --------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> None:
        """One datagram from the server, or (``stream``) the next bytes of the stream."""
        self._watch.last_heard = now
        if self._framer is None:
            self._receive_datagram(data, now)
            return
        try:
            self._framer.feed(data)
            while (frame := self._framer.next_frame()) is not None:
                if isinstance(frame, StunFrame):
                    self._receive_stun(frame.message, frame.raw, now)
                else:
                    self._receive_channel(frame.channel, frame.data)
        except stun.StunDecodeError as exc:
            self.counters.dropped_malformed += 1
            if self._framer.broken:
                self._lose(TurnProtocolError(f"stream framing lost: {exc}"), now)
        except stun.StreamOverflowError as exc:
            self.counters.dropped_malformed += 1
            self._lose(TurnProtocolError(str(exc)), now)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out = self._out
        for _, datagram in self._transactions.datagrams_to_send(now):
            out.append(datagram)
        self._out = []
        if out and self.state is AllocationState.ALLOCATED and self._watch.sent(now):
            self._timer_dirty = True
        return out

    def get_timer(self) -> float | None:
        # Cached: only requests, responses and timers move deadlines, never the data paths,
        # so a driver may ask after every datagram for free.
        if self._timer_dirty:
            times = [self._transactions.get_timer(), self._refresh_at]
            times.extend(p.refresh_at for p in self._peers.values())
            if self.state is AllocationState.ALLOCATED:
                times.append(self._watch.deadline())
            self._timer = min((t for t in times if t is not None), default=None)
            self._timer_dirty = False
        return self._timer

    def handle_timer(self, now: float) -> None:
        self._timer_dirty = True
        self._transactions.handle_timer(now)
        while (item := self._transactions.next_event()) is not None:
            event = item[1]
            pending = self._pending.pop(event.transaction_id, None)
            if pending is not None and isinstance(event, TransactionTimedOut):
                self._timed_out(pending, event.sends, now)
        if self.state is not AllocationState.ALLOCATED:
            return
        if self._watch.due(now):
            self.probe(now)
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            if not self._has_pending(RequestKind.REFRESH):
                self._start_refresh(now)
        for entry in list(self._peers.values()):
            if entry.refresh_at is not None and now >= entry.refresh_at:
                entry.refresh_at = None
                # RFC 8656 §9: refresh only while the peer is in use; an idle one lapses.
                if now - entry.last_used < self.turn_timing.idle_after and entry.pending is None:
                    self._renew(entry, now)

    def next_event(self) -> TurnEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def peers(self) -> tuple[Address, ...]:
        return tuple(self._peers)

    def permitted(self, peer: Address, now: float) -> bool:
        """True while ``peer``'s permission is installed (by our conservative estimate)."""
        entry = self._peers.get(peer)
        return entry is not None and now < entry.permission_until

    def channel_of(self, peer: Address) -> int | None:
        entry = self._peers.get(peer)
        return entry.channel if entry is not None and entry.channel_bound else None

    # -- requests ---------------------------------------------------------------------------------
    def _start(
        self,
        kind: RequestKind,
        attributes: tuple[stun.Attribute, ...],
        now: float,
        *,
        authenticated: bool,
        peer: Address | None = None,
        stale_retries: int = 0,
    ) -> None:
        self._timer_dirty = True
        tid = stun.new_transaction_id()
        if kind is RequestKind.ALLOCATE:
            self.counters.allocate_requests += 1
        attrs = attributes + self._software
        key = None
        if authenticated and self._key is not None:
            assert self._realm is not None and self._nonce is not None
            attrs += (
                stun.Username(self.credentials.username),
                stun.Realm(self._realm),
                stun.Nonce(self._nonce),
            )
            key = self._key
        else:
            authenticated = False
        request = stun.encode(stun.Message(_METHOD[kind], stun.MessageClass.REQUEST, tid, attrs), key=key)
        self._pending[tid] = _Pending(kind, attributes, now, authenticated, peer, stale_retries)
        timing = self._probe_timing if kind is RequestKind.PROBE else self._timing
        self._transactions.start(_SERVER, tid, request, now, timing)

    def _retry(self, pending: _Pending, now: float, *, stale: bool = False) -> None:
        self._start(
            pending.kind,
            pending.attributes,
            now,
            authenticated=True,
            peer=pending.peer,
            stale_retries=pending.stale_retries + (1 if stale else 0),
        )

    def _has_pending(self, kind: RequestKind) -> bool:
        return any(p.kind is kind for p in self._pending.values())

    def _start_refresh(self, now: float) -> None:
        self.counters.refreshes += 1
        lifetime = self._requested_lifetime if self._requested_lifetime is not None else self.lifetime
        self._start(RequestKind.REFRESH, (stun.Lifetime(lifetime),), now, authenticated=True)

    def _renew(self, entry: _Peer, now: float) -> None:
        """Install or refresh ``entry``'s permission: ChannelBind once a channel is assigned
        (it refreshes the permission too, RFC 8656 §12.3), CreatePermission before."""
        peer_attr = stun.XorPeerAddress(entry.address[0], entry.address[1])
        attrs: tuple[stun.Attribute, ...]
        if entry.channel is not None:
            self.counters.channel_requests += 1
            kind, attrs = RequestKind.CHANNEL, (stun.ChannelNumber(entry.channel), peer_attr)
        else:
            self.counters.permission_requests += 1
            kind, attrs = RequestKind.PERMISSION, (peer_attr,)
        self._start(kind, attrs, now, authenticated=True, peer=entry.address)
        entry.pending = kind

    def _bind_channel(self, entry: _Peer, now: float) -> None:
        if self._next_channel > stun.CHANNEL_MAX:
            return  # every number is taken: this peer stays on Send indications
        entry.channel = self._next_channel
        self._next_channel += 1
        self._by_channel[entry.channel] = entry
        self._renew(entry, now)

    # -- receiving ---------------------------------------------------------------------------------
    def _receive_datagram(self, data: bytes, now: float) -> None:
        if is_channel_data(data):
            hit = self.receive_channel_data(data)
            if hit is not None:
                self._events.append(DataReceived(hit[0], hit[1], (data[0] << 8) | data[1]))
            return
        try:
            message = stun.decode(data)
        except stun.StunDecodeError:
            self.counters.dropped_malformed += 1
            return
        self._receive_stun(message, data, now)

    def _receive_channel(self, channel: int, data: bytes) -> None:
        # RFC 8656 §12.3: ChannelData may arrive as soon as the ChannelBind request was sent.
        entry = self._by_channel.get(channel)
        if entry is None:
            self.counters.dropped_unknown_channel += 1
            return
        self.counters.received_channel_data += 1
        self._events.append(DataReceived(entry.address, data, channel))

    def _receive_stun(self, message: stun.Message, raw: bytes, now: float) -> None:
        self._timer_dirty = True
        cls = message.message_class
        if cls is stun.MessageClass.INDICATION:
            self._receive_indication(message, now)
            return
        if cls is stun.MessageClass.REQUEST:
            self.counters.dropped_unmatched += 1  # a server does not send us requests
            return
        pending = self._pending.get(message.transaction_id)
        if pending is None or _METHOD[pending.kind] is not message.method:
            self.counters.dropped_unmatched += 1
            return
        error = message.find(stun.ErrorCodeAttr)
        if pending.authenticated and self._key is not None:
            signed = message.find(stun.MessageIntegrity) or message.find(stun.MessageIntegritySha256)
            needed = signed is not None or cls is stun.MessageClass.SUCCESS
            if needed and not stun.verify_integrity(raw, self._key):
                self.counters.dropped_integrity += 1  # RFC 8489 §9.2.5: as if never received
                return
        if not self._transactions.receive(_SERVER, message.transaction_id, message, now):
            self.counters.dropped_unmatched += 1
            return
        self._transactions.next_event()  # the TransactionSucceeded for it: handled right here
        del self._pending[message.transaction_id]
        if cls is stun.MessageClass.SUCCESS:
            unknown = message.unknown_comprehension_required()
            if unknown:
                # RFC 8489 §6.3.3: the transaction is considered to have failed.
                self._failed(pending, TurnProtocolError(f"unknown attributes {unknown}"), now)
                return
            self._succeeded(pending, message, now)
        elif error is None:
            self._failed(pending, TurnProtocolError("error response without ERROR-CODE"), now)
        else:
            self._error_response(pending, message, error, now)

    def _receive_indication(self, message: stun.Message, now: float) -> None:
        if message.method is not stun.Method.DATA:
            self.counters.dropped_unmatched += 1
            return
        peer_attr = message.find(stun.XorPeerAddress)
        data_attr = message.find(stun.Data)
        if peer_attr is None or data_attr is None or message.unknown_comprehension_required():
            self.counters.dropped_malformed += 1  # RFC 8656 §11.6: discard
            return
        peer = (peer_attr.ip, peer_attr.port)
        entry = self._peers.get(peer)
        if entry is not None:
            entry.last_used = now
        self.counters.received_indications += 1
        self._events.append(DataReceived(peer, data_attr.value, None))

    # -- outcomes ----------------------------------------------------------------------------------
    def _succeeded(self, pending: _Pending, message: stun.Message, now: float) -> None:
        kind = pending.kind
        if kind is RequestKind.ALLOCATE:
            relayed = message.find(stun.XorRelayedAddress)
            lifetime = message.find(stun.Lifetime)
            if relayed is None or lifetime is None:
                self._failed(pending, TurnProtocolError("Allocate success without relayed address"), now)
                return
            mapped = message.find(stun.XorMappedAddress)
            self.relayed = (relayed.ip, relayed.port)
            self.mapped = (mapped.ip, mapped.port) if mapped is not None else None
            self._granted(lifetime.seconds, pending.started)
            self.counters.allocations += 1
            self._fire(AllocationInput.GRANTED)
            self._watch.start(now)
            self._events.append(Allocated(self.relayed, self.mapped, self.lifetime))
        elif kind is RequestKind.REFRESH:
            lifetime = message.find(stun.Lifetime)
            seconds = lifetime.seconds if lifetime is not None else self.lifetime
            self._granted(seconds, pending.started)
            self._events.append(AllocationRefreshed(seconds))
        elif kind is RequestKind.RELEASE:
            self._released()
        elif kind is RequestKind.PROBE:
            # The server is there (its answer was heard); the refresh schedule stays as it is,
            # early rather than late.
            pass
        else:
            self._peer_granted(pending, now)

    def _granted(self, lifetime: int, started: float) -> None:
        self.lifetime = lifetime
        # Counted from when the request left, not when the answer came: conservative.
        self._expires_at = started + lifetime
        self._refresh_at = started + refresh_after(lifetime)

    def _peer_granted(self, pending: _Pending, now: float) -> None:
        assert pending.peer is not None
        entry = self._peers.get(pending.peer)
        if entry is None:
            return
        entry.pending = None
        timing = self.turn_timing
        entry.permission_until = pending.started + timing.permission_lifetime
        refresh = pending.started + refresh_after(timing.permission_lifetime)
        if pending.kind is RequestKind.CHANNEL:
            first = not entry.channel_bound
            entry.channel_bound = True
            entry.channel_until = pending.started + timing.channel_lifetime
            refresh = min(refresh, pending.started + refresh_after(timing.channel_lifetime))
            if first:
                self._events.append(ChannelBound(entry.address, entry.channel or 0))
        else:
            self._events.append(PermissionInstalled(entry.address))
        entry.refresh_at = refresh
        queued, entry.queue = entry.queue, deque()
        for data in queued:
            self.send(entry.address, data, now)
        if self.use_channels and entry.channel is None and not entry.channel_refused:
            self._bind_channel(entry, now)

    def _error_response(
        self, pending: _Pending, message: stun.Message, error: stun.ErrorCodeAttr, now: float
    ) -> None:
        code = error.code
        if code == stun.ErrorCode.UNAUTHENTICATED and not pending.authenticated:
            realm, nonce = message.find(stun.Realm), message.find(stun.Nonce)
            if realm is None or nonce is None:
                self._failed(pending, TurnProtocolError("401 without REALM or NONCE", code=code), now)
                return
            self._learn(realm.value, nonce.value)
            if self._key is None:
                self._failed(pending, TurnAuthError("credentials rejected by the profile", code=code), now)
                return
            self._retry(pending, now)
            return
        if code == stun.ErrorCode.STALE_NONCE:
            nonce = message.find(stun.Nonce)
            if nonce is None or pending.stale_retries >= MAX_STALE_NONCE_RETRIES:
                self._failed(pending, TurnAuthError("stale nonce, again and again", code=code), now)
                return
            self.counters.stale_nonces += 1
            realm = message.find(stun.Realm)
            self._learn(realm.value if realm is not None else (self._realm or ""), nonce.value)
            self._retry(pending, now, stale=True)
            return
        text = f"{code} {error.reason}".strip()
        failure: TurnError
        if code in (stun.ErrorCode.UNAUTHENTICATED, stun.ErrorCode.WRONG_CREDENTIALS):
            failure = TurnAuthError(text, code=code)
        elif code == stun.ErrorCode.TRY_ALTERNATE:
            alt = message.find(stun.AlternateServer)
            if alt is None:
                failure = TurnProtocolError("300 without ALTERNATE-SERVER", code=code)
            else:
                failure = TurnTryAlternate(text, code=code, alternate=(alt.ip, alt.port))
        else:
            failure = TurnRefusedError(text, code=code)
        self._failed(pending, failure, now)

    def _learn(self, realm: str, nonce: str) -> None:
        if realm != self._realm or self._key is None:
            try:
                self._key = stun.long_term_key(self.credentials.username, realm, self.credentials.password)
            except stun.PrepError:
                self._key = None
        self._realm, self._nonce = realm, nonce

    def _failed(self, pending: _Pending, error: TurnError, now: float) -> None:
        kind = pending.kind
        if kind is RequestKind.ALLOCATE:
            self._fire(AllocationInput.REJECTED)
            self._cancel_all(now)
            self._events.append(AllocationFailed(error))
        elif kind is RequestKind.RELEASE:
            self._released()  # 437: nothing left to release either way
        elif (
            kind in (RequestKind.REFRESH, RequestKind.PROBE)
            or error.code == stun.ErrorCode.ALLOCATION_MISMATCH
        ):
            self._lose(error, now)
        else:
            assert pending.peer is not None
            entry = self._peers.get(pending.peer)
            if entry is None:
                return
            entry.pending = None
            self.counters.dropped_refused_peer += len(entry.queue)
            entry.queue.clear()
            if kind is RequestKind.CHANNEL and not entry.channel_bound:
                # Keep the peer on Send indications; its number is not reused (RFC 8656 §12).
                self._by_channel.pop(entry.channel or 0, None)
                entry.channel = None
                entry.channel_refused = True
            self._events.append(PermissionFailed(entry.address, error))

    def _timed_out(self, pending: _Pending, sends: int, now: float) -> None:
        if pending.kind is RequestKind.PROBE:
            error = TurnUnreachableError(
                f"the server fell silent: no answer to a liveness probe after {sends} sends"
            )
        else:
            error = TurnUnreachableError(f"{pending.kind.value}: no answer after {sends} sends")
        if pending.kind is RequestKind.ALLOCATE:
            self._fire(AllocationInput.REJECTED)
            self._cancel_all(now)
            self._events.append(AllocationFailed(error))
        elif pending.kind is RequestKind.RELEASE:
            self._released()
        else:
            # Every retransmission went unanswered: the server is gone, whatever was asked.
            self._lose(error, now)

    def _lose(self, error: TurnError, now: float) -> None:
        if self.state is AllocationState.ALLOCATING:
            self._fire(AllocationInput.REJECTED)
            self._cancel_all(now)
            self._events.append(AllocationFailed(error))
        elif self.state is AllocationState.ALLOCATED:
            self._fire(AllocationInput.LOST)
            self._cancel_all(now)
            self._events.append(AllocationLost(error))
        elif self.state is AllocationState.CLOSING:
            self._fire(AllocationInput.LOST)
            self._cancel_all(now)
            self._events.append(Closed())

    def _released(self) -> None:
        if self.state is AllocationState.CLOSING:
            self._fire(AllocationInput.RELEASED)
            self._events.append(Closed())

    def _cancel_all(self, now: float) -> None:
        self._timer_dirty = True
        for tid in list(self._pending):
            self._transactions.cancel(tid, now)
        self._pending.clear()
        self._refresh_at = None
        self._watch.stop()
        for entry in self._peers.values():
            entry.pending = None
            entry.refresh_at = None

    def _indication(self, peer: Address, data: bytes) -> bytes:
        # RFC 8656 §11.1: Send indications carry no authentication.
        message = stun.Message(
            stun.Method.SEND,
            stun.MessageClass.INDICATION,
            stun.new_transaction_id(),
            (stun.XorPeerAddress(peer[0], peer[1]), stun.Data(data)),
        )
        return stun.encode(message, fingerprint=False)
