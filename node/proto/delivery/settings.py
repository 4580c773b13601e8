"""DeliverySettings: the delivery core's numbers, with the issue's defaults.

The service layer fills ``retries``, ``retry_backoff_s``, ``failover_timeout_s`` and
``max_message_bytes`` from ``[transport]`` in node.config (this layer cannot import it); the rest
are the core's own bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.proto.delivery.errors import DeliveryMisuse, DeliveryUsageError

__all__ = ["DeliverySettings"]


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    # transport.retries: resends of one message before it (and the stream with it) fails.
    retries: int = 3
    # transport.retry_backoff_s: the wait after the first resend; doubles per resend.
    retry_backoff_s: float = 0.5
    # transport.failover_timeout_s: the ceiling on any wait before a resend (the seed's 5 s).
    failover_timeout_s: float = 5.0
    # transport.max_message_bytes (the seed's 1 MiB).
    max_message_bytes: int = 1 << 20
    # Per peer: unacknowledged reliable messages in flight, in number and in payload bytes.
    window_messages: int = 256
    window_bytes: int = 4 << 20
    # RFC 6298 §2.1: 1 s before any RTT sample. The lower bound is Linux TCP's 200 ms rather than
    # §2.4's 1 s (which the RFC itself calls conservative); it stays above max_ack_delay_s so a
    # delayed ACK is not mistaken for a loss. The upper bound is capped by failover_timeout_s.
    rto_initial_s: float = 1.0
    rto_min_s: float = 0.2
    rto_max_s: float = 5.0
    # Bulk and normal classes: ACK every `ack_every` messages or after max_ack_delay_s, as QUIC's
    # default max_ack_delay of 25 ms and ack-eliciting threshold of 2 (RFC 9000 §13.2.1-2).
    max_ack_delay_s: float = 0.025
    ack_every: int = 2
    # Receiver: out-of-order messages held per (peer, class) and in bytes per peer. At least the
    # sender's window, so a peer with the same settings never has a message refused for room.
    reorder_messages: int = 256
    reorder_bytes: int = 4 << 20
    # Receiver: released messages no subscriber has taken yet (node-wide). When full, releases
    # stop, cumulative ACKs stop advancing and ACKs carry BUSY: senders wait, nothing is dropped.
    inbox_messages: int = 1024
    inbox_bytes: int = 16 << 20
    # Receiver: closed epochs remembered per peer, so stragglers of an old stream are recognised.
    remembered_epochs: int = 16
    # CONTROL and HIGH are sent on the two best paths at once (the hybrid multipath).
    multipath: bool = True

    def __post_init__(self) -> None:
        problems = [
            name
            for name, ok in (
                ("retries", 0 <= self.retries <= 20),
                ("retry_backoff_s", 0 < self.retry_backoff_s <= self.failover_timeout_s),
                ("failover_timeout_s", 0 < self.failover_timeout_s <= 600),
                ("max_message_bytes", 1 <= self.max_message_bytes <= 64 << 20),
                ("window_messages", self.window_messages >= 1),
                ("window_bytes", self.window_bytes >= self.max_message_bytes),
                ("rto_min_s", 0 < self.rto_min_s <= self.rto_initial_s <= self.rto_max_s),
                ("max_ack_delay_s", 0 <= self.max_ack_delay_s < self.rto_min_s),
                ("ack_every", self.ack_every >= 1),
                ("reorder_messages", self.reorder_messages >= 1),
                ("reorder_bytes", self.reorder_bytes >= self.max_message_bytes),
                ("inbox_messages", self.inbox_messages >= 1),
                ("inbox_bytes", self.inbox_bytes >= self.max_message_bytes),
                ("remembered_epochs", self.remembered_epochs >= 1),
            )
            if not ok
        ]
        if problems:
            raise DeliveryUsageError(DeliveryMisuse.BAD_SETTINGS, f"out of range: {', '.join(problems)}")

    @property
    def rto_ceiling_s(self) -> float:
        """No wait before a resend exceeds this: rto_max_s within the failover ceiling."""
        return min(self.rto_max_s, self.failover_timeout_s)

    def resend_wait(self, rto: float, attempt: int) -> float:
        """The wait after transmission ``attempt`` (0 = the first send) before the next resend.

        The first wait is the measured RTO; after each resend it backs off exponentially from
        retry_backoff_s (RFC 6298 §5.5 doubles the RTO the same way), never below the RTO and
        never above the failover ceiling.
        """
        if attempt == 0:
            return rto
        return min(max(rto, self.retry_backoff_s * (1 << (attempt - 1))), self.failover_timeout_s)
