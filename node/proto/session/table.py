"""Many secure sessions over one datagram socket, sans-IO: the session driver's core.

One ``SessionTable`` holds every ``SecureSession`` (node.proto.session.secure_session) of one UDP
socket (or one TURN allocation). Shape (aioquic's): ``receive_datagram(data, addr, now)``,
``datagrams_to_send(now)`` -> [(bytes, addr)], ``get_timer()`` / ``handle_timer(now)``,
``next_event()``; ``connect(peer_id, addr, now)``, ``send(peer_id, payload, now)``, ``close``.
The caller demultiplexes STUN before it; anything else is ours, and bytes never raise.

Routing, as WireGuard does it (its paper §5.4, §6.5):
- RESPONSE, CONFIRM and TRANSPORT carry the receiver index we chose: the session holding it gets
  the datagram, whatever its source address. An index nobody holds is a counted drop, no reply.
- An INIT has no index. A retransmitted INIT goes to the session already answering it (the same
  RESPONSE goes back to wherever it came from); an INIT from the address of a live session goes to
  it (a rekey, or both sides dialling at once: the session resolves the glare); any other INIT
  passes the admission hook (the cookie check under load, WireGuard §5.4.7) and then, within
  ``max_sessions``, creates a responder session.
- Roaming: a session's peer address changes only when a datagram from a new address
  authenticated in it (``SecureSession.authenticated`` moved), so a forged or replayed datagram
  from a third address never moves it.

Liveness of an established peer:
- keepalive: after ``keepalive_after`` without sending anything, an empty sealed datagram (it
  keeps NAT and conntrack mappings open: Linux forgets an unreplied UDP mapping after 30 s);
- consent (RFC 7675's shape, §5.1): after ``consent_timeout`` without an authenticated datagram
  the peer is gone (``PeerGone`` CONSENT_EXPIRED, DisconnectReason.TIMEOUT).

A peer may briefly hold two sessions (it restarted and dialled again from a new address, or both
sides dialled at once from different addresses). The newest is the one ``send`` uses; the older
still receives (its datagrams count for the peer's consent) and closes quietly once silent.

Timers: one deadline per session in a lazy heap (node.proto.session.deadlines), so ``get_timer``
and ``handle_timer`` cost O(log n) per session due, not a scan of the table.
"""

from __future__ import annotations

import os
import struct
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from node.proto.identity import Identity
from node.proto.session.deadlines import Deadlines
from node.proto.session.errors import HandshakeError, HandshakeFailure, SessionDecodeError, SessionNotReady
from node.proto.session.messages import (
    INIT_SIZE,
    TRANSPORT_TYPE_WORD,
    MessageType,
    message_type,
    receiver_index,
)
from node.proto.session.secure_session import (
    CloseReason,
    DatagramReceived,
    HandshakeFailed,
    KeyConfirmed,
    SecureSession,
    SessionClosed,
    SessionEstablished,
    SessionEvent,
    SessionState,
)
from node.proto.session.table_types import (
    DEFAULT_TABLE_CONFIG,
    DialFailed,
    GoneReason,
    PeerDatagram,
    PeerEstablished,
    PeerGone,
    PeerRoamed,
    TableConfig,
    TableCount,
    TableError,
    TableEvent,
    TableProblem,
    TableStatus,
)
from node.proto.session.trust import PeerVerifier

__all__ = ["AdmitInit", "SessionTable"]

A = TypeVar("A", bound=Hashable)

AdmitInit = Callable[[bytes, A, float], bool | bytes]
"""``admit_init(init, addr, now)``: True to let the INIT cost a Diffie-Hellman, False to drop it,
or bytes to send back to ``addr`` instead (a cookie reply, never larger than the INIT)."""

_INDEXED: Final = struct.Struct("<II")  # a TRANSPORT's type word and receiver index
_new = object.__new__
# PeerDatagram's slot setters: object.__new__ and these build one at about half the frozen
# __init__'s cost (node.proto.vocabulary's MESSAGE_SETTERS do the same).
_SET_PEER_ID: Final = getattr(PeerDatagram, "peer_id").__set__  # noqa: B009
_SET_PAYLOAD: Final = getattr(PeerDatagram, "payload").__set__  # noqa: B009

_GONE = {
    CloseReason.KEYS_EXPIRED: GoneReason.KEYS_EXPIRED,
    CloseReason.HANDSHAKE_FAILED: GoneReason.HANDSHAKE_FAILED,
    CloseReason.CLOSED_LOCALLY: GoneReason.CLOSED_LOCALLY,
}


@dataclass(eq=False, slots=True)
class _Entry(Generic[A]):
    session: SecureSession
    addr: A
    dialled: str | None  # the peer id connect() expects; None for a session the peer started
    last_sent: float
    last_auth: float
    indices: frozenset[int] = frozenset()
    init: bytes | None = None  # the INIT a responder session answers, until its handshake ends
    peer_id: str | None = None  # once its first handshake completed
    initiator: bool = False  # which side it was in that handshake
    awaiting_confirmation: bool = False  # a newer session of a peer, not yet preferred
    displaced: bool = False  # was preferred until a newer session at another address took over
    failure: HandshakeFailed | None = None
    removed: bool = False


@dataclass(eq=False, slots=True)
class _Peer(Generic[A]):
    sessions: list[_Entry[A]] = field(default_factory=list)  # oldest first; the last one sends

    @property
    def preferred(self) -> _Entry[A]:
        return self.sessions[-1]


class SessionTable(Generic[A]):
    def __init__(
        self,
        identity: Identity,
        verifier: PeerVerifier,
        *,
        credential: bytes = b"",
        config: TableConfig = DEFAULT_TABLE_CONFIG,
        random_bytes: Callable[[int], bytes] = os.urandom,
        admit_init: AdmitInit[A] | None = None,
    ) -> None:
        self._identity = identity
        self._verifier = verifier
        self._credential = credential
        self._config = config
        self._random = random_bytes
        self._admit = admit_init
        self._entries: set[_Entry[A]] = set()
        self._by_index: dict[int, _Entry[A]] = {}
        self._by_addr: dict[A, _Entry[A]] = {}
        self._by_peer: dict[str, _Peer[A]] = {}
        self._responding: dict[bytes, _Entry[A]] = {}  # INIT -> the session answering it
        self._timers: Deadlines[_Entry[A]] = Deadlines()
        self._dirty: dict[_Entry[A], None] = {}  # sessions that may have datagrams to send
        self._unsettled: dict[_Entry[A], float] = {}  # sessions sent on since settled, and when
        self._out: list[tuple[bytes, A]] = []
        self._events: deque[TableEvent[A]] = deque()
        self._counts: Counter[TableCount] = Counter()

    # -- what the driver reads -------------------------------------------------------------

    def status(self) -> TableStatus:
        return TableStatus(len(self._entries), len(self._by_peer), dict(self._counts))

    @property
    def counts(self) -> Counter[TableCount]:
        return self._counts.copy()

    def peer_address(self, peer_id: str) -> A | None:
        """Where datagrams for ``peer_id`` go now (learned from authenticated datagrams)."""
        peer = self._by_peer.get(peer_id)
        return None if peer is None else peer.preferred.addr

    def next_event(self) -> TableEvent[A] | None:
        if not self._events and self._unsettled:
            self._settle_sends()
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, A]]:
        if self._unsettled:
            self._settle_sends()
        out, self._out = self._out, []
        for entry in self._dirty:
            if entry.removed:
                continue
            datagrams = entry.session.datagrams_to_send(now)
            if datagrams:
                entry.last_sent = now
                out.extend((datagram, entry.addr) for datagram in datagrams)
        self._dirty.clear()
        return out

    def get_timer(self) -> float | None:
        if self._unsettled:
            self._settle_sends()
        return self._timers.earliest()

    # -- what the driver calls --------------------------------------------------------------

    def connect(self, peer_id: str, addr: A, now: float) -> None:
        """Dial ``peer_id`` at ``addr``: ``PeerEstablished`` if that peer answers, else ``DialFailed``."""
        if len(self._entries) >= self._config.max_sessions:
            raise TableError(TableProblem.AT_CAPACITY, f"{len(self._entries)} sessions, dialling {peer_id}")
        entry = self._add(self._new_session(peer_id), addr, peer_id, now)
        self._counts[TableCount.DIALLED] += 1
        entry.session.connect(now)
        self._settle(entry, now)

    def send(self, peer_id: str, payload: bytes, now: float) -> None:
        """Seal ``payload`` for ``peer_id``; raises TableError (no session) or SessionNotReady."""
        peer = self._by_peer.get(peer_id)
        if peer is None:
            raise TableError(TableProblem.NO_SESSION, peer_id)
        entry = peer.preferred
        try:
            entry.session.send(payload, now)
        except SessionNotReady:
            self._settle(entry, now)  # it may have found the keys expired, and closed
            raise
        # A send may also start a rekey (new index, new timer): settled before the table's next
        # answer to anyone, once for a burst of sends.
        self._unsettled[entry] = now

    def abandon(self, gone: Callable[[A], bool], now: float) -> None:
        """The way to every address ``gone`` accepts went away (a BLE link closed, say): the
        handshakes under way there end now, each dial with ``DialFailed`` PATH_GONE, not at the
        end of their retransmission schedule. Established peers are the owner's to ``close``."""
        for entry in [e for e in self._entries if e.peer_id is None and gone(e.addr)]:
            if entry.dialled is not None:
                error = HandshakeError(HandshakeFailure.PATH_GONE, "its path went away")
                self._events.append(DialFailed(entry.dialled, entry.addr, HandshakeFailure.PATH_GONE, error))
            self._drop(entry, now)

    def close(self, peer_id: str, now: float, reason: GoneReason = GoneReason.CLOSED_LOCALLY) -> None:
        """Close every session of ``peer_id`` (``PeerGone`` with ``reason``); the peer is not told."""
        peer = self._by_peer.get(peer_id)
        if peer is None:
            raise TableError(TableProblem.NO_SESSION, peer_id)
        self._peer_gone(peer, reason, now)

    def receive_datagram(self, data: bytes, addr: A, now: float) -> None:
        if data[:4] == TRANSPORT_TYPE_WORD and len(data) >= _INDEXED.size:
            entry = self._route(_INDEXED.unpack_from(data)[1], data, addr, now)
            if entry is not None:
                self._transport_events(entry, now)
            return
        try:
            kind = message_type(data)
        except SessionDecodeError:
            self._counts[TableCount.MALFORMED] += 1
            return
        if kind is MessageType.INIT:
            self._receive_init(data, addr, now)
            return
        index = receiver_index(data)
        if index is None:
            self._counts[TableCount.MALFORMED] += 1
            return
        entry = self._route(index, data, addr, now)
        if entry is not None:
            self._settle(entry, now)

    def _route(self, index: int, data: bytes, addr: A, now: float) -> _Entry[A] | None:
        """Give ``data`` to the session holding ``index``; that session, or None (counted)."""
        entry = self._by_index.get(index)
        if entry is None:
            self._counts[TableCount.UNKNOWN_INDEX] += 1
            return None
        if not entry.session.receive_datagram(data, now):
            self._counts[TableCount.UNAUTHENTICATED] += 1
        elif (
            addr == entry.addr
            and entry.peer_id is not None
            and self._by_peer[entry.peer_id].sessions[-1] is entry
        ):
            entry.last_auth = now  # the common case of _authenticated: the preferred one, not moved
        else:
            self._authenticated(entry, addr, now)
        return entry

    def _transport_events(self, entry: _Entry[A], now: float) -> None:
        """After a TRANSPORT datagram, the path of every data datagram: a datagram that only
        delivered data changed no index, made no output and moved no timer earlier (consent
        moves later: the lazy heap catches up), so it needs no settling."""
        session = entry.session
        peer_id = entry.peer_id
        append = self._events.append
        while (event := session.next_event()) is not None:
            if type(event) is DatagramReceived and peer_id is not None:
                datagram = _new(PeerDatagram)  # = PeerDatagram(peer_id, payload), faster
                _SET_PEER_ID(datagram, peer_id)
                _SET_PAYLOAD(datagram, event.payload)
                append(datagram)
            else:  # anything else (keys confirmed, closed): the general path from here
                self._drain_one(entry, event, now)
                self._settle(entry, now)
                return

    def handle_timer(self, now: float) -> None:
        if self._unsettled:
            self._settle_sends()
        for entry in self._timers.pop_due(now):
            if entry.removed:
                continue
            session = entry.session
            deadline = session.get_timer()
            if deadline is not None and deadline <= now:
                session.handle_timer(now)
            self._settle(entry, now)
            if not entry.removed and entry.peer_id is not None:
                self._liveness(entry, entry.peer_id, now)

    # -- INITs --------------------------------------------------------------------------------

    def _receive_init(self, data: bytes, addr: A, now: float) -> None:
        if len(data) != INIT_SIZE:  # checked before any state is made for it
            self._counts[TableCount.MALFORMED] += 1
            return
        answering = self._responding.get(data)
        if answering is not None:  # a retransmission: the same RESPONSE, to where it came from
            answering.session.receive_datagram(data, now)
            self._out.extend((datagram, addr) for datagram in answering.session.datagrams_to_send(now))
            return
        if self._admit is not None:
            verdict = self._admit(data, addr, now)
            if verdict is not True:
                if isinstance(verdict, bytes) and verdict:
                    self._out.append((verdict, addr))
                    self._counts[TableCount.ADMISSION_REPLIES] += 1
                else:
                    self._counts[TableCount.REFUSED_BY_ADMISSION] += 1
                return
        entry = self._by_addr.get(addr)
        if entry is not None:  # a rekey, a glare, or the peer restarting its handshake
            entry.session.receive_datagram(data, now)
            self._settle(entry, now)
            return
        if len(self._entries) >= self._config.max_sessions:
            self._counts[TableCount.REFUSED_AT_CAPACITY] += 1
            return
        session = self._new_session(None)
        session.receive_datagram(data, now)
        if session.state is SessionState.IDLE:  # refused before any state (a low-order key)
            self._counts[TableCount.MALFORMED] += 1
            return
        entry = self._add(session, addr, None, now)
        entry.init = data
        self._responding[data] = entry
        self._counts[TableCount.INITS_ACCEPTED] += 1
        self._settle(entry, now)

    # -- sessions -----------------------------------------------------------------------------

    def _new_session(self, expected: str | None) -> SecureSession:
        return SecureSession(
            self._identity,
            self._verifier,
            credential=self._credential,
            expected_peer_id=expected,
            config=self._config.session,
            random_bytes=self._random,
            index_taken=self._by_index.__contains__,
        )

    def _add(self, session: SecureSession, addr: A, dialled: str | None, now: float) -> _Entry[A]:
        entry = _Entry(session, addr, dialled, last_sent=now, last_auth=now)
        self._entries.add(entry)
        self._by_addr[addr] = entry
        return entry

    def _settle(self, entry: _Entry[A], now: float) -> None:
        """After any call into ``entry``'s session: its events, indices, timer and output."""
        self._unsettled.pop(entry, None)
        self._drain(entry, now)
        if entry.removed:
            return
        session = entry.session
        indices = session.local_indices()
        if indices != entry.indices:
            for index in entry.indices - indices:
                del self._by_index[index]
            for index in indices - entry.indices:
                self._by_index[index] = entry
            entry.indices = indices
        self._timers.set(entry, self._deadline(entry))
        self._dirty[entry] = None

    def _settle_sends(self) -> None:
        for entry, now in list(self._unsettled.items()):
            self._settle(entry, now)

    def _drain(self, entry: _Entry[A], now: float) -> None:
        """Pass ``entry``'s session events on."""
        session = entry.session
        while (event := session.next_event()) is not None:
            if self._drain_one(entry, event, now):
                return

    def _drain_one(self, entry: _Entry[A], event: SessionEvent, now: float) -> bool:
        """One session event of ``entry`` (data included); True once the session closed."""
        if isinstance(event, DatagramReceived):
            assert entry.peer_id is not None  # keys (and so SessionEstablished) come first
            self._events.append(PeerDatagram(entry.peer_id, event.payload))
        elif isinstance(event, SessionEstablished):
            if entry.peer_id is None:
                self._established(entry, event, now)
            else:
                self._counts[TableCount.REKEYED] += 1
        elif isinstance(event, KeyConfirmed):
            if entry.awaiting_confirmation and entry.peer_id is not None:
                peer = self._by_peer[entry.peer_id]
                if peer.preferred.addr != entry.addr:
                    peer.preferred.displaced = True  # it may yet prove alive (_second_path)
                self._prefer(peer, entry)
        elif isinstance(event, HandshakeFailed):
            self._counts[TableCount.HANDSHAKES_FAILED] += 1
            entry.failure = event
        elif isinstance(event, SessionClosed):
            self._closed(entry, event.reason, now)
            return True
        return False

    def _deadline(self, entry: _Entry[A]) -> float | None:
        deadline = entry.session.get_timer()
        if entry.peer_id is None:
            return deadline
        due = entry.last_auth + self._config.consent_timeout
        if self._by_peer[entry.peer_id].preferred is entry:
            due = min(due, entry.last_sent + self._config.keepalive_after)
        return due if deadline is None else min(deadline, due)

    def _established(self, entry: _Entry[A], event: SessionEstablished, now: float) -> None:
        entry.peer_id = event.peer_id
        entry.initiator = event.initiator
        entry.last_auth = now
        if entry.init is not None:
            self._forget_init(entry)
        self._counts[TableCount.ESTABLISHED] += 1
        # Both sides dialled at once through different mappings: our other dial to this peer
        # lost the race (its INIT went unanswered) and would only end in a DialFailed.
        for other in [e for e in self._entries if e.dialled == event.peer_id and e.peer_id is None]:
            if other is not entry:
                self._drop(other, now)
        peer = self._by_peer.setdefault(event.peer_id, _Peer())
        if not peer.sessions:
            self._prefer(peer, entry)
        else:  # keep sending on the older one until the peer has shown it holds the new keys
            peer.sessions.insert(len(peer.sessions) - 1, entry)
            entry.awaiting_confirmation = True

    def _prefer(self, peer: _Peer[A], entry: _Entry[A]) -> None:
        """``entry`` becomes the session ``send`` uses for its peer."""
        entry.displaced = False
        if entry in peer.sessions:
            peer.sessions.remove(entry)
        peer.sessions.append(entry)
        entry.awaiting_confirmation = False
        assert entry.peer_id is not None
        self._events.append(PeerEstablished(entry.peer_id, entry.addr, entry.initiator))

    def _authenticated(self, entry: _Entry[A], addr: A, now: float) -> None:
        """A datagram from ``addr`` authenticated in ``entry``: the peer is there, and alive."""
        entry.last_auth = now
        peer = None if entry.peer_id is None else self._by_peer[entry.peer_id]
        preferred = entry if peer is None else peer.preferred
        if peer is not None and entry.addr != preferred.addr:
            self._second_path(peer, entry, addr)
            return
        preferred.last_auth = now  # a session at the preferred's address proves that path alive
        if addr == entry.addr and addr == preferred.addr:
            return
        self._counts[TableCount.ROAMED] += 1
        old = preferred.addr
        for moved in {id(entry): entry, id(preferred): preferred}.values():
            if self._by_addr.get(moved.addr) is moved:
                del self._by_addr[moved.addr]
            moved.addr = addr
            self._by_addr[addr] = moved
        if peer is not None and old != addr:
            self._events.append(PeerRoamed(preferred.peer_id or "", old, addr))

    def _second_path(self, peer: _Peer[A], entry: _Entry[A], addr: A) -> None:
        """A datagram authenticated in a session of the peer at another address than the
        preferred one: two paths to one peer, e.g. its own address and its TURN relay's (a
        ``udp://`` connect also dials through the relay). That session roams alone, never
        moving the preferred one; and if it was the preferred one until the newer session took
        over, the peer still uses it, so it is preferred again: a relayed session never
        replaces a direct one that is alive. (A peer that restarted elsewhere never speaks in
        its old session again, so its new session keeps the preference.)"""
        if addr != entry.addr:
            self._counts[TableCount.ROAMED] += 1
            if self._by_addr.get(entry.addr) is entry:
                del self._by_addr[entry.addr]
            entry.addr = addr
            self._by_addr.setdefault(addr, entry)
        if entry.displaced:
            self._prefer(peer, entry)

    def _liveness(self, entry: _Entry[A], peer_id: str, now: float) -> None:
        """Consent and keepalive for an established session whose timer fired."""
        peer = self._by_peer[peer_id]
        if now >= entry.last_auth + self._config.consent_timeout:
            if peer.preferred is entry:  # the newest session has the peer's latest authentic time
                self._counts[TableCount.CONSENT_EXPIRED] += 1
                self._peer_gone(peer, GoneReason.CONSENT_EXPIRED, now)
            else:
                self._counts[TableCount.RETIRED] += 1
                self._drop(entry, now)
            return
        if peer.preferred is entry and now >= entry.last_sent + self._config.keepalive_after:
            entry.last_sent = now  # also when it cannot seal now: the rekey under way sends instead
            if entry.session.state is SessionState.ESTABLISHED:
                try:
                    entry.session.send(b"", now)  # empty: the receiver counts it, delivers nothing
                    self._counts[TableCount.KEEPALIVES] += 1
                except SessionNotReady:
                    pass
            self._settle(entry, now)

    # -- endings --------------------------------------------------------------------------------

    def _closed(self, entry: _Entry[A], reason: CloseReason, now: float) -> None:
        """The session closed by itself (handshake failed, keys expired)."""
        peer_id = entry.peer_id
        if peer_id is None:
            self._remove(entry)
            if entry.dialled is not None and entry.failure is not None:
                failure = entry.failure
                self._events.append(DialFailed(entry.dialled, entry.addr, failure.reason, failure.error))
            return
        peer = self._by_peer[peer_id]
        if len(peer.sessions) == 1:
            self._peer_gone(peer, _GONE[reason], now)
            return
        was_preferred = peer.preferred is entry
        self._remove(entry)
        if was_preferred:  # an older session still works: it takes over
            self._prefer(peer, peer.preferred)

    def _peer_gone(self, peer: _Peer[A], reason: GoneReason, now: float) -> None:
        preferred = peer.preferred
        assert preferred.peer_id is not None
        for entry in list(peer.sessions):
            self._drop(entry, now)
        self._events.append(PeerGone(preferred.peer_id, preferred.addr, reason))

    def _drop(self, entry: _Entry[A], now: float) -> None:
        """Close ``entry``'s session ourselves and forget it, with no event."""
        entry.session.close(now)
        while entry.session.next_event() is not None:
            pass
        self._remove(entry)

    def _remove(self, entry: _Entry[A]) -> None:
        entry.removed = True
        self._entries.discard(entry)
        for index in entry.indices:
            del self._by_index[index]
        entry.indices = frozenset()
        if entry.init is not None:
            self._forget_init(entry)
        self._timers.discard(entry)
        self._dirty.pop(entry, None)
        self._unsettled.pop(entry, None)
        peer_id = entry.peer_id
        peer = None if peer_id is None else self._by_peer.get(peer_id)
        if peer_id is not None and peer is not None:
            peer.sessions.remove(entry)
            if not peer.sessions:
                del self._by_peer[peer_id]
        if self._by_addr.get(entry.addr) is entry:
            del self._by_addr[entry.addr]
            if peer is not None and peer.sessions and peer.preferred.addr == entry.addr:
                self._by_addr[entry.addr] = peer.preferred

    def _forget_init(self, entry: _Entry[A]) -> None:
        assert entry.init is not None
        if self._responding.get(entry.init) is entry:
            del self._responding[entry.init]
        entry.init = None
