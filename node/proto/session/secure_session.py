"""The datagram secure session: a sans-IO core that authenticates a peer and seals every datagram.

For paths without TLS (UDP, TURN, BLE). One ``SecureSession`` talks to one peer over one path:

- A three-message handshake (node.proto.session.handshake) proves both peer ids with the Ed25519
  identity keys, checked by a ``PeerVerifier`` (the fleet trust, node.proto.session.trust), and
  derives per-direction keys from fresh X25519 ephemerals (forward secrecy). A dialled session
  refuses a peer that proves any other id than the one dialled.
- Every datagram after it is sealed with ChaCha20-Poly1305 under a 64-bit counter nonce and
  checked against a sliding anti-replay window (node.proto.session.replay_window, RFC 6479): reordering
  within the window is accepted, repeats and datagrams behind the window are dropped and counted.
- Key confirmation: the responder installs keys only once the CONFIRM proved the initiator holds
  them, and answers with an (empty) datagram under them; the initiator retransmits the CONFIRM
  until a datagram opens under the new keys (``KeyConfirmed``). Datagrams that overtake the
  CONFIRM are held (a few) and opened when it arrives.
- Rekeying as WireGuard does (its paper §6.1-6.2): a new handshake after ``rekey_after_time``
  (the session's initiator first, the responder ``responder_rekey_delay`` later) or
  ``rekey_after_messages``; keys are dropped at ``reject_after_time`` or
  ``reject_after_messages``. After a rekey the previous keys still open datagrams for
  ``previous_key_grace`` so that in-flight ones are not lost.

Shape (aioquic's): ``connect(now)`` to dial; ``receive_datagram(data, now)``; ``send(payload,
now)``; ``datagrams_to_send(now)``; ``get_timer()`` / ``handle_timer(now)``; ``next_event()``.
No I/O, no clock; randomness comes from an injectable ``random_bytes``.

Network input never raises: a bad datagram is counted in ``drops`` by ``DropReason``, a failed
handshake is a ``HandshakeFailed`` event, and a session that cannot go on ends with
``SessionClosed``. Simultaneous initiations (both sides dial, as in hole punching) resolve to the
INIT with the larger ephemeral key; the other side answers it as responder.

An INIT is anonymous until its CONFIRM proves who sent it, so an established session lets no INIT
disturb it (issue 13): it answers one as a separate pending handshake (up to
``max_pending_responses`` of them, the oldest forgotten first) and keeps its keys and its own
pending rekey until that handshake completes. Under load a responder's ``CookieChecker``
(node.proto.session.cookie) answers an INIT with a COOKIE_REPLY; the initiator takes the cookie,
if the reply answers the INIT it sent, and sends its INIT again with mac2.
"""

from __future__ import annotations

import enum
import math
import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.proto.identity import Identity
from node.proto.session.cookie import COOKIE_LIFETIME, open_cookie_reply
from node.proto.session.errors import (
    DropReason,
    HandshakeError,
    HandshakeFailure,
    SessionConfigError,
    SessionDecodeError,
    SessionNotReady,
    SessionStateError,
    StateProblem,
)
from node.proto.session.handshake import HandshakeResult, Initiation, Response
from node.proto.session.keypair import Keypair
from node.proto.session.messages import (
    MAX_CREDENTIAL,
    TRANSPORT_HEADER,
    TRANSPORT_OVERHEAD,
    TRANSPORT_TYPE_WORD,
    ConfirmMessage,
    CookieReplyMessage,
    InitMessage,
    ResponseMessage,
    decode_handshake,
    message_type,
    with_mac2,
)
from node.proto.session.replay_window import DEFAULT_BLOCKS
from node.proto.session.trust import PeerVerificationError, PeerVerifier
from node.proto.stun.transaction import ClientTransaction, Timing, TransactionTimedOut

__all__ = [
    "DEFAULT_SESSION_CONFIG",
    "CloseReason",
    "DatagramReceived",
    "HandshakeFailed",
    "KeyConfirmed",
    "SecureSession",
    "SessionClosed",
    "SessionConfig",
    "SessionEstablished",
    "SessionEvent",
    "SessionState",
]

# WireGuard's constants (whitepaper §6.1, and wireguard-go's device/constants.go).
REKEY_AFTER_MESSAGES: Final = 1 << 60
REJECT_AFTER_MESSAGES: Final = (1 << 64) - (1 << 13) - 1
REKEY_AFTER_TIME: Final = 120.0
REJECT_AFTER_TIME: Final = 180.0
REKEY_TIMEOUT: Final = 5.0
MAX_UDP_PAYLOAD: Final = 65_507  # IPv4: 65535 - 20 (IP) - 8 (UDP)

# INIT retransmitted at 0, 0.5, 1.5, 3.5, 7.5, 12.5, 17.5 s; the handshake fails at 21.5 s
# (node.proto.stun.transaction's schedule with the doubling capped at WireGuard's REKEY_TIMEOUT).
DEFAULT_HANDSHAKE_TIMING: Final = Timing(rto=0.5, rc=7, rm=8, rto_cap=REKEY_TIMEOUT)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    handshake_timing: Timing = DEFAULT_HANDSHAKE_TIMING
    responder_timeout: float = 30.0  # a RESPONSE without CONFIRM is forgotten after this
    rekey_after_time: float = REKEY_AFTER_TIME
    reject_after_time: float = REJECT_AFTER_TIME
    responder_rekey_delay: float = 10.0  # the responder rekeys only if the initiator did not
    rekey_retry_interval: float = REKEY_TIMEOUT  # pause after a failed rekey
    rekey_after_messages: int = REKEY_AFTER_MESSAGES
    reject_after_messages: int = REJECT_AFTER_MESSAGES
    previous_key_grace: float = 10.0
    replay_window_blocks: int = DEFAULT_BLOCKS
    max_early_datagrams: int = 16
    max_pending_responses: int = 4  # INITs answered and awaiting their CONFIRM at once
    max_payload: int = MAX_UDP_PAYLOAD - TRANSPORT_OVERHEAD

    def __post_init__(self) -> None:
        for name in (
            "responder_timeout",
            "rekey_after_time",
            "reject_after_time",
            "responder_rekey_delay",
            "rekey_retry_interval",
            "previous_key_grace",
        ):
            value = getattr(self, name)
            if not (value > 0.0 and math.isfinite(value)):
                raise SessionConfigError(f"{name} must be a positive finite number, got {value}")
        if not self.rekey_after_time + self.responder_rekey_delay < self.reject_after_time:
            raise SessionConfigError(
                "rekey_after_time + responder_rekey_delay must be below reject_after_time"
            )
        if not 0 < self.rekey_after_messages < self.reject_after_messages <= REJECT_AFTER_MESSAGES:
            raise SessionConfigError(
                f"need 0 < rekey_after_messages < reject_after_messages <= {REJECT_AFTER_MESSAGES}"
            )
        if self.replay_window_blocks < 2:
            raise SessionConfigError("replay_window_blocks must be >= 2")
        if self.max_pending_responses < 1:
            raise SessionConfigError("max_pending_responses must be >= 1")
        if self.max_early_datagrams < 0:
            raise SessionConfigError("max_early_datagrams must be >= 0")
        if not 0 <= self.max_payload <= MAX_UDP_PAYLOAD - TRANSPORT_OVERHEAD:
            raise SessionConfigError(f"max_payload must be 0..{MAX_UDP_PAYLOAD - TRANSPORT_OVERHEAD}")


DEFAULT_SESSION_CONFIG: Final = SessionConfig()


class SessionState(enum.Enum):
    IDLE = "idle"  # waiting for connect() or a peer's INIT
    HANDSHAKING = "handshaking"  # no keys yet
    ESTABLISHED = "established"  # keys to send with (rekeys happen in this state)
    CLOSED = "closed"


class CloseReason(enum.Enum):
    HANDSHAKE_FAILED = "handshake failed and no keys remain"
    KEYS_EXPIRED = "keys reached reject-after-time without a successful rekey"
    CLOSED_LOCALLY = "closed locally"


@dataclass(frozen=True, slots=True)
class SessionEstablished:
    """New keys are in use: the first handshake (generation 0) or a rekey."""

    peer_id: str
    public_key: bytes
    generation: int
    initiator: bool


@dataclass(frozen=True, slots=True)
class KeyConfirmed:
    """The peer has shown it holds this generation's keys."""

    generation: int


@dataclass(frozen=True, slots=True)
class DatagramReceived:
    payload: bytes


# The receive hot path builds its event by setting the slot directly (as node.proto.vocabulary's
# FRAME_SETTERS do): the same frozen instance at half the cost of the dataclass __init__.
_new = object.__new__
_SET_PAYLOAD: Callable[[object, bytes], None] = vars(DatagramReceived)["payload"].__set__
_UNPACK_HEADER: Final = TRANSPORT_HEADER.unpack_from


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """A handshake failed for good; ``error`` is a HandshakeError or a PeerVerificationError."""

    reason: HandshakeFailure
    error: HandshakeError | PeerVerificationError


@dataclass(frozen=True, slots=True)
class SessionClosed:
    reason: CloseReason


SessionEvent = SessionEstablished | KeyConfirmed | DatagramReceived | HandshakeFailed | SessionClosed


class _Input(enum.Enum):
    CONNECT = "connect"
    INIT_RECEIVED = "init received"
    KEYS_INSTALLED = "keys installed"
    GAVE_UP = "handshake failed, nothing left"
    KEYS_EXPIRED = "keys expired"
    CLOSE = "close"


_S = SessionState
_CLOSED: Final = SessionState.CLOSED  # read for every datagram: a global, not an enum attribute
_TRANSITIONS: Final[dict[tuple[SessionState, _Input], SessionState]] = {
    (_S.IDLE, _Input.CONNECT): _S.HANDSHAKING,
    (_S.IDLE, _Input.INIT_RECEIVED): _S.HANDSHAKING,
    (_S.HANDSHAKING, _Input.INIT_RECEIVED): _S.HANDSHAKING,
    (_S.ESTABLISHED, _Input.INIT_RECEIVED): _S.ESTABLISHED,
    (_S.HANDSHAKING, _Input.KEYS_INSTALLED): _S.ESTABLISHED,
    (_S.ESTABLISHED, _Input.KEYS_INSTALLED): _S.ESTABLISHED,
    (_S.HANDSHAKING, _Input.GAVE_UP): _S.CLOSED,
    (_S.ESTABLISHED, _Input.GAVE_UP): _S.CLOSED,
    (_S.ESTABLISHED, _Input.KEYS_EXPIRED): _S.CLOSED,
    (_S.IDLE, _Input.CLOSE): _S.CLOSED,
    (_S.HANDSHAKING, _Input.CLOSE): _S.CLOSED,
    (_S.ESTABLISHED, _Input.CLOSE): _S.CLOSED,
}


@dataclass(slots=True)
class _Confirming:
    """Our CONFIRM, retransmitted until the keys it made are confirmed."""

    keypair: Keypair
    transaction: ClientTransaction = field(repr=False)


class SecureSession:
    def __init__(
        self,
        identity: Identity,
        verifier: PeerVerifier,
        *,
        credential: bytes = b"",
        expected_peer_id: str | None = None,
        config: SessionConfig = DEFAULT_SESSION_CONFIG,
        random_bytes: Callable[[int], bytes] = os.urandom,
        index_taken: Callable[[int], bool] | None = None,
    ) -> None:
        """``index_taken``: a driver routing many sessions by receiver index (one table for the
        socket) says which indices other sessions hold, so that this one never picks them."""
        if len(credential) > MAX_CREDENTIAL:
            raise SessionConfigError(
                f"credential of {len(credential)} bytes exceeds {MAX_CREDENTIAL} (anti-amplification)"
            )
        self._identity = identity
        self._verifier = verifier
        self._credential = credential
        self._expected_peer_id = expected_peer_id
        self._config = config
        # The config's numbers the path of every datagram reads, hoisted out of it.
        self._reject_after_time = config.reject_after_time
        self._reject_after_messages = config.reject_after_messages
        self._rekey_after_messages = config.rekey_after_messages
        self._max_payload = config.max_payload
        self._random = random_bytes
        self._index_taken = index_taken
        self._authenticated = 0
        self._state = SessionState.IDLE
        self._peer_id: str | None = None
        self._peer_public_key: bytes | None = None
        self._initiation: Initiation | None = None
        self._init_transaction: ClientTransaction | None = None
        self._confirming: _Confirming | None = None
        self._responses: dict[int, Response] = {}  # by our index; insertion order is age
        self._glare_lost: bytes | None = None
        self._cookie: bytes | None = None  # the responder's latest cookie for our address
        self._cookie_at = -math.inf
        self._cookie_wanted = False  # an INIT went out since the last cookie reply we took
        self._current: Keypair | None = None
        self._previous: Keypair | None = None
        self._previous_expires: float | None = None  # None: kept while the current is unconfirmed
        self._last_confirm: bytes | None = None
        self._generation = -1
        self._rekey_not_before = -math.inf
        self._out: list[bytes] = []
        self._events: deque[SessionEvent] = deque()
        self._drops: Counter[DropReason] = Counter()

    # -- what the driver reads -------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def peer_id(self) -> str | None:
        """The proven peer id, once a handshake completed."""
        return self._peer_id

    @property
    def peer_public_key(self) -> bytes | None:
        return self._peer_public_key

    @property
    def generation(self) -> int:
        """The generation of the current keys (0 after the first handshake), -1 before."""
        return self._generation

    @property
    def drops(self) -> Counter[DropReason]:
        """Dropped incoming datagrams by reason (a copy)."""
        return self._drops.copy()

    @property
    def authenticated(self) -> int:
        """How many received datagrams authenticated: opened under this session's keys, or
        completed a handshake. A driver learns the peer's current address and consent freshness
        from these alone (a replayed or forged datagram never counts)."""
        return self._authenticated

    def local_indices(self) -> frozenset[int]:
        """The receiver indices that reach this session now (for a driver that routes by index)."""
        live = (self._initiation, self._confirming and self._confirming.keypair)
        keys = (self._current, self._previous)
        return frozenset([*(x.local_index for x in (*live, *keys) if x), *self._responses])

    def next_event(self) -> SessionEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self._init_transaction is None and self._confirming is None:  # established, nothing to retry
            out = self._out
            if out:
                self._out = []
                return out
            return []
        out = []
        if self._init_transaction is not None:
            inits = self._init_transaction.datagrams_to_send(now)
            if inits:
                self._cookie_wanted = True
                out += [self._with_cookie(init, now) for init in inits]
        if self._confirming is not None:
            out += self._confirming.transaction.datagrams_to_send(now)
        if self._out:
            out += self._out
            self._out = []
        return out

    # -- what the driver calls --------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Dial: start the handshake as initiator."""
        self._transition(_Input.CONNECT)
        self._start_initiation(now)

    def close(self, now: float) -> None:
        if self._state is not SessionState.CLOSED:
            self._close(CloseReason.CLOSED_LOCALLY)

    def send(self, payload: bytes, now: float) -> None:
        """Seal ``payload`` as one datagram (picked up by ``datagrams_to_send``)."""
        keypair = self._current
        if keypair is not None and now >= keypair.created_at + self._reject_after_time:
            self.handle_timer(now)  # a late timer must not let expired keys seal anything
            keypair = self._current
        if keypair is None:
            closed = self._state is SessionState.CLOSED
            raise SessionNotReady(StateProblem.CLOSED if closed else StateProblem.NOT_ESTABLISHED)
        if len(payload) > self._max_payload:
            raise SessionNotReady(StateProblem.TOO_LARGE, f"{len(payload)} > {self._max_payload}")
        if keypair.send_counter >= self._reject_after_messages:
            self._maybe_rekey(now)
            raise SessionNotReady(StateProblem.KEYS_EXHAUSTED)
        self._out.append(keypair.seal(payload))
        if keypair.send_counter >= self._rekey_after_messages:
            self._maybe_rekey(now)

    def receive_datagram(self, data: bytes, now: float) -> bool:
        """Feed one datagram; True when it authenticated (``authenticated`` moved), so a driver
        on the data path needs no second look at the count."""
        if data[:4] == TRANSPORT_TYPE_WORD and self._state is not _CLOSED:
            # The path of every data datagram, inline: no general dispatch, no further call but
            # the keys' open (each call level costs a measurable share of the AEAD's own time).
            try:
                if len(data) < TRANSPORT_OVERHEAD:
                    raise SessionDecodeError(DropReason.TRUNCATED, "transport")
                _, index, counter = _UNPACK_HEADER(data)
                keypair = self._current
                if keypair is None or keypair.local_index != index:
                    keypair = self._previous
                    if keypair is None or keypair.local_index != index:
                        self._hold_early(data, index)
                        return False
                if now >= keypair.created_at + self._reject_after_time:
                    raise SessionDecodeError(DropReason.UNKNOWN_INDEX, "keys past reject-after-time")
                if counter >= self._reject_after_messages:
                    raise SessionDecodeError(DropReason.COUNTER_LIMIT)
                payload = keypair.open(data, counter)  # replay window checked, moved once authentic
            except SessionDecodeError as exc:
                self._drops[exc.reason] += 1
                return False
            self._authenticated += 1
            if not keypair.confirmed:
                self._confirmed(keypair, now)
            if payload:  # an empty payload is a keepalive / key confirmation
                event = _new(DatagramReceived)  # = DatagramReceived(payload), without the frozen __init__
                _SET_PAYLOAD(event, payload)
                self._events.append(event)
            return True
        before = self._authenticated
        try:
            kind = message_type(data)  # TRANSPORT only when closed: dropped as such here
            if self._state is SessionState.CLOSED:
                raise SessionDecodeError(DropReason.CLOSED)
            msg = decode_handshake(data, kind)
            if isinstance(msg, InitMessage):
                self._receive_init(msg, now)
            elif isinstance(msg, ResponseMessage):
                self._receive_response(msg, now)
            elif isinstance(msg, CookieReplyMessage):
                self._receive_cookie_reply(msg, now)
            else:
                self._receive_confirm(msg, now)
        except SessionDecodeError as exc:
            self._drops[exc.reason] += 1
        return self._authenticated != before

    def get_timer(self) -> float | None:
        deadlines: list[float] = []
        if self._init_transaction is not None:
            deadlines.append(self._timer_of(self._init_transaction))
        if self._confirming is not None:
            deadlines.append(self._timer_of(self._confirming.transaction))
        deadlines += [response.deadline for response in self._responses.values()]
        if self._current is not None:
            deadlines.append(self._current.created_at + self._config.reject_after_time)
        if self._previous is not None:
            deadlines.append(self._previous_deadline(self._previous))
        rekey_at = self._rekey_at()
        if rekey_at is not None:
            deadlines.append(rekey_at)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        if self._state is SessionState.CLOSED:
            return
        if self._init_transaction is not None:
            self._init_transaction.handle_timer(now)
            if isinstance(self._init_transaction.next_event(), TransactionTimedOut):
                self._initiation = self._init_transaction = None
                self._handshake_failed(HandshakeError(HandshakeFailure.TIMEOUT, "no RESPONSE"), now)
        if self._confirming is not None:
            self._confirming.transaction.handle_timer(now)
            if isinstance(self._confirming.transaction.next_event(), TransactionTimedOut):
                self._revert_unconfirmed(self._confirming.keypair)
                self._handshake_failed(HandshakeError(HandshakeFailure.TIMEOUT, "keys unconfirmed"), now)
        for index, response in list(self._responses.items()):
            if now >= response.deadline:
                del self._responses[index]
                # With keys, an INIT nobody confirmed proves nothing (a spoof, a replay, a peer that
                # gave up): it is forgotten without delaying our own rekey.
                if self._state is not SessionState.ESTABLISHED:
                    self._handshake_failed(HandshakeError(HandshakeFailure.TIMEOUT, "no CONFIRM"), now)
        if self._current is None:  # nothing to age (or the failures above closed the session)
            return
        if self._previous is not None and now >= self._previous_deadline(self._previous):
            self._previous = None
        if now >= self._current.created_at + self._config.reject_after_time:
            self._current = self._previous = None
            self._close(CloseReason.KEYS_EXPIRED)
            return
        rekey_at = self._rekey_at()
        if rekey_at is not None and now >= rekey_at:
            self._start_initiation(now)

    # -- the handshake ------------------------------------------------------------------------

    def _new_index(self) -> int:
        taken = self.local_indices()
        while True:
            index = int.from_bytes(self._random(4), "little")
            if index not in taken and not (self._index_taken and self._index_taken(index)):
                return index

    def _new_ephemeral(self) -> X25519PrivateKey:
        return X25519PrivateKey.from_private_bytes(self._random(32))

    def _start_initiation(self, now: float) -> None:
        initiation = Initiation(self._identity, self._credential, self._new_index(), self._new_ephemeral())
        self._initiation = initiation
        self._cookie_wanted = False
        self._init_transaction = ClientTransaction(
            initiation.local_index.to_bytes(4, "little"),
            initiation.init,
            now,
            self._config.handshake_timing,
        )

    def _expected(self) -> str | None:
        # A rekey must prove the peer already proven; the first handshake the one dialled (if any).
        return self._peer_id if self._peer_id is not None else self._expected_peer_id

    def _receive_init(self, msg: InitMessage, now: float) -> None:
        transcript = msg.transcript  # a retransmission with a cookie is the same INIT
        for pending in self._responses.values():
            if transcript == pending.init:
                self._out.append(pending.response)  # our RESPONSE was lost: the same again
                return
        if transcript == self._glare_lost:
            raise SessionDecodeError(DropReason.GLARE_LOST, "a retransmission")
        # Both sides dialled at once: the larger ephemeral wins, and the other side answers it.
        if self._initiation is not None and msg.ephemeral <= self._initiation.ephemeral_public:
            self._glare_lost = transcript
            raise SessionDecodeError(DropReason.GLARE_LOST)
        response = Response(
            self._identity,
            self._credential,
            local_index=self._new_index(),
            ephemeral=self._new_ephemeral(),
            msg=msg,
            deadline=now + self._config.responder_timeout,
        )
        if self._state is not SessionState.ESTABLISHED:
            self._initiation = self._init_transaction = None  # lost the glare, if there was one
        # else anyone could have sent it: our rekey goes on until its CONFIRM proves the peer's.
        self._transition(_Input.INIT_RECEIVED)
        if len(self._responses) >= self._config.max_pending_responses:
            del self._responses[next(iter(self._responses))]  # the oldest: its CONFIRM is late
        self._responses[response.local_index] = response
        self._out.append(response.response)

    def _receive_cookie_reply(self, msg: CookieReplyMessage, now: float) -> None:
        initiation = self._initiation
        if initiation is None or msg.receiver_index != initiation.local_index:
            raise SessionDecodeError(DropReason.UNEXPECTED, "COOKIE_REPLY")
        if not self._cookie_wanted:  # one reply per INIT sent, so a replay cannot make us resend
            raise SessionDecodeError(DropReason.BAD_COOKIE_REPLY, "one already taken for this INIT")
        cookie = open_cookie_reply(msg, initiation.init)
        self._cookie, self._cookie_at, self._cookie_wanted = cookie, now, False
        self._out.append(with_mac2(initiation.init, cookie))  # the INIT again, now with mac2

    def _with_cookie(self, init: bytes, now: float) -> bytes:
        # WireGuard keeps a cookie for CookieRefreshTime, the responder's secret's life (§5.4.7).
        if self._cookie is None or now >= self._cookie_at + COOKIE_LIFETIME:
            return init
        return with_mac2(init, self._cookie)

    def _receive_response(self, msg: ResponseMessage, now: float) -> None:
        initiation = self._initiation
        if initiation is None or msg.receiver_index != initiation.local_index:
            raise SessionDecodeError(DropReason.UNEXPECTED, "RESPONSE")
        try:
            result, confirm = initiation.complete(
                msg, self._verifier, self._expected(), now, self._config.replay_window_blocks
            )
        except (HandshakeError, PeerVerificationError) as exc:
            self._initiation = self._init_transaction = None
            self._handshake_failed(exc, now)
            return
        self._initiation = self._init_transaction = None
        self._authenticated += 1
        # Retransmitted like the INIT was, until a datagram opens under the new keys.
        transaction = ClientTransaction(
            result.keypair.local_index.to_bytes(4, "little"), confirm, now, self._config.handshake_timing
        )
        self._install(result, now)
        self._confirming = _Confirming(result.keypair, transaction)

    def _receive_confirm(self, msg: ConfirmMessage, now: float) -> None:
        response = self._responses.get(msg.receiver_index)
        if response is None:
            current = self._current
            if current is not None and msg.raw == self._last_confirm:
                self._out.append(current.seal(b""))  # our confirmation was lost: confirm again
                return
            raise SessionDecodeError(DropReason.UNEXPECTED, "CONFIRM")
        try:
            result = response.complete(
                msg, self._verifier, self._expected(), now, self._config.replay_window_blocks
            )
        except (HandshakeError, PeerVerificationError) as exc:
            del self._responses[msg.receiver_index]
            self._handshake_failed(exc, now)
            return
        # The peer proved itself: its handshake replaces our rekey (a glare it won) and any
        # other INITs waiting for a CONFIRM (spoofs, or older attempts of its own).
        self._responses = {}
        self._initiation = self._init_transaction = None
        self._authenticated += 1
        self._install(result, now)
        self._last_confirm = msg.raw
        self._out.append(result.keypair.seal(b""))  # key confirmation for the initiator
        for early in response.early:  # held TRANSPORT datagrams: opened (or dropped) as they come
            self.receive_datagram(early, now)

    def _install(self, result: HandshakeResult, now: float) -> None:
        keypair = result.keypair
        self._generation += 1
        keypair.generation = self._generation
        self._confirming = None  # keys from an older handshake of ours no longer need confirming
        self._last_confirm = None
        if self._current is not None:
            self._previous = self._current
            self._previous_expires = now + self._config.previous_key_grace if keypair.confirmed else None
        self._current = keypair
        self._rekey_not_before = -math.inf
        self._peer_id = result.peer_id
        self._peer_public_key = result.peer_public_key
        self._transition(_Input.KEYS_INSTALLED)
        self._events.append(
            SessionEstablished(result.peer_id, result.peer_public_key, keypair.generation, keypair.initiator)
        )
        if keypair.confirmed:
            self._events.append(KeyConfirmed(keypair.generation))

    def _confirmed(self, keypair: Keypair, now: float) -> None:
        keypair.confirmed = True
        if self._confirming is not None and self._confirming.keypair is keypair:
            self._confirming = None
        if self._previous is not None and self._previous_expires is None:
            self._previous_expires = now + self._config.previous_key_grace
        self._events.append(KeyConfirmed(keypair.generation))

    def _revert_unconfirmed(self, keypair: Keypair) -> None:
        """Our CONFIRM never got through: drop the keys it made and go back to the previous ones."""
        # Installing any newer keys clears _confirming, so the keys it holds are the current ones.
        assert self._current is keypair
        self._confirming = None
        self._current, self._previous = self._previous, None
        self._previous_expires = None

    def _handshake_failed(self, error: HandshakeError | PeerVerificationError, now: float) -> None:
        reason = error.reason if isinstance(error, HandshakeError) else HandshakeFailure.REFUSED_BY_TRUST
        self._events.append(HandshakeFailed(reason, error))
        self._rekey_not_before = now + self._config.rekey_retry_interval
        pending = self._initiation or self._responses or self._confirming
        if self._current is None and pending is None:
            self._transition(_Input.GAVE_UP)
            self._events.append(SessionClosed(CloseReason.HANDSHAKE_FAILED))
            self._forget()

    # -- transport datagrams ------------------------------------------------------------------

    def _hold_early(self, data: bytes, index: int) -> None:
        response = self._responses.get(index)
        if response is None:
            raise SessionDecodeError(DropReason.UNKNOWN_INDEX)
        if len(response.early) >= self._config.max_early_datagrams:
            raise SessionDecodeError(DropReason.EARLY_OVERFLOW)
        response.early.append(data)

    # -- timers and state -----------------------------------------------------------------------

    @staticmethod
    def _timer_of(transaction: ClientTransaction) -> float:
        deadline = transaction.get_timer()
        assert deadline is not None  # finished transactions are dropped at once
        return deadline

    def _previous_deadline(self, previous: Keypair) -> float:
        reject = previous.created_at + self._config.reject_after_time
        return reject if self._previous_expires is None else min(reject, self._previous_expires)

    def _rekey_at(self) -> float | None:
        current = self._current
        if (
            current is None
            or self._state is not SessionState.ESTABLISHED
            or self._initiation is not None
            or self._confirming is not None
            or self._responses
        ):
            return None
        if current.send_counter >= self._config.rekey_after_messages:
            due = current.created_at
        else:
            delay = 0.0 if current.initiator else self._config.responder_rekey_delay
            due = current.created_at + self._config.rekey_after_time + delay
        return max(due, self._rekey_not_before)

    def _maybe_rekey(self, now: float) -> None:
        rekey_at = self._rekey_at()
        if rekey_at is not None and now >= rekey_at:
            self._start_initiation(now)

    def _transition(self, event: _Input) -> None:
        new = _TRANSITIONS.get((self._state, event))
        if new is None:
            raise SessionStateError(f"{event.value!r} is not allowed in state {self._state.value!r}")
        self._state = new

    def _close(self, reason: CloseReason) -> None:
        self._transition(_Input.CLOSE if reason is CloseReason.CLOSED_LOCALLY else _Input.KEYS_EXPIRED)
        self._events.append(SessionClosed(reason))
        self._forget()

    def _forget(self) -> None:
        self._initiation = self._init_transaction = None
        self._confirming = None
        self._responses = {}
        self._current = self._previous = None
        self._out = []
