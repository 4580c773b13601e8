"""Two punching cores over a ``VirtualNetwork`` in virtual time, behind ``VirtualNat``s of the
seven behaviours of the issue's matrix (the lab's ``NatBehaviour``, so both tiers name them alike).

Discovery is stood in for by sending from each side's main socket to two public server addresses
through its NAT, exactly the mappings a STUN probe makes; the first is the server-reflexive
candidate, and the profile is what a correct classification of that NAT reports.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from netlink.lab.nat import NatBehaviour as Nat
from node.proto.natprobe.types import Behaviour, Endpoint, NatType, PortAllocation
from node.proto.punch.agent import PunchAgent, PunchSetup, PunchTiming
from node.proto.punch.candidates import Candidate, CandidateKind
from node.proto.punch.events import Event, Nominated
from node.proto.punch.plan import NatProfile, Plan, Role, Technique, choose
from node.proto.punch.wire import Side
from tests.fakes.vnat import Allocation, Filtering, Mapping, VirtualNat
from tests.fakes.vnet import VirtualNetwork

IP = ipaddress.IPv4Address
STUN = ((IP("203.0.113.10"), 3478), (IP("203.0.113.11"), 3479))
BASE_PORT = 50000
BIRTHDAY_SOCKETS = 256
TOKEN = bytes(range(16))
SEQ_DELTA = 4


EI, AD, APD = (
    Behaviour.ENDPOINT_INDEPENDENT,
    Behaviour.ADDRESS_DEPENDENT,
    Behaviour.ADDRESS_AND_PORT_DEPENDENT,
)
_FILTER = {
    EI: Filtering.ENDPOINT_INDEPENDENT,
    AD: Filtering.ADDRESS_DEPENDENT,
    APD: Filtering.ADDRESS_AND_PORT_DEPENDENT,
}
_MAP = {EI: Mapping.ENDPOINT_INDEPENDENT, APD: Mapping.ADDRESS_AND_PORT_DEPENDENT}

PROFILES = {
    Nat.OPEN: NatProfile(NatType.OPEN, EI, EI, PortAllocation.PRESERVING),
    Nat.FULL_CONE: NatProfile(NatType.FULL_CONE, EI, EI, PortAllocation.PRESERVING),
    Nat.RESTRICTED_CONE: NatProfile(NatType.RESTRICTED_CONE, EI, AD, PortAllocation.PRESERVING),
    Nat.PORT_RESTRICTED: NatProfile(NatType.PORT_RESTRICTED, EI, APD, PortAllocation.PRESERVING),
    Nat.SYMMETRIC: NatProfile(NatType.SYMMETRIC, APD, APD, PortAllocation.RANDOM),
    Nat.SYMMETRIC_SEQUENTIAL: NatProfile(NatType.SYMMETRIC, APD, APD, PortAllocation.SEQUENTIAL, SEQ_DELTA),
    Nat.UDP_BLOCKED: NatProfile(NatType.UDP_BLOCKED),
}


@dataclass
class Peer:
    nat_kind: Nat
    host: ipaddress.IPv4Address
    nat: VirtualNat | None
    candidates: tuple[Candidate, ...]
    agent: PunchAgent | None = None
    plan: Plan | None = None

    def endpoint(self, socket: int) -> Endpoint:
        return (self.host, BASE_PORT + socket)


def make_nat(kind: Nat, wan: ipaddress.IPv4Address, seed: int, timeout: float | None) -> VirtualNat:
    profile = PROFILES[kind]
    if kind is Nat.UDP_BLOCKED:
        return VirtualNat(wan, udp_blocked=True, timeout=timeout)
    assert profile.mapping is not None and profile.filtering is not None
    allocation = {
        PortAllocation.PRESERVING: Allocation.PRESERVING,
        PortAllocation.RANDOM: Allocation.RANDOM,
        PortAllocation.SEQUENTIAL: Allocation.SEQUENTIAL,
    }[profile.port_allocation or PortAllocation.PRESERVING]
    return VirtualNat(
        wan,
        _MAP[profile.mapping],
        _FILTER[profile.filtering],
        allocation,
        SEQ_DELTA,
        seed=seed,
        timeout=timeout,
    )


def add_peer(net: VirtualNetwork, kind: Nat, index: int, seed: int, timeout: float | None = None) -> Peer:
    """Side ``index`` (1 or 2): behind its NAT on 198.18.<index>.0/24, or on the public segment."""
    if kind is Nat.OPEN:
        host = IP(f"203.0.113.{30 + index}")
        return Peer(kind, host, None, discover(None, host, net.now))
    host = IP(f"198.18.{index}.2")
    nat = make_nat(kind, IP(f"203.0.113.{20 + index}"), seed, timeout)
    net.add_nat(nat, f"198.18.{index}.0/24")
    return Peer(kind, host, nat, discover(nat, host, net.now))


def discover(nat: VirtualNat | None, host: ipaddress.IPv4Address, now: float) -> tuple[Candidate, ...]:
    local = (host, BASE_PORT)
    out = [Candidate.of(CandidateKind.HOST, local)]
    if nat is None:
        return tuple(out)
    mapped = [nat.outbound(local, server, now) for server in STUN]
    if mapped[0] is not None:
        out.append(Candidate.of(CandidateKind.SRFLX, mapped[0]))
    return tuple(out)


def start(
    a: Peer,
    b: Peer,
    *,
    fire_a: float,
    fire_b: float,
    seed: int,
    plans: tuple[Plan, Plan] | None = None,
    timing: PunchTiming | None = None,
) -> bool:
    """Give both peers an agent (False when the plan says relay, and none was made)."""
    plan_a, plan_b = plans or (
        choose(PROFILES[a.nat_kind], PROFILES[b.nat_kind]),
        choose(PROFILES[b.nat_kind], PROFILES[a.nat_kind]),
    )
    a.plan, b.plan = plan_a, plan_b
    if Technique.RELAY in (plan_a.technique, plan_b.technique):
        return False
    for peer, other, plan, side, fire, salt in (
        (a, b, plan_a, Side.A, fire_a, 1),
        (b, a, plan_b, Side.B, fire_b, 2),
    ):
        sockets = BIRTHDAY_SOCKETS if plan.technique is Technique.BIRTHDAY and plan.role is Role.TARGET else 1
        setup = PunchSetup(side, TOKEN, side.name.encode(), plan, other.candidates, sockets, fire)
        peer.agent = PunchAgent(setup, random.Random(seed * 10 + salt), timing)
    return True


def run(net: VirtualNetwork, a: Peer, b: Peer, until: float = 60.0) -> None:
    """Drive both agents until both have an outcome (or virtual ``until``)."""
    agents = [(p, p.agent) for p in (a, b) if p.agent is not None]
    sockets = {p.endpoint(i): (agent, i) for p, agent in agents for i in range(BIRTHDAY_SOCKETS)}
    while net.now < until:
        for p, agent in agents:
            for out in agent.datagrams_to_send(net.now):
                net.send(p.endpoint(out.socket), out.destination, out.data)
        if all(agent.finished for _, agent in agents) and net.next_delivery() is None:
            return
        due = [t for t in (*(agent.get_timer() for _, agent in agents), net.next_delivery()) if t is not None]
        if not due:
            return
        net.run_until(max(net.now, min(due)))
        for _, endpoint, datagram in net.take():
            target = sockets.get(endpoint)
            if target is not None:
                target[0].receive_datagram(target[1], datagram.data, datagram.src, net.now)
        for _, agent in agents:
            timer = agent.get_timer()
            if timer is not None and timer <= net.now:
                agent.handle_timer(net.now)


def outcome(peer: Peer) -> Event | None:
    return None if peer.agent is None else peer.agent.outcome


def path_works(net: VirtualNetwork, sender: Peer, receiver: Peer) -> bool:
    """A datagram from the sender's nominated socket to its nominated remote reaches the receiver
    on its nominated socket, from the address the receiver nominated."""
    got_s, got_r = outcome(sender), outcome(receiver)
    if not isinstance(got_s, Nominated) or not isinstance(got_r, Nominated):
        return False
    net.take()
    net.send(sender.endpoint(got_s.socket), got_s.remote, b"game")
    net.run_until(net.now + 1.0)
    return any(
        endpoint == receiver.endpoint(got_r.socket) and d.src == got_r.remote and d.data == b"game"
        for _, endpoint, d in net.take()
    )
