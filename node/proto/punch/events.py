"""What the punching core hands its driver: datagrams to send, outcomes, counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node.proto.natprobe.types import Endpoint
from node.proto.punch.errors import PunchDrop, PunchFailure


class Method(enum.Enum):
    """How the nominated path was found (``connect --json``'s ``method``)."""

    HOST = "host"
    SRFLX = "srflx"
    PRFLX = "prflx"
    PREDICTION = "prediction"
    BIRTHDAY = "birthday"


@dataclass(frozen=True, slots=True)
class Outgoing:
    socket: int  # index into the sockets the driver gave the agent
    destination: Endpoint
    data: bytes


@dataclass(frozen=True, slots=True)
class Nominated:
    """The first pair that answered: the direct path (``socket`` to ``remote``)."""

    socket: int
    remote: Endpoint
    method: Method
    at: float
    requests_sent: int
    payload: bytes  # the peer's payload from its answer, for the driver to authenticate


@dataclass(frozen=True, slots=True)
class PunchFailed:
    reason: PunchFailure
    at: float
    requests_sent: int


Event = Nominated | PunchFailed


@dataclass(frozen=True, slots=True)
class PunchStats:
    requests_sent: int
    answers_sent: int
    probes_sent: int  # requests to guessed ports (prediction window, birthday probes)
    learned: int  # peer-reflexive candidates learned
    drops: tuple[tuple[PunchDrop, int], ...]
