"""Sans-IO NAT behaviour discovery (RFC 5780 over RFC 8489 Binding; RFC 4787 terms).

One ``NatProbe`` is one discovery across several STUN servers, all probed at once. It speaks
through numbered local sockets that the driver opens before it starts (``sockets_needed``):

- socket ``MAPPING_SOCKET`` sends the first Binding to every server's primary address and, for a
  server that offers a usable OTHER-ADDRESS (RFC 5780 §4.3) or, from a classic RFC 3489 server,
  CHANGED-ADDRESS, to its alternate IP, its alternate IP and port, and its alternate port: the
  mapping tests. Comparing what several plain servers
  saw from this one socket detects "mapping varies by destination" without RFC 5780.
- socket ``filter_socket(i)`` is fresh for server ``i``: it talks only to that server's primary
  address, then asks for answers from the alternate address and port and from the alternate port
  (CHANGE-REQUEST, §4.4). Mapping tests never share it, or a port-restricted NAT would let the
  "changed" answers in through a mapping the mapping tests opened, and read as full cone.
- socket ``hairpin_socket(n)`` (when asked) sends a Binding to the mapping socket's mapped
  address; hairpinning works if it arrives on the mapping socket (§4.5).

Negative tests (where silence is the answer) do not wait out STUN's 39.5 s: they wait
``silence_rtts`` times the largest round trip that server's answered tests took, within
[``silence_floor``, ``silence_max``], and resend twice inside that window against loss. The round
trip is measured from a request's first send to its answer (an upper bound, so never too short).

Every answer must come from where the test expects it and agree with its RESPONSE-ORIGIN;
otherwise it is counted (``Drop.WRONG_ORIGIN``) and not trusted. A server that answers a
CHANGE-REQUEST from the address it was sent to ignores the request: its filtering is unknown,
never "full cone".

When a server stays silent over UDP for ``tcp_after`` seconds, the driver is asked to send the
same Binding over TCP (``tcp_checks_to_start``); an answer there with silence over UDP means UDP
is blocked. The whole discovery ends by ``deadline`` seconds whatever happens.

Driver loop (aioquic's shape): feed ``receive_datagram``/``receive_tcp``/``tcp_failed``/
``handle_timer``, then send ``datagrams_to_send(now)``, start ``tcp_checks_to_start()``, re-arm
``get_timer()``, and take ``next_event()`` until it returns ``DiscoveryFinished``.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from node.errors import LocalError
from node.proto import stun
from node.proto.natprobe.classify import mapping_behaviour, nat_type, port_allocation
from node.proto.natprobe.types import (
    Behaviour,
    Drop,
    Endpoint,
    Flow,
    NatReport,
    ServerOutcome,
    ServerReport,
    Test,
)
from node.proto.stun.transaction import (
    Timing,
    TransactionManager,
    TransactionTimedOut,
)

MAPPING_SOCKET: Final = 0
NEGATIVE_SENDS: Final = 3  # a negative test's request goes out this many times in its window
POSITIVE_SENDS: Final = 5
POSITIVE_PATIENCE: Final = 4  # follow-up tests that should be answered wait this many windows
MIN_BINDING_SENDS_BEFORE_UDP_BLOCKED: Final = 3


def filter_socket(server_index: int) -> int:
    return 1 + server_index


def hairpin_socket(server_count: int) -> int:
    return 1 + server_count


def sockets_needed(server_count: int) -> int:
    return 2 + server_count


class ProbeError(LocalError):
    """The probe was driven wrongly (a bug in the driver, never the network's doing)."""


@dataclass(frozen=True, slots=True)
class ProbeTiming:
    """Discovery's clock: every value is seconds except ``silence_rtts``."""

    deadline: float = 5.0  # the whole discovery
    binding_timeout: float = 2.0  # a server's first Binding, while no round trip is known
    rto: float = 0.1  # the first Binding's first retransmission interval (doubling)
    silence_rtts: int = 4
    silence_floor: float = 0.25
    silence_max: float = 3.0
    tcp_after: float = 0.2  # UDP silence after which STUN over TCP is tried
    hairpin: bool = False

    def __post_init__(self) -> None:
        for name in ("deadline", "binding_timeout", "rto", "silence_floor", "silence_max", "tcp_after"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ProbeError(f"{name} must be a positive number, got {value!r}")
        if self.silence_rtts < 1 or self.silence_max < self.silence_floor:
            raise ProbeError("silence_rtts must be >= 1 and silence_max >= silence_floor")

    def silence(self, rtt: float) -> float:
        return min(max(self.silence_rtts * rtt, self.silence_floor), self.silence_max)


@dataclass(frozen=True, slots=True)
class ProbeServer:
    label: str  # as configured, for the report
    address: Endpoint | None  # None: the name did not resolve
    allowed: bool = True  # False: its circuit breaker is open, do not ask it


@dataclass(frozen=True, slots=True)
class Outgoing:
    socket: int
    destination: Endpoint
    data: bytes


@dataclass(frozen=True, slots=True)
class TcpCheck:
    server_index: int
    destination: Endpoint
    request: bytes


@dataclass(frozen=True, slots=True)
class DiscoveryFinished:
    report: NatReport


class Phase(enum.Enum):
    BINDING = "binding"  # the first Binding is out (and maybe the TCP check)
    BEHAVIOUR = "behaviour"  # RFC 5780 mapping and filtering tests are out
    TCP_WAIT = "tcp-wait"  # silent over UDP, the TCP check is still out
    DONE = "done"


class PhaseInput(enum.Enum):
    ANSWERED_5780 = "answered-5780"
    ANSWERED_PLAIN = "answered-plain"
    UDP_SILENT_TCP_PENDING = "udp-silent-tcp-pending"
    UDP_SILENT = "udp-silent"  # and the TCP check is settled (answered or failed)
    TCP_SETTLED = "tcp-settled"
    TESTS_DONE = "tests-done"
    DEADLINE = "deadline"
    SKIPPED = "skipped"  # unresolved, or its breaker is open: never asked


_P, _I = Phase, PhaseInput
# Every legal (phase, input) and where it leads, in one place.
TRANSITIONS: Final[dict[tuple[Phase, PhaseInput], Phase]] = {
    (_P.BINDING, _I.ANSWERED_5780): _P.BEHAVIOUR,
    (_P.BINDING, _I.ANSWERED_PLAIN): _P.DONE,
    (_P.BINDING, _I.UDP_SILENT_TCP_PENDING): _P.TCP_WAIT,
    (_P.BINDING, _I.UDP_SILENT): _P.DONE,
    (_P.BINDING, _I.TCP_SETTLED): _P.BINDING,
    (_P.BINDING, _I.DEADLINE): _P.DONE,
    (_P.BINDING, _I.SKIPPED): _P.DONE,
    (_P.BEHAVIOUR, _I.TESTS_DONE): _P.DONE,
    (_P.BEHAVIOUR, _I.TCP_SETTLED): _P.BEHAVIOUR,  # a late TCP answer changes nothing
    (_P.BEHAVIOUR, _I.DEADLINE): _P.DONE,
    (_P.TCP_WAIT, _I.TCP_SETTLED): _P.DONE,
    (_P.TCP_WAIT, _I.DEADLINE): _P.DONE,
    (_P.DONE, _I.TCP_SETTLED): _P.DONE,
}


class IllegalTransition(ProbeError):
    def __init__(self, phase: Phase, input_: PhaseInput) -> None:
        super().__init__(f"no transition from {phase.name} on {input_.name}")
        self.phase = phase
        self.input = input_


class Result(enum.Enum):
    ANSWERED = "answered"
    SILENT = "silent"  # timed out: for a negative test, that is the answer
    ERROR = "error"  # an error response (e.g. 420: CHANGE-REQUEST not supported)
    ABANDONED = "abandoned"  # cut by the deadline or made moot


class _Tcp(enum.Enum):
    NOT_STARTED = "not-started"
    PENDING = "pending"
    ANSWERED = "answered"
    FAILED = "failed"


@dataclass(slots=True)
class _Tx:
    server: int
    test: Test
    socket: int
    destination: Endpoint
    expected: Endpoint  # where the answer must come from
    started: float


@dataclass(slots=True)
class _Server:
    spec: ProbeServer
    phase: Phase
    started: float
    rtt: float | None = None  # the largest round trip of its answered tests
    primary: Endpoint | None = None
    other: Endpoint | None = None
    results: dict[Test, Result] = field(default_factory=dict)
    mapped: Endpoint | None = None  # the mapping socket's, towards the primary
    pending: set[bytes] = field(default_factory=set)
    binding_tid: bytes | None = None
    tcp: _Tcp = _Tcp.NOT_STARTED
    tcp_tid: bytes | None = None
    tcp_rtt: float | None = None
    tcp_started: float = 0.0
    udp_giveup: float | None = None  # set once TCP answered: UDP silence past this means blocked
    ignores_change: bool = False


_CHANGE_TESTS = (Test.FILTER_CHANGE_BOTH, Test.FILTER_CHANGE_PORT)


def _spread(window: float, sends: int) -> Timing:
    """``sends`` evenly spaced sends, failing at ``window``: 0, w/n, ... then fail at w."""
    step = window / sends
    return Timing(rto=step, rc=sends, rm=1, rto_cap=step)


def _doubling(total: float, rto: float) -> Timing:
    """RFC 8489's doubling schedule from ``rto``, sends only while inside ``total``, failing at
    ``total`` (rounded up to a whole RTO)."""
    rc = 1
    while rto * (2**rc - 1) < total * 0.9:
        rc += 1
    last = rto * (2 ** (rc - 1) - 1)
    return Timing(rto=rto, rc=rc, rm=max(1, math.ceil((total - last) / rto - 1e-9)))


class NatProbe:
    def __init__(
        self,
        servers: Sequence[ProbeServer],
        local: Sequence[Endpoint],
        now: float,
        timing: ProbeTiming | None = None,
    ) -> None:
        if len(local) != sockets_needed(len(servers)):
            raise ProbeError(f"{len(servers)} servers need {sockets_needed(len(servers))} sockets")
        self._timing = timing or ProbeTiming()
        self._local = tuple(local)
        self._t0 = now
        self._deadline = now + self._timing.deadline
        self._servers = [_Server(s, Phase.BINDING, now) for s in servers]
        self._tm: TransactionManager[tuple[int, Endpoint]] = TransactionManager()
        self._txs: dict[bytes, _Tx] = {}
        self._flows: dict[tuple[int, Endpoint], Flow] = {}  # insertion order: first send order
        self._tcp_out: list[TcpCheck] = []
        self._events: deque[DiscoveryFinished] = deque()
        self.drops: Counter[Drop] = Counter()
        self._hairpin_tid: bytes | None = None
        self._hairpin: bool | None = None
        self._finished = False
        for index, server in enumerate(self._servers):
            if server.spec.address is None or not server.spec.allowed:
                self._fire(server, PhaseInput.SKIPPED)
                continue
            server.primary = server.spec.address
            server.binding_tid = self._start(
                index, Test.BINDING, (MAPPING_SOCKET, server.primary), expected=server.primary, now=now,
                timing=_doubling(self._timing.binding_timeout, self._timing.rto),
            )  # fmt: skip
        self._settle(now)

    # -- plumbing -------------------------------------------------------------------------------
    def _fire(self, server: _Server, input_: PhaseInput) -> None:
        try:
            server.phase = TRANSITIONS[(server.phase, input_)]
        except KeyError:
            raise IllegalTransition(server.phase, input_) from None

    def _start(
        self,
        index: int,
        test: Test,
        route: tuple[int, Endpoint],
        *,
        expected: Endpoint,
        now: float,
        timing: Timing,
        attrs: tuple[stun.Attribute, ...] = (),
    ) -> bytes:
        sock, destination = route
        tid = stun.new_transaction_id()
        request = stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, tid, attrs))
        self._tm.start((sock, destination), tid, request, now, timing)
        self._txs[tid] = _Tx(index, test, sock, destination, expected, now)
        self._servers[index].pending.add(tid)
        return tid

    def _end(self, tid: bytes, result: Result, now: float) -> _Tx:
        tx = self._txs.pop(tid)
        self._tm.cancel(tid, now)  # no-op when the manager already finished it
        server = self._servers[tx.server]
        server.pending.discard(tid)
        if tx.test is not Test.HAIRPIN:
            server.results[tx.test] = result
        return tx

    # -- input ----------------------------------------------------------------------------------
    def receive_datagram(self, sock: int, data: bytes, src: Endpoint, now: float) -> None:
        if self._finished:
            return
        drop = self._receive(sock, data, src, now)
        if drop is not None:
            self.drops[drop] += 1
        self._settle(now)

    def _receive(self, sock: int, data: bytes, src: Endpoint, now: float) -> Drop | None:
        if not stun.is_stun(data):
            return Drop.NOT_STUN
        try:
            message = stun.decode(data)
        except stun.StunDecodeError:
            return Drop.MALFORMED
        tid = message.transaction_id
        if message.message_class is stun.MessageClass.REQUEST:
            if sock == MAPPING_SOCKET and tid == self._hairpin_tid and tid in self._txs:
                self._end(tid, Result.ANSWERED, now)
                self._hairpin = True
                return None
            return Drop.NOT_RESPONSE
        if message.message_class is stun.MessageClass.INDICATION:
            return Drop.NOT_RESPONSE
        tx = self._txs.get(tid)
        if tx is None or tx.socket != sock or tx.test is Test.HAIRPIN:
            return Drop.UNMATCHED
        server = self._servers[tx.server]
        if message.message_class is stun.MessageClass.ERROR:
            if src not in (tx.destination, tx.expected):
                return Drop.WRONG_ORIGIN
            self._end(tid, Result.ERROR, now)
            return None
        origin = message.find(stun.ResponseOrigin)
        if src != tx.expected or (origin is not None and (origin.ip, origin.port) != src):
            if tx.test in _CHANGE_TESTS and src == tx.destination:
                # RFC 5780 §4.4 needs the answer from the other address; this server answered
                # from the one asked. Its silence elsewhere would read as filtering: drop both.
                server.ignores_change = True
                for other in list(server.pending):
                    if self._txs[other].test in _CHANGE_TESTS:
                        self._end(other, Result.ABANDONED, now)
            return Drop.WRONG_ORIGIN
        attr = message.find(stun.XorMappedAddress) or message.find(stun.MappedAddress)
        if attr is None:
            return Drop.MALFORMED
        mapped = (attr.ip, attr.port)
        self._end(tid, Result.ANSWERED, now)
        rtt = now - tx.started
        server.rtt = rtt if server.rtt is None else max(server.rtt, rtt)
        key = (tx.socket, tx.destination)
        flow = self._flows.get(key)
        if flow is not None and flow.mapped is None:
            self._flows[key] = Flow(flow.socket, flow.local, flow.destination, mapped)
        self._answered(tx, message, mapped, now)
        return None

    def _answered(self, tx: _Tx, message: stun.Message, mapped: Endpoint, now: float) -> None:
        index, server = tx.server, self._servers[tx.server]
        silence = self._timing.silence(server.rtt or 0.0)
        if tx.test is Test.BINDING:
            server.mapped = mapped
            primary = tx.destination
            # RFC 5780 §7.4 renamed RFC 3489's CHANGED-ADDRESS (§11.2.3) to OTHER-ADDRESS; a
            # classic server sends only the old one, which means the same alternate address.
            other = message.find(stun.OtherAddress) or message.find(stun.ChangedAddress)
            if other is None or other.ip == primary[0] or other.port == primary[1]:
                # No usable alternate (RFC 5780 §4.1: both IP and port must differ).
                self._fire(server, PhaseInput.ANSWERED_PLAIN)
                return
            server.other = (other.ip, other.port)
            self._fire(server, PhaseInput.ANSWERED_5780)
            alt_ip, alt_port = server.other
            positive = _spread(POSITIVE_PATIENCE * silence, POSITIVE_SENDS)
            for test, destination in (
                (Test.MAP_ALT_IP, (alt_ip, primary[1])),
                (Test.MAP_ALT_BOTH, (alt_ip, alt_port)),
                (Test.MAP_ALT_PORT, (primary[0], alt_port)),
            ):
                route = (MAPPING_SOCKET, destination)
                self._start(index, test, route, expected=destination, now=now, timing=positive)
            route = (filter_socket(index), primary)
            self._start(index, Test.FILTER_BINDING, route, expected=primary, now=now, timing=positive)
            if self._timing.hairpin and self._hairpin_tid is None:
                hairpin = hairpin_socket(len(self._servers))
                self._hairpin_tid = self._start(
                    index, Test.HAIRPIN, (hairpin, mapped), expected=mapped, now=now,
                    timing=_spread(silence, NEGATIVE_SENDS),
                )  # fmt: skip
        elif tx.test is Test.FILTER_BINDING:
            assert server.primary is not None and server.other is not None
            primary, (alt_ip, alt_port) = server.primary, server.other
            negative = _spread(silence, NEGATIVE_SENDS)
            route = (tx.socket, primary)
            self._start(
                index, Test.FILTER_CHANGE_BOTH, route, expected=(alt_ip, alt_port), now=now,
                timing=negative, attrs=(stun.ChangeRequest(True, True),),
            )  # fmt: skip
            self._start(
                index, Test.FILTER_CHANGE_PORT, route, expected=(primary[0], alt_port), now=now,
                timing=negative, attrs=(stun.ChangeRequest(False, True),),
            )  # fmt: skip

    def receive_tcp(self, server_index: int, data: bytes, now: float) -> None:
        """One STUN message read from the TCP check's connection (framed by the driver)."""
        server = self._servers[server_index]
        if self._finished or server.tcp is not _Tcp.PENDING:
            return
        try:
            message = stun.decode(data)
        except stun.StunDecodeError:
            self.drops[Drop.MALFORMED] += 1
            self.tcp_failed(server_index, now)
            return
        if message.transaction_id != server.tcp_tid or message.message_class is not stun.MessageClass.SUCCESS:
            self.drops[Drop.UNMATCHED] += 1
            self.tcp_failed(server_index, now)
            return
        server.tcp = _Tcp.ANSWERED
        server.tcp_rtt = now - server.tcp_started
        # UDP is declared blocked once it has been silent a few TCP round trips past this
        # answer, and the first Binding has gone out a few times.
        server.udp_giveup = max(
            now + self._timing.silence(server.tcp_rtt),
            server.started + self._timing.rto * (2 ** (MIN_BINDING_SENDS_BEFORE_UDP_BLOCKED - 1)),
        )
        self._tcp_settled(server, now)

    def tcp_failed(self, server_index: int, now: float) -> None:
        """The TCP check could not connect, was closed, or sent something useless."""
        server = self._servers[server_index]
        if self._finished or server.tcp is not _Tcp.PENDING:
            return
        server.tcp = _Tcp.FAILED
        self._tcp_settled(server, now)

    def _tcp_settled(self, server: _Server, now: float) -> None:
        self._fire(server, PhaseInput.TCP_SETTLED)
        self._settle(now)

    # -- time -----------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        if self._finished:
            return None
        timers = [self._deadline]
        manager = self._tm.get_timer()
        if manager is not None:
            timers.append(manager)
        for server in self._servers:
            if server.phase is Phase.BINDING:
                if server.tcp is _Tcp.NOT_STARTED:
                    timers.append(server.started + self._timing.tcp_after)
                if server.udp_giveup is not None:
                    timers.append(server.udp_giveup)
        return min(timers)

    def handle_timer(self, now: float) -> None:
        if self._finished:
            return
        if now >= self._deadline:
            for tid in list(self._txs):
                self._end(tid, Result.ABANDONED, now)
            for server in self._servers:
                if server.phase is not Phase.DONE:
                    self._fire(server, PhaseInput.DEADLINE)
            self._settle(now)
            return
        self._tm.handle_timer(now)
        while (item := self._tm.next_event()) is not None:
            _, event = item
            # Answers end their transaction with _end (a cancel), so only timeouts come here.
            if isinstance(event, TransactionTimedOut) and event.transaction_id in self._txs:
                self._timed_out(event.transaction_id, now)
        for index, server in enumerate(self._servers):
            if server.phase is not Phase.BINDING:
                continue
            if server.tcp is _Tcp.NOT_STARTED and now >= server.started + self._timing.tcp_after:
                self._start_tcp(index, server, now)
            if server.udp_giveup is not None and now >= server.udp_giveup and server.binding_tid:
                if server.binding_tid in self._txs:
                    self._end(server.binding_tid, Result.SILENT, now)
                self._fire(server, PhaseInput.UDP_SILENT)
        self._settle(now)

    def _timed_out(self, tid: bytes, now: float) -> None:
        tx = self._end(tid, Result.SILENT, now)
        server = self._servers[tx.server]
        if tx.test is Test.HAIRPIN:
            self._hairpin = False
        elif tx.test is Test.BINDING and server.phase is Phase.BINDING:
            if server.tcp is _Tcp.NOT_STARTED:
                self._start_tcp(tx.server, server, now)
            pending = server.tcp is _Tcp.PENDING
            self._fire(server, PhaseInput.UDP_SILENT_TCP_PENDING if pending else PhaseInput.UDP_SILENT)

    def _start_tcp(self, index: int, server: _Server, now: float) -> None:
        assert server.primary is not None
        tid = stun.new_transaction_id()
        request = stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, tid))
        server.tcp, server.tcp_tid, server.tcp_started = _Tcp.PENDING, tid, now
        self._tcp_out.append(TcpCheck(index, server.primary, request))

    # -- output ---------------------------------------------------------------------------------
    def datagrams_to_send(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        for (sock, destination), data in self._tm.datagrams_to_send(now):
            key = (sock, destination)
            if key not in self._flows:  # the order new mappings are made in: port allocation
                self._flows[key] = Flow(sock, self._local[sock], destination, None)
            out.append(Outgoing(sock, destination, data))
        return out

    def tcp_checks_to_start(self) -> list[TcpCheck]:
        out, self._tcp_out = self._tcp_out, []
        return out

    def next_event(self) -> DiscoveryFinished | None:
        return self._events.popleft() if self._events else None

    @property
    def finished(self) -> bool:
        return self._finished

    def _settle(self, now: float) -> None:
        for server in self._servers:
            if server.phase is Phase.BEHAVIOUR and not server.pending:
                self._fire(server, PhaseInput.TESTS_DONE)
        hairpin_open = self._hairpin_tid is not None and self._hairpin_tid in self._txs
        if self._finished or hairpin_open or any(s.phase is not Phase.DONE for s in self._servers):
            return
        self._finished = True
        self._txs.clear()
        self._events.append(DiscoveryFinished(self._report(now)))

    # -- the verdict ----------------------------------------------------------------------------
    def _server_report(self, index: int, server: _Server) -> ServerReport:
        spec = server.spec
        mine = [
            (f.destination, f.mapped)
            for f in self._flows.values()
            if f.socket == MAPPING_SOCKET and f.mapped is not None and self._belongs(index, f.destination)
        ]
        mapping, _, consistent = mapping_behaviour(mine)
        rfc5780 = server.other is not None
        filtering = self._filtering(server) if rfc5780 else None
        if spec.address is None:
            outcome = ServerOutcome.UNRESOLVED
        elif not spec.allowed:
            outcome = ServerOutcome.BREAKER_OPEN
        elif server.mapped is not None:
            outcome = ServerOutcome.IGNORES_CHANGE_REQUEST if server.ignores_change else ServerOutcome.OK
        elif server.tcp is _Tcp.ANSWERED:
            outcome = ServerOutcome.TCP_ONLY
        else:
            outcome = ServerOutcome.NO_ANSWER
        rtt = server.rtt if server.rtt is not None else server.tcp_rtt
        return ServerReport(
            spec.label, outcome, rfc5780, rtt, server.mapped, mapping, filtering, consistent, tuple(mine)
        )

    def _belongs(self, index: int, destination: Endpoint) -> bool:
        server = self._servers[index]
        if destination == server.primary:
            return True
        if server.primary is None or server.other is None:
            return False
        return destination[0] in (server.primary[0], server.other[0]) and destination[1] in (
            server.primary[1],
            server.other[1],
        )

    @staticmethod
    def _filtering(server: _Server) -> Behaviour | None:
        """RFC 5780 §4.4 from the two CHANGE-REQUEST tests (only ever on the fresh socket)."""
        if server.ignores_change:
            return None
        both = server.results.get(Test.FILTER_CHANGE_BOTH)
        port = server.results.get(Test.FILTER_CHANGE_PORT)
        if both is Result.ANSWERED:
            return Behaviour.ENDPOINT_INDEPENDENT
        if port is Result.ANSWERED:
            return Behaviour.ADDRESS_DEPENDENT
        if both is Result.SILENT and port is Result.SILENT:
            return Behaviour.ADDRESS_AND_PORT_DEPENDENT
        return None  # an error (420), cut by the deadline, or never reached

    def _report(self, now: float) -> NatReport:
        reports = tuple(self._server_report(i, s) for i, s in enumerate(self._servers))
        flows = tuple(self._flows.values())
        on_mapping_socket = [
            (f.destination, f.mapped) for f in flows if f.socket == MAPPING_SOCKET and f.mapped is not None
        ]
        mapping, varies, consistent = mapping_behaviour(on_mapping_socket)
        decided = [r.mapping for r in reports if r.rfc5780 and r.mapping is not None]
        if not consistent and decided:
            # The servers contradict each other; an RFC 5780 server's four destinations from
            # one socket are the better evidence. The flag below says it is contested.
            mapping, varies = decided[0], decided[0] is not Behaviour.ENDPOINT_INDEPENDENT
        translated = any(f.mapped is not None and f.mapped != f.local for f in flows)
        if not translated and on_mapping_socket:
            mapping, varies = Behaviour.ENDPOINT_INDEPENDENT, False  # nothing is translated
        udp = any(r.mapped is not None for r in reports)
        tcp = any(s.tcp is _Tcp.ANSWERED for s in self._servers)
        filterings = [r.filtering for r in reports if r.filtering is not None]
        filtering = filterings[0] if filterings else None
        mappings = [r.mapping for r in reports if r.mapping is not None]
        consistent = (
            consistent
            and all(r.consistent for r in reports)
            and len(set(filterings)) <= 1
            and len(set(mappings)) <= 1
            and (mapping is None or all(m == mapping for m in mappings))
        )
        allocation, delta = port_allocation(flows) if udp else (None, None)
        mapped_address = next((r.mapped for r in reports if r.mapped is not None), None)
        return NatReport(
            nat_type=nat_type(
                udp=udp, tcp=tcp, translated=translated, mapping=mapping, varies=varies, filtering=filtering
            ),
            mapping=mapping if udp else None,
            filtering=filtering if udp else None,
            port_allocation=allocation,
            port_delta=delta,
            mapped_address=mapped_address,
            consistent=consistent,
            servers=reports,
            elapsed=now - self._t0,
            hairpinning=self._hairpin,
            drops=tuple(sorted(self.drops.items(), key=lambda kv: kv[0].value)),
        )
