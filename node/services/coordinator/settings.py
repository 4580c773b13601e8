"""The coordinator's and the delivery core's settings from the node's configuration
(``[coordinator]``, ``[transport]``): the sans-IO cores cannot read node.config themselves."""

from __future__ import annotations

from node.config import Config
from node.proto.coordinator import CoordinatorSettings
from node.proto.delivery.settings import DeliverySettings


def coordinator_settings(config: Config) -> CoordinatorSettings:
    c = config.coordinator
    return CoordinatorSettings(
        max_transports_per_peer=c.max_transports_per_peer,
        load_balance_threshold=c.load_balance_threshold,
        performance_samples=config.transport.performance_samples,
    )


def max_payload(config: Config) -> int:
    """The largest application message: ``transport.max_message_bytes``. The transports carry
    the delivery DATA header on top of it (node.services.frame_limit)."""
    return config.transport.max_message_bytes


def delivery_settings(config: Config) -> DeliverySettings:
    t, c = config.transport, config.coordinator
    largest = max_payload(config)
    return DeliverySettings(
        retries=t.retries,
        retry_backoff_s=min(t.retry_backoff_s, t.failover_timeout_s),
        failover_timeout_s=t.failover_timeout_s,
        max_message_bytes=largest,
        window_messages=c.window_max_messages,
        window_bytes=max(c.window_max_bytes, largest),
        rto_max_s=max(t.failover_timeout_s, 1.0),
        reorder_messages=max(256, c.window_max_messages),
        reorder_bytes=max(4 << 20, c.window_max_bytes, largest),
        inbox_messages=c.inbox_max_messages,
        inbox_bytes=max(c.inbox_max_bytes, largest),
    )
