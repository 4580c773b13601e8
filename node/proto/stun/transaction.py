"""STUN client transactions (RFC 8489 §6.2), sans-IO in aioquic's shape.

``ClientTransaction`` retransmits one request and decides when it has failed:

- Unreliable transports (UDP, §6.2.1): the first send at t0, then retransmissions at intervals of
  RTO doubling after each one, Rc sends in total; after the last send the client waits Rm times
  the *initial* RTO. With the defaults (RTO 500 ms, Rc 7, Rm 16) the sends are at 0, 0.5, 1.5,
  3.5, 7.5, 15.5 and 31.5 s and the transaction fails at 31.5 + 16 * 0.5 = 39.5 s, the RFC's own
  worked example. In general send k (0-based) is at t0 + RTO * (2**k - 1) and the failure at
  t0 + RTO * (2**(Rc - 1) - 1 + Rm).
- Reliable transports (TCP, TLS-over-TCP, §6.2.2): one send, no retransmission (the transport
  retransmits), failure after Ti = 39.5 s.

Every timing value is configurable per transaction (§6.2.1: RTO, Rc and Rm "SHOULD be
configurable"; §6.2.2: so should Ti) because NAT probes that expect silence need short ones. An
optional ``rto_cap`` bounds the doubled retransmission interval; it is off by default, which
reproduces the RFC schedule exactly. The final wait is always Rm * RTO with the initial RTO.

Schedules run from the ``now`` at which a timer is handled, not from the deadline that was
missed: a late timer delays the remaining sends instead of bursting them out back to back.

Once a transaction has finished, later responses and timers are ignored, not errors: a server
answers every retransmission it receives, so duplicate responses are normal network input, and a
driver's timer may fire after the response that finished the transaction was handled.

``TransactionManager`` runs the transactions of one client and enforces §6.2: "a client SHOULD
limit itself to ten outstanding transactions to the same server". Extra transactions wait in a
bounded per-server FIFO and make their first send when a slot frees.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from node.errors import LocalError

__all__ = [
    "DEFAULT_RC",
    "DEFAULT_RM",
    "DEFAULT_RTO",
    "DEFAULT_TI",
    "DEFAULT_TIMING",
    "ClientTransaction",
    "DuplicateTransaction",
    "Timing",
    "TransactionConfigError",
    "TransactionError",
    "TransactionEvent",
    "TransactionManager",
    "TransactionQueueFull",
    "TransactionSucceeded",
    "TransactionTimedOut",
]

DEFAULT_RTO: Final = 0.5  # RFC 8489 §6.2.1: initial RTO "SHOULD be ... >= 500 ms"
DEFAULT_RC: Final = 7  # RFC 8489 §6.2.1: Rc "SHOULD have a default of 7"
DEFAULT_RM: Final = 16  # RFC 8489 §6.2.1: Rm "SHOULD have a default of 16"
DEFAULT_TI: Final = 39.5  # RFC 8489 §6.2.2: Ti "SHOULD have a default of 39.5s"
MAX_OUTSTANDING_PER_SERVER: Final = 10  # RFC 8489 §6.2: "ten outstanding transactions"
DEFAULT_MAX_QUEUED_PER_SERVER: Final = 100  # ours: bounds memory if a server stops answering


class TransactionError(LocalError):
    """Root of the transaction layer's errors: all of them are the caller's misuse."""


class TransactionConfigError(TransactionError):
    """A timing value or a limit is out of range."""


class DuplicateTransaction(TransactionError):
    """The transaction id is already outstanding or queued in this manager."""

    def __init__(self, transaction_id: bytes) -> None:
        super().__init__(f"transaction {transaction_id.hex()} already exists")
        self.transaction_id = transaction_id


class TransactionQueueFull(TransactionError):
    """A server already has the maximum of outstanding and queued transactions."""

    def __init__(self, server: Hashable, limit: int) -> None:
        super().__init__(f"queue for {server!r} is full ({limit} waiting)")
        self.server = server
        self.limit = limit


@dataclass(frozen=True, slots=True)
class TransactionSucceeded:
    transaction_id: bytes
    response: object
    # Karn's rule: only a transaction that sent exactly once has an unambiguous RTT.
    rtt: float | None


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    transaction_id: bytes
    sends: int  # requests actually handed out by datagrams_to_send


TransactionEvent = TransactionSucceeded | TransactionTimedOut


def _positive(name: str, value: float) -> None:
    if not (value > 0.0 and math.isfinite(value)):  # also rejects NaN
        raise TransactionConfigError(f"{name} must be a positive finite number, got {value}")


@dataclass(frozen=True, slots=True)
class Timing:
    """One transaction's retransmission parameters; the defaults are RFC 8489's."""

    rto: float = DEFAULT_RTO
    rc: int = DEFAULT_RC
    rm: int = DEFAULT_RM
    reliable: bool = False
    ti: float = DEFAULT_TI
    rto_cap: float | None = None

    def __post_init__(self) -> None:
        _positive("rto", self.rto)
        _positive("ti", self.ti)
        if self.rc < 1:
            raise TransactionConfigError(f"rc must be >= 1, got {self.rc}")
        if self.rm < 1:
            raise TransactionConfigError(f"rm must be >= 1, got {self.rm}")
        if self.rto_cap is not None and not self.rto_cap >= self.rto:
            raise TransactionConfigError(f"rto_cap must be >= rto, got {self.rto_cap}")


DEFAULT_TIMING: Final = Timing()


class ClientTransaction:
    """One request, retransmitted until a response or the timeout (RFC 8489 §6.2.1/§6.2.2)."""

    def __init__(
        self,
        transaction_id: bytes,
        request: bytes,
        now: float,
        timing: Timing = DEFAULT_TIMING,
    ) -> None:
        self._timing = timing
        self.transaction_id = transaction_id
        self._request = request
        self._pending = 1  # sends scheduled but not yet handed out; the first is due at once
        self._scheduled = 1
        self._sends = 0
        self._last_sent_at = now
        self._interval = timing.rto  # the wait after the latest send while retransmissions remain
        self._deadline: float | None = now + self._wait_after_send()
        self._event: TransactionEvent | None = None

    def _wait_after_send(self) -> float:
        timing = self._timing
        if timing.reliable:
            return timing.ti  # §6.2.2: no retransmissions over TCP/TLS, fail after Ti
        if self._scheduled >= timing.rc:
            return timing.rm * timing.rto  # §6.2.1: Rm times the (initial) RTO after the last
        return self._interval

    @property
    def finished(self) -> bool:
        return self._deadline is None

    @property
    def sends(self) -> int:
        return self._sends

    def datagrams_to_send(self, now: float) -> list[bytes]:
        datagrams = [self._request] * self._pending
        if datagrams:
            self._sends += self._pending
            self._last_sent_at = now
            self._pending = 0
        return datagrams

    def get_timer(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        if self._timing.reliable or self._scheduled >= self._timing.rc:
            self._finish(TransactionTimedOut(self.transaction_id, self._sends))
            return
        self._pending += 1
        self._scheduled += 1
        # §6.2.1: the interval doubles after each retransmission.
        self._interval *= 2
        if self._timing.rto_cap is not None:
            self._interval = min(self._interval, self._timing.rto_cap)
        self._deadline = now + self._wait_after_send()

    def receive_response(self, response: object, now: float) -> bool:
        """Complete with ``response``; False (ignored) when the transaction already finished."""
        if self._deadline is None:
            return False
        # Karn's rule: with more than one request on the wire, the response cannot be matched to
        # one of them, so its RTT would poison an RTO estimate. Zero sends cannot be timed either.
        rtt = now - self._last_sent_at if self._sends == 1 else None
        self._finish(TransactionSucceeded(self.transaction_id, response, rtt))
        return True

    def _finish(self, event: TransactionEvent) -> None:
        self._deadline = None
        self._pending = 0  # a retransmission not yet handed out is no longer wanted
        self._event = event

    def next_event(self) -> TransactionEvent | None:
        event, self._event = self._event, None
        return event


ServerT = TypeVar("ServerT", bound=Hashable)


@dataclass(frozen=True, slots=True)
class _Queued(Generic[ServerT]):
    server: ServerT
    transaction_id: bytes
    request: bytes
    timing: Timing


class TransactionManager(Generic[ServerT]):
    """All client transactions of one agent, at most ``max_outstanding`` per server (§6.2)."""

    def __init__(
        self,
        *,
        max_outstanding: int = MAX_OUTSTANDING_PER_SERVER,
        max_queued: int = DEFAULT_MAX_QUEUED_PER_SERVER,
    ) -> None:
        if max_outstanding < 1:
            raise TransactionConfigError(f"max_outstanding must be >= 1, got {max_outstanding}")
        if max_queued < 0:
            raise TransactionConfigError(f"max_queued must be >= 0, got {max_queued}")
        self.max_outstanding = max_outstanding
        self.max_queued = max_queued
        # Insertion order is start order, so datagrams go out in the order transactions began.
        self._active: dict[bytes, tuple[ServerT, ClientTransaction]] = {}
        self._outstanding: dict[ServerT, int] = {}
        self._queues: dict[ServerT, deque[_Queued[ServerT]]] = {}
        self._queued_ids: dict[bytes, ServerT] = {}
        self._events: deque[tuple[ServerT, TransactionEvent]] = deque()

    def outstanding(self, server: ServerT) -> int:
        return self._outstanding.get(server, 0)

    def queued(self, server: ServerT) -> int:
        return len(self._queues.get(server, ()))

    def start(
        self,
        server: ServerT,
        transaction_id: bytes,
        request: bytes,
        now: float,
        timing: Timing = DEFAULT_TIMING,
    ) -> bool:
        """Start a transaction (True) or queue it behind the server's full slots (False)."""
        if transaction_id in self._active or transaction_id in self._queued_ids:
            raise DuplicateTransaction(transaction_id)
        queued = _Queued(server, transaction_id, request, timing)
        if self.outstanding(server) < self.max_outstanding:
            self._launch(queued, now)
            return True
        queue = self._queues.setdefault(server, deque())
        if len(queue) >= self.max_queued:
            raise TransactionQueueFull(server, self.max_queued)
        queue.append(queued)
        self._queued_ids[transaction_id] = server
        return False

    def _launch(self, queued: _Queued[ServerT], now: float) -> None:
        transaction = ClientTransaction(queued.transaction_id, queued.request, now, queued.timing)
        self._active[queued.transaction_id] = (queued.server, transaction)
        self._outstanding[queued.server] = self.outstanding(queued.server) + 1

    def _release(self, transaction_id: bytes, now: float) -> None:
        """Forget a finished or cancelled transaction and give its slot to the next in line."""
        server, _ = self._active.pop(transaction_id)
        self._outstanding[server] -= 1
        if not self._outstanding[server]:
            del self._outstanding[server]
        queue = self._queues.get(server)
        if queue:
            queued = queue.popleft()
            del self._queued_ids[queued.transaction_id]
            if not queue:
                del self._queues[server]
            self._launch(queued, now)

    def _collect(self, server: ServerT, transaction: ClientTransaction, now: float) -> None:
        event = transaction.next_event()
        if event is not None:
            self._events.append((server, event))
            self._release(transaction.transaction_id, now)

    def receive(self, server: ServerT, transaction_id: bytes, response: object, now: float) -> bool:
        """Deliver a decoded response; False when it matches no outstanding transaction.

        Unmatched responses (a wrong or stale id, a queued transaction that never sent, another
        server) are dropped: RFC 8489 §6.3 checks "that the transaction ID matches a transaction
        that is still in progress" and silently discards the message otherwise.
        """
        entry = self._active.get(transaction_id)
        if entry is None or entry[0] != server:
            return False
        transaction = entry[1]
        transaction.receive_response(response, now)
        self._collect(server, transaction, now)
        return True

    def cancel(self, transaction_id: bytes, now: float) -> bool:
        """Drop a transaction without an event; ``now`` starts the next queued one, if any.

        False when the id is unknown (already finished, cancelled or never started).
        """
        if transaction_id in self._active:
            self._release(transaction_id, now)
            return True
        server = self._queued_ids.pop(transaction_id, None)
        if server is None:
            return False
        queue = self._queues[server]
        for queued in queue:
            if queued.transaction_id == transaction_id:
                queue.remove(queued)
                break
        if not queue:
            del self._queues[server]
        return True

    def datagrams_to_send(self, now: float) -> list[tuple[ServerT, bytes]]:
        return [
            (server, datagram)
            for server, transaction in self._active.values()
            for datagram in transaction.datagrams_to_send(now)
        ]

    def get_timer(self) -> float | None:
        # Finished transactions are released at once, so every active one has a deadline.
        deadlines = [tx.get_timer() for _, tx in self._active.values()]
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        # A list copy: finishing releases slots, which launches queued transactions. Those start
        # at ``now`` with a deadline after it (RTO and Ti are positive), so one pass is enough.
        for server, transaction in list(self._active.values()):
            transaction.handle_timer(now)
            self._collect(server, transaction, now)

    def next_event(self) -> tuple[ServerT, TransactionEvent] | None:
        """The next finished transaction with its server (for a per-server breaker), or None."""
        return self._events.popleft() if self._events else None
