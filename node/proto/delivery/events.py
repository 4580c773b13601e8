"""What the delivery cores hand to their driver: frames to transmit and events to report."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from node.proto.delivery.ids import MessageId
from node.proto.vocabulary import PeerId

__all__ = [
    "Acknowledged",
    "Delivered",
    "FailReason",
    "Failed",
    "SendReason",
    "SenderEvent",
    "Transmit",
]


class SendReason(enum.Enum):
    FIRST = "first"  # the message's first transmission
    TIMEOUT = "timeout"  # its retransmission timer expired (no ACK within the RTO or backoff)
    PATH_FAILED = "path_failed"  # the caller said the path failed: resend on the next one at once
    PROBE = "probe"  # the peer said busy, or has gone quiet: this resend asks it for an ACK
    RESUME = "resume"  # the peer's inbox has room again: resend what it refused while busy


@dataclass(frozen=True, slots=True)
class Transmit:
    """One DATA frame to send. The caller picks the path (two paths when ``multipath``)."""

    message_id: MessageId
    data: bytes
    reason: SendReason
    multipath: bool


class FailReason(enum.Enum):
    RETRIES_EXHAUSTED = "no acknowledgement after every retry"
    STREAM_BROKEN = "an earlier message to the peer failed, so this one could not be delivered in order"
    NO_PATH = "no path to the peer came back within the failover timeout"


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The peer's node has the message in its inbox."""

    message_id: MessageId


@dataclass(frozen=True, slots=True)
class Failed:
    """The message was not acknowledged and will not be resent; it may or may not have arrived."""

    message_id: MessageId
    reason: FailReason


SenderEvent: TypeAlias = Acknowledged | Failed


@dataclass(frozen=True, slots=True)
class Delivered:
    """A message for the inbox: reliable ones in order per (sender, class), each exactly once."""

    peer: PeerId
    message_id: MessageId
    payload: bytes
