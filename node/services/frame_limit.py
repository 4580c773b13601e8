"""The largest frame the node's transports carry: an application message of
``transport.max_message_bytes`` plus the coordinator's delivery DATA header around it.

The coordinator sends each message inside a delivery DATA frame (node.proto.delivery.wire), so a
transport built for exactly ``max_message_bytes`` would refuse the largest message the issue
requires to work (1 MiB). Every transport the coordinator drives (UDP, TCP-TLS, TURN) is built
for this size instead, and the coordinator's API refuses a message above ``max_message_bytes``
itself (ApiUsageError TOO_LARGE), before any transport sees it.
"""

from __future__ import annotations

from node.config import Config
from node.proto.delivery.wire import DATA_HEADER


def frame_limit(config: Config) -> int:
    return config.transport.max_message_bytes + DATA_HEADER
