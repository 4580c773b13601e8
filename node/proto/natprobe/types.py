"""What NAT behaviour discovery reports: RFC 4787 behaviours, the seed's NAT class, per-server
observations and the final report. Frozen data only; the probe is in ``natprobe.probe``, the decision
in ``natprobe.classify``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from node.proto.stun.attrs import IPAddress

Endpoint = tuple[IPAddress, int]


class Behaviour(enum.Enum):
    """RFC 4787 §4.1 mapping and §5 filtering share these three values."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class PortAllocation(enum.Enum):
    """How new mappings get their external port (RFC 4787 §4.2.2, §4.2.1)."""

    PRESERVING = "preserving"
    SEQUENTIAL = "sequential"
    RANDOM = "random"


class NatType(enum.Enum):
    """The design card's classes (the transport decision matrix's rows)."""

    OPEN = "open"
    FULL_CONE = "full-cone"
    RESTRICTED_CONE = "restricted-cone"
    PORT_RESTRICTED = "port-restricted"
    SYMMETRIC = "symmetric"
    UDP_BLOCKED = "udp-blocked"
    UNKNOWN = "unknown"


class ServerOutcome(enum.Enum):
    OK = "ok"  # answered over UDP
    TCP_ONLY = "tcp-only"  # silent over UDP, answered STUN over TCP
    NO_ANSWER = "no-answer"
    BREAKER_OPEN = "breaker-open"  # failed often enough lately that it was not asked
    UNRESOLVED = "unresolved"  # its name gave no IPv4 address
    IGNORES_CHANGE_REQUEST = "ignores-change-request"  # answered CHANGE-REQUEST from the wrong place


class Drop(enum.Enum):
    """Why a received datagram was not used (counted, never raised)."""

    NOT_STUN = "not-stun"
    MALFORMED = "malformed"  # truncated, bad FINGERPRINT, no mapped address in a success
    UNMATCHED = "unmatched"  # no transaction of ours (wrong or stale id, wrong socket)
    WRONG_ORIGIN = "wrong-origin"  # not from where the test expects, or RESPONSE-ORIGIN disagrees
    NOT_RESPONSE = "not-response"  # a request or indication that is not our hairpin probe


class Test(enum.Enum):
    """The probes (RFC 5780 §4.3 mapping, §4.4 filtering, §4.5 hairpinning)."""

    BINDING = "binding"  # mapping socket -> primary
    MAP_ALT_IP = "map-alt-ip"  # mapping socket -> alternate IP, primary port
    MAP_ALT_BOTH = "map-alt-both"  # mapping socket -> alternate IP and port
    MAP_ALT_PORT = "map-alt-port"  # mapping socket -> primary IP, alternate port
    FILTER_BINDING = "filter-binding"  # fresh socket -> primary
    FILTER_CHANGE_BOTH = "filter-change-both"  # CHANGE-REQUEST IP and port: answer from alternate
    FILTER_CHANGE_PORT = "filter-change-port"  # CHANGE-REQUEST port: answer from primary IP, alt port
    HAIRPIN = "hairpin"  # hairpin socket -> the mapping socket's mapped address


@dataclass(frozen=True, slots=True)
class ServerReport:
    """What one server told us."""

    server: str  # as configured ("host:port")
    outcome: ServerOutcome
    # It offered a usable OTHER-ADDRESS (or RFC 3489 CHANGED-ADDRESS) for the RFC 5780 tests.
    rfc5780: bool
    rtt: float | None  # seconds, the largest round trip seen (an upper bound, never Karn-filtered)
    mapped: Endpoint | None = None  # the mapping socket's mapped address towards its primary
    mapping: Behaviour | None = None
    filtering: Behaviour | None = None
    consistent: bool = True  # its own observations fit one class
    # The mapping socket's mapped address per destination, for cross-server comparison.
    mapped_by_destination: tuple[tuple[Endpoint, Endpoint], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "outcome": self.outcome.value,
            "rfc5780": self.rfc5780,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000.0, 3),
        }


@dataclass(frozen=True, slots=True)
class Flow:
    """One (socket, destination) pair in the order its first packet left, with the mapping the
    server saw: the order new mappings were made, for port-allocation analysis."""

    socket: int
    local: Endpoint
    destination: Endpoint
    mapped: Endpoint | None


@dataclass(frozen=True, slots=True)
class NatReport:
    nat_type: NatType
    mapping: Behaviour | None
    filtering: Behaviour | None
    port_allocation: PortAllocation | None
    port_delta: int | None
    mapped_address: Endpoint | None
    consistent: bool
    servers: tuple[ServerReport, ...]
    elapsed: float  # seconds
    hairpinning: bool | None = None  # None: not asked, or no mapping to aim at
    drops: tuple[tuple[Drop, int], ...] = field(default=())

    @property
    def answered(self) -> bool:
        """True when a classification was made (some server answered, over UDP or TCP)."""
        return any(s.outcome in ANSWERED_OUTCOMES for s in self.servers)

    def to_json(self) -> dict[str, Any]:
        """Exactly the keys and values of ``bitcraps-node nat --json``."""
        return {
            "nat_type": self.nat_type.value,
            "mapping": None if self.mapping is None else self.mapping.value,
            "filtering": None if self.filtering is None else self.filtering.value,
            "port_allocation": None if self.port_allocation is None else self.port_allocation.value,
            "port_delta": self.port_delta,
            "mapped_address": None if self.mapped_address is None else format_endpoint(self.mapped_address),
            "consistent": self.consistent,
            "servers": [s.to_json() for s in self.servers],
            "elapsed_ms": round(self.elapsed * 1000.0),
        }


# Outcomes of a server that answered (what a circuit breaker counts as a success).
ANSWERED_OUTCOMES = (ServerOutcome.OK, ServerOutcome.TCP_ONLY, ServerOutcome.IGNORES_CHANGE_REQUEST)


def format_endpoint(endpoint: Endpoint) -> str:
    ip, port = endpoint
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
