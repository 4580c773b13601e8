"""A virtual NAT for in-memory tests: RFC 4787 mapping x filtering, port allocation, hairpinning.

- Mapping (RFC 4787 §4.1): endpoint-independent (one external endpoint per internal endpoint),
  address-dependent (one per internal endpoint and remote IP), address-and-port-dependent (one per
  internal endpoint and remote endpoint).
- Filtering (RFC 4787 §5): which inbound sources a mapping lets through: anyone, addresses the
  mapping has sent to, or exact endpoints it has sent to.
- Port allocation: ``PRESERVING`` (the internal port when free, else the next free one),
  ``SEQUENTIAL`` (a counter stepping by ``delta``, shared by every mapping, as real NATs do), or
  ``RANDOM`` (seeded).
- ``timeout``: a mapping with no outbound packet for that many seconds is forgotten (RFC 4787 §4.3;
  Linux conntrack forgets an unreplied UDP flow after 30 s). ``None`` (the default): never.
- ``udp_blocked``: nothing leaves. ``hairpin``: a packet from inside to the NAT's own external
  endpoint is turned back in, with the sender's external endpoint as its source (RFC 4787 §6).

Pure data in, data out; the virtual network (``vnet``) calls ``outbound``/``inbound``.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from node.proto.stun.attrs import IPAddress

Endpoint = tuple[IPAddress, int]


class Mapping(enum.Enum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Filtering(enum.Enum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Allocation(enum.Enum):
    PRESERVING = "preserving"
    SEQUENTIAL = "sequential"
    RANDOM = "random"


@dataclass
class _Binding:
    external: Endpoint
    internal: Endpoint
    key: object  # its entry in ``_by_key``
    contacted: set[Endpoint] = field(default_factory=set)
    last_out: float = 0.0  # virtual time of the last outbound packet (RFC 4787 §4.3 refresh)


@dataclass
class VirtualNat:
    wan: IPAddress
    mapping: Mapping = Mapping.ENDPOINT_INDEPENDENT
    filtering: Filtering = Filtering.ADDRESS_AND_PORT_DEPENDENT
    allocation: Allocation = Allocation.PRESERVING
    delta: int = 1  # SEQUENTIAL: the step between new mappings
    first_port: int = 40000  # SEQUENTIAL: the first port handed out
    seed: int = 0  # RANDOM
    udp_blocked: bool = False
    hairpin: bool = False
    timeout: float | None = None  # seconds without outbound traffic before a mapping is forgotten
    _by_key: dict[object, _Binding] = field(default_factory=dict)
    _by_external: dict[Endpoint, _Binding] = field(default_factory=dict)
    _next_port: int | None = None
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)
        self._next_port = self.first_port

    @property
    def mappings(self) -> int:
        return len(self._by_key)

    def _key(self, internal: Endpoint, remote: Endpoint) -> object:
        if self.mapping is Mapping.ENDPOINT_INDEPENDENT:
            return internal
        if self.mapping is Mapping.ADDRESS_DEPENDENT:
            return (internal, remote[0])
        return (internal, remote)

    def _allocate(self, internal: Endpoint) -> int:
        if self.allocation is Allocation.PRESERVING:
            port = internal[1]
            while (self.wan, port) in self._by_external:
                port = port + 1 if port < 65535 else 1024
            return port
        if self.allocation is Allocation.SEQUENTIAL:
            assert self._next_port is not None
            port = self._next_port
            while (self.wan, port) in self._by_external:
                port += self.delta
            self._next_port = port + self.delta
            return port
        while True:
            port = self._rng.randrange(1024, 65536)
            if (self.wan, port) not in self._by_external:
                return port

    def _expired(self, binding: _Binding, now: float) -> bool:
        """Forget ``binding`` when it has been idle outbound for longer than ``timeout``."""
        if self.timeout is None or now - binding.last_out <= self.timeout:
            return False
        del self._by_key[binding.key]
        del self._by_external[binding.external]
        return True

    def outbound(self, internal: Endpoint, remote: Endpoint, now: float = 0.0) -> Endpoint | None:
        """The source a packet from ``internal`` to ``remote`` leaves with (None: dropped)."""
        if self.udp_blocked:
            return None
        key = self._key(internal, remote)
        binding = self._by_key.get(key)
        if binding is not None and self._expired(binding, now):
            binding = None
        if binding is None:
            binding = _Binding((self.wan, self._allocate(internal)), internal, key)
            self._by_key[key] = binding
            self._by_external[binding.external] = binding
        binding.contacted.add(remote)
        binding.last_out = now
        return binding.external

    def inbound(self, remote: Endpoint, external: Endpoint, now: float = 0.0) -> Endpoint | None:
        """The internal endpoint a packet from ``remote`` to ``external`` is delivered to."""
        binding = self._by_external.get(external)
        if binding is None:
            return None
        if self._expired(binding, now):
            return None
        if self.filtering is Filtering.ADDRESS_DEPENDENT:
            if not any(ip == remote[0] for ip, _ in binding.contacted):
                return None
        elif self.filtering is Filtering.ADDRESS_AND_PORT_DEPENDENT and remote not in binding.contacted:
            return None
        return binding.internal
