"""The UDP transport: secure sessions to peers on the node's one UDP socket, behind ``Transport``.

One socket (the node's port) and one demultiplexer (node.transports.udp.demux): STUN requests go to
the Binding responder as they always did, STUN responses to the node's own STUN client
transactions multiplexed on this port (``DatagramPort``: registered by transaction id, as NAT
discovery's are; else ``on_stun_response``; else the responder counts them as ignored),
secure-session messages to one ``SessionTable`` (node.proto.session.table: sessions by receiver
index, roaming, keepalive and consent), hole-punching checks to the punch whose token they carry
(``expect_punch``: node.transports.punch runs the punch), anything else is counted and dropped. Each
datagram is handled behind the ``ConnectionIsolation`` wall, so a bug one datagram trips is logged,
counted and forgotten.

Adopted sockets: the birthday technique wins on one of 256 extra sockets, whose NAT mapping is the
only one the peer can reach. ``adopt(sock, remote)`` takes that socket over: what it reads goes
through the same demultiplexer (with its index as ``via``), and every datagram the sessions send to
``remote`` leaves through it (routed by destination address in ``_transmit``). It is closed when the
session at ``remote`` ends or moves (the path's ``on_address`` hook), or with the transport.

The sessions run in a ``SessionPath`` (node.transports.session_path, shared with TURN), in aioquic's
driver shape: feed the core, hand its events on, write what it wants sent, re-arm one timer:
- ``connect(peer, endpoint)`` dials and returns once the peer proved ``peer``'s identity; another id
  is refused with TransportPeerError(PEER_MISMATCH).
- ``send`` splits a frame into fragments that fit a 1200-byte datagram (UDP_PLAINTEXT) and seals
  each; one ``Reassembler`` keyed by the proven peer id puts them together on the other side.
  Nothing is retransmitted: capabilities say unreliable and unordered (the coordinator acks).
- ``health()``: RTT is the median of the recent samples, each either a dial's handshake (INIT to
  CONFIRM sent: one round trip plus both sides' key agreement) or a probe round trip
  (node.proto.datagram.probe: a PING sealed like data, answered by a PONG) sent to every peer each
  ``health_check_interval``; loss is the fraction of those probes unanswered within
  ``probe_timeout``.
- New handshakes pass the cookie gate (node.transports.udp.admission) before any key agreement.

Datagrams go out through asyncio's datagram transport, which buffers what the kernel refuses and
pauses us above its high-water mark: ``send`` then waits (``pause_writing``) instead of dropping.
Received messages the consumer has no room for (``event_queue``) are dropped and counted: UDP has
no backpressure to give.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeAlias, cast

from node.errors import LocalError
from node.os_errors import os_reason
from node.proto.datagram.errors import FragmentDrop
from node.proto.datagram.fragments import UDP_PLAINTEXT
from node.proto.datagram.reassembly import ReassemblyLimits
from node.proto.identity import Identity
from node.proto.session.cookie import CookieChecker, CookieConfig, CookieCount
from node.proto.session.table_types import DEFAULT_TABLE_CONFIG, GoneReason, TableConfig, TableCount
from node.proto.session.trust import PeerVerifier
from node.proto.stun.responder import BindingResponder, Outcome
from node.proto.vocabulary import (
    Capabilities,
    Endpoint,
    Frame,
    IpEndpoint,
    PeerId,
    TransportHealth,
    TransportKind,
    TransportReason,
    TransportState,
)
from node.transports.base import Transport, TransportPeerError, TransportUsageError
from node.transports.isolation import ConnectionIsolation
from node.transports.port import PunchDelivery, StunDelivery
from node.transports.route import IPAddress, source_address
from node.transports.session_path import OverSessionPath, PathSettings, SessionPath
from node.transports.udp.admission import CookieGate
from node.transports.udp.demux import SESSION_WORDS, Kind, classify
from node.transports.udp_batch import BatchWriter

log = logging.getLogger(__name__)

# A 1 MiB message is about 900 datagrams that arrive in one burst, faster than one Python thread
# drains them: the socket buffers should hold a few such bursts. The kernel caps what we ask at
# net.core.rmem_max / wmem_max (212992 bytes by default; raise them on a busy node).
SOCKET_BUFFER = 4 << 20
MAX_ADOPTED = 32  # extra sockets taken over from punches (each one peer's session)
ADOPTED_READS = 32  # datagrams read from one adopted socket per readiness (as libuv does)
RECEIVE_SIZE = 65535
_TOKEN = slice(6, 22)  # a punch check's token (node.proto.punch.wire: magic, kind, side, token)

Addr: TypeAlias = tuple[Any, ...]  # as asyncio gives it: (host, port), or IPv6's 4-tuple
StunResponseHook: TypeAlias = Callable[[bytes, Addr], None]


class BindError(LocalError):
    """The UDP port could not be bound (in use, no such address, not permitted)."""

    def __init__(self, address: str, port: int, reason: str) -> None:
        super().__init__(f"cannot bind UDP {address} port {port}: {reason}")
        self.address = address
        self.port = port


@dataclass(frozen=True, slots=True)
class UdpSettings:
    max_message: int = 1 << 20  # transport.max_message_bytes
    handshakes_per_second: float = 100.0  # udp.handshakes_per_second: above it, cookies
    connect_timeout: float = 30.0
    health_check_interval: float = 10.0
    probe_timeout: float = 5.0  # a probe unanswered this long counts as lost
    performance_samples: int = 100
    event_queue: int = 4096  # received messages held for the consumer, at most
    table: TableConfig = DEFAULT_TABLE_CONFIG  # max_sessions = transport.max_connections
    reassembly: ReassemblyLimits = field(default_factory=ReassemblyLimits)

    def path(self) -> PathSettings:
        return PathSettings(
            max_message=self.max_message,
            plaintext=UDP_PLAINTEXT,
            connect_timeout=self.connect_timeout,
            probe_timeout=self.probe_timeout,
            health_check_interval=self.health_check_interval,
            performance_samples=self.performance_samples,
            event_queue=self.event_queue,
            table=self.table,
            reassembly=self.reassembly,
        )


@dataclass(frozen=True, slots=True)
class UdpMetrics:
    """What ``status`` shows of the port beyond TransportHealth."""

    sessions: int  # live sessions: dialling, answering, established
    peers: int
    handshakes: int  # first handshakes completed (either side)
    cookies_sent: int
    malformed: int  # neither STUN nor a readable session message
    reassembly_drops: int  # fragments or reassemblies dropped (every FragmentDrop)
    events_dropped: int  # messages dropped because the consumer fell behind
    stun_responses: int  # STUN responses handed to on_stun_response (our own client transactions)
    session_datagrams: int  # datagrams that went to the session table (not STUN)
    table: dict[TableCount, int]
    punch_datagrams: int = 0  # hole-punching checks received (any socket)
    punch_unknown: int = 0  # of those, dropped: no punch of ours waits for their token
    adopted: int = 0  # extra sockets taken over from punches, open now


@dataclass(slots=True)
class _Adopted:
    index: int  # ``via`` of what it reads
    sock: socket.socket
    key: tuple[Any, ...]  # the remote's (host, port) as this port's addresses spell it
    send_errors: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not an asyncio.DatagramTransport subclass, only shaped like one.
        self.owner._udp = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        # The loop reads every datagram waiting (libuv: up to 32 a readiness) before it runs what
        # call_soon queued: they are handled together, as one batch, after the read.
        owner = self.owner
        inbox = owner._inbox
        inbox.append((data, addr))
        if len(inbox) == 1:
            owner._loop_call_soon(owner._read_batch)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable from a peer that left) surface here; they are not fatal.
        log.debug("UDP error: %s", exc)

    def pause_writing(self) -> None:
        self.owner._pause()

    def resume_writing(self) -> None:
        self.owner._resume()


class UdpTransport(OverSessionPath[Addr], Transport):
    kind = TransportKind.UDP

    def __init__(
        self,
        identity: Identity,
        verifier: PeerVerifier,
        settings: UdpSettings = UdpSettings(),
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        credential: bytes = b"",
        responder: BindingResponder | None = None,
        on_stun_response: StunResponseHook | None = None,
        wall: ConnectionIsolation | None = None,
    ) -> None:
        self.identity = identity
        self.settings = settings
        self.capabilities = Capabilities(settings.max_message, reliable=False, ordered=False)
        self.responder = responder if responder is not None else BindingResponder("bitcraps-node")
        self.on_stun_response = on_stun_response
        self.wall = wall if wall is not None else ConnectionIsolation("udp")
        self._listen = listen
        self.cookies = CookieChecker(
            CookieConfig(
                handshakes_per_second=settings.handshakes_per_second,
                burst=max(1.0, settings.handshakes_per_second),
            )
        )
        self._gate = CookieGate(self.cookies, self._half_open, max(1, settings.table.max_sessions // 2))
        self._path: SessionPath[Addr] = SessionPath(
            identity,
            verifier,
            settings.path(),
            self._transmit,
            _endpoint,
            name="UDP",
            credential=credential,
            admit_init=self._gate,
        )
        self._table = self._path.table
        # Each peer's session leaves from the source address the kernel picked for it; when the
        # link monitor reports that address gone, the session is closed as NETWORK_DOWN at once.
        self._path.on_address = self._address_moved
        self._sources: dict[PeerId, IPAddress | None] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None  # the same socket as _udp's, for batched writes
        self._writer: BatchWriter | None = None
        self._unwritten: tuple[list[bytes], Addr] | None = None  # the batch _writer is writing
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused: asyncio.Future[None] | None = None
        self._closing = False
        self.state = TransportState.STOPPED
        self._unknown = self._stun_responses = self._session_datagrams = 0
        self._inbox: list[tuple[bytes, Addr]] = []  # datagrams read, waiting for _read_batch
        self._loop_call_soon: Callable[[Callable[[], object]], object] = _not_started
        # The node's own STUN client transactions on this port (NAT discovery): id -> receiver.
        self._stun_clients: dict[bytes, StunDelivery] = {}
        self._punches: dict[bytes, PunchDelivery] = {}  # punch token -> its driver
        self._punch_datagrams = self._punch_unknown = 0
        self._adopted: dict[int, _Adopted] = {}
        self._adopted_by_addr: dict[tuple[Any, ...], _Adopted] = {}
        self._next_via = 1
        self._session_waiters: dict[PeerId, list[tuple[IpEndpoint | None, asyncio.Future[IpEndpoint]]]] = {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def local(self) -> IpEndpoint | None:
        if self._udp is None:
            return None
        host, port = self._udp.get_extra_info("sockname")[:2]
        return IpEndpoint(ipaddress.ip_address(host), int(port))

    async def __aenter__(self) -> Self:
        self.state = TransportState.STARTING
        loop = self._loop = asyncio.get_running_loop()
        self._loop_call_soon = loop.call_soon
        host, port = self._listen
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        try:
            await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(host, port), family=family
            )
        except OSError as exc:
            self.state = TransportState.FAILED
            raise BindError(host, port, os_reason(exc)) from exc
        assert self._udp is not None
        sock = self._udp.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # a smaller buffer only drops more under a burst
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        # The loop's transport writes one datagram per call; batches to one peer go out through
        # a duplicate of its socket in one sendmsg each (node.transports.udp_batch).
        self._sock = socket.socket(fileno=os.dup(sock.fileno()))
        self._sock.setblocking(False)
        self._writer = BatchWriter(self._sock, self._batch_failed)
        self._path.start(loop)
        self.state = TransportState.READY
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._path.begin_close()  # messages sent just before the close still go out
        self._closing = True
        try:
            self._path.close()
        finally:
            for adopted in list(self._adopted.values()):
                self._close_adopted(adopted)
            for waiters in self._session_waiters.values():
                for _, waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(
                            TransportUsageError(TransportReason.CLOSED, "the UDP transport closed")
                        )
            if self._udp is not None:
                self._udp.close()
                self._udp = None
            if self._sock is not None:
                self._sock.close()
                self._sock = self._writer = None
            self._resume()
            self.state = TransportState.STOPPED

    def _running(self) -> asyncio.DatagramTransport:
        if self._closing or self._udp is None:
            raise TransportUsageError(TransportReason.CLOSED, "the UDP transport is not running")
        return self._udp

    # -- the socket -------------------------------------------------------------------------

    def _read_batch(self) -> None:
        """The datagrams of one read: STUN handled one by one, the session ones fed to the path
        as one batch. Each datagram is handled behind the wall: one that trips a bug is contained
        and the rest of the batch goes on."""
        batch, self._inbox = self._inbox, []
        if self._closing:
            return
        sessions: list[tuple[bytes, Addr]] = []
        for data, addr in batch:
            try:
                if data[:4] in SESSION_WORDS:  # classify()'s first test, inline: the common case
                    sessions.append((data, addr))
                else:
                    self._datagram(data, addr)
            except Exception as exc:  # the wall: nothing one datagram does stops the others
                self.wall.contain(exc, f"datagram from {addr[0]}")
        if sessions:
            self._session_datagrams += len(sessions)
            self.wall.call(self._path.receive_batch, f"{len(sessions)} session datagrams", sessions)

    def _datagram(self, data: bytes, addr: Addr, via: int = 0) -> None:
        """One datagram that is not a session message (``_read_batch`` took those), read from
        the node's port (``via`` 0) or an adopted socket."""
        kind = classify(data)
        if kind is Kind.PUNCH:
            self._punch_datagrams += 1
            punch = self._punches.get(data[_TOKEN])
            if punch is None:
                # Never the responder's: a check is no STUN, and answering strangers' is not ours.
                self._punch_unknown += 1
                return
            punch(data, _endpoint(addr), via)
        elif kind is Kind.STUN_RESPONSE and (deliver := self._stun_clients.get(data[8:20])) is not None:
            self._stun_responses += 1
            deliver(data, _endpoint(addr))
        elif kind is Kind.STUN_RESPONSE and self.on_stun_response is not None:
            self._stun_responses += 1
            self.on_stun_response(data, addr)
        else:
            if kind is Kind.UNKNOWN:
                self._unknown += 1
            # The responder answers requests and counts the rest by what it is (``stun`` in status:
            # responses nobody waits for are ``ignored``, what is not STUN ``not_stun``).
            self._answer_stun(data, addr, via)

    # -- DatagramPort: STUN client transactions from this port (node.transports.port) ------------

    def send_datagram(self, data: bytes, destination: IpEndpoint, via: int = 0) -> None:
        """Send from the node's port (``via`` 0) or from adopted socket ``via``."""
        udp = self._running()
        if via == 0:
            udp.sendto(data, self._address(destination))
        else:
            adopted = self._adopted.get(via)
            if adopted is None:
                raise TransportUsageError(
                    TransportReason.NOT_CONNECTED, f"cannot send from adopted socket {via}: it is closed"
                )
            self._send_on(adopted, data, self._address(destination))
        self._path.bytes_sent += len(data)  # the port's bytes, STUN of its own included

    def expect_stun(self, transaction_id: bytes, deliver: StunDelivery) -> None:
        self._stun_clients[transaction_id] = deliver

    def forget_stun(self, transaction_id: bytes) -> None:
        self._stun_clients.pop(transaction_id, None)

    # -- hole punching (node.transports.punch) -------------------------------------------------

    def expect_punch(self, token: bytes, deliver: PunchDelivery) -> None:
        """Hand every punch check carrying ``token`` to ``deliver`` until ``forget_punch``."""
        self._punches[token] = deliver

    def forget_punch(self, token: bytes) -> None:
        self._punches.pop(token, None)

    def adopt(self, sock: socket.socket, remote: IpEndpoint) -> int:
        """Take over ``sock`` (a bound UDP socket) for the session with the peer at ``remote``;
        returns its ``via`` index. Raises TransportUsageError (CLOSED, TOO_MANY_CONNECTIONS,
        UNSUPPORTED_ENDPOINT); the caller keeps the socket then."""
        self._running()
        assert self._loop is not None
        if sock.type != socket.SOCK_DGRAM:
            raise TransportUsageError(
                TransportReason.UNSUPPORTED_ENDPOINT, f"cannot adopt a socket for {remote}: it is not UDP"
            )
        key = self._address(remote)[:2]
        if key in self._adopted_by_addr:
            raise TransportUsageError(
                TransportReason.TOO_MANY_CONNECTIONS,
                f"cannot adopt a socket for {remote}: one is adopted for that address already",
            )
        if len(self._adopted) >= MAX_ADOPTED:
            raise TransportUsageError(
                TransportReason.TOO_MANY_CONNECTIONS,
                f"cannot adopt a socket for {remote}: {MAX_ADOPTED} adopted sockets are open",
            )
        sock.setblocking(False)
        adopted = _Adopted(self._next_via, sock, key)
        self._loop.add_reader(sock.fileno(), self._read_adopted, adopted)
        self._next_via += 1
        self._adopted[adopted.index] = adopted
        self._adopted_by_addr[key] = adopted
        return adopted.index

    def release(self, remote: IpEndpoint) -> bool:
        """Close the socket adopted for ``remote`` (its handshake failed); False if there is none."""
        adopted = self._adopted_by_addr.get(self._address(remote)[:2])
        if adopted is None:
            return False
        self._close_adopted(adopted)
        return True

    def _close_adopted(self, adopted: _Adopted) -> None:
        self._adopted.pop(adopted.index, None)
        self._adopted_by_addr.pop(adopted.key, None)
        if self._loop is not None and adopted.sock.fileno() >= 0:
            self._loop.remove_reader(adopted.sock.fileno())
        adopted.sock.close()

    def _read_adopted(self, adopted: _Adopted) -> None:
        """What one readiness of an adopted socket holds, as ``_read_batch`` handles the port's."""
        sessions: list[tuple[bytes, Addr]] = []
        for _ in range(ADOPTED_READS):
            if self._closing or adopted.sock.fileno() < 0:
                return
            try:
                data, addr = adopted.sock.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error queued on the socket: not fatal, as on the port
                log.debug("UDP error on adopted socket %d: %s", adopted.index, exc)
                break
            try:
                if data[:4] in SESSION_WORDS:
                    sessions.append((data, addr))
                else:
                    self._datagram(data, addr, adopted.index)
            except Exception as exc:  # the wall, as on the port
                self.wall.contain(exc, f"datagram from {addr[0]}")
        if sessions:
            self._session_datagrams += len(sessions)
            self.wall.call(self._path.receive_batch, f"{len(sessions)} session datagrams", sessions)

    def _send_on(self, adopted: _Adopted, data: bytes, addr: Addr) -> None:
        try:
            adopted.sock.sendto(data, addr)
        except OSError as exc:  # full buffer or a queued ICMP error: a lost datagram, as UDP may
            adopted.send_errors += 1
            log.debug("UDP send on adopted socket %d failed: %s", adopted.index, os_reason(exc))

    def _transmit_adopted(self, out: list[tuple[bytes, Addr]]) -> list[tuple[bytes, Addr]]:
        """Send what goes to an adopted socket's remote through it; returns the rest."""
        by_addr = self._adopted_by_addr
        rest: list[tuple[bytes, Addr]] = []
        for data, addr in out:
            adopted = by_addr.get(addr[:2])
            if adopted is None:
                rest.append((data, addr))
            else:
                self._send_on(adopted, data, addr)
        return rest

    def _answer_stun(self, data: bytes, addr: Addr, via: int = 0) -> None:
        ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a v4 peer on a dual-stack socket: report the address it knows
        outcome, response = self.responder.handle(data, (ip, int(addr[1])))
        adopted = self._adopted.get(via)
        if response is not None and adopted is not None:
            self._send_on(adopted, response, addr)
        elif response is not None and self._udp is not None:
            self._udp.sendto(response, addr)
        elif outcome is Outcome.MALFORMED:
            log.debug("dropped malformed STUN datagram from %s", addr[0])

    def _transmit(self, out: list[tuple[bytes, Addr]]) -> None:
        """Write ``out``: runs to one address in one batched write each, the rest (and all of it
        while the loop's transport still holds unwritten datagrams: they go first) through it."""
        udp = self._udp
        if udp is None:
            return
        if self._adopted_by_addr:
            out = self._transmit_adopted(out)
        writer = self._writer
        count = len(out)
        if count == 0:
            return
        if writer is None or count == 1 or cast(asyncio.WriteTransport, udp).get_write_buffer_size():
            sendto = udp.sendto
            for data, addr in out:
                sendto(data, addr)
            return
        i = 0
        while i < count:
            addr = out[i][1]
            j = i + 1
            while j < count and out[j][1] == addr:
                j += 1
            if j - i == 1:
                udp.sendto(out[i][0], addr)
            else:
                batch = [data for data, _ in out[i:j]]
                self._unwritten = (batch, addr)
                writer.write(batch, addr)
                self._unwritten = None
            i = j

    def _batch_failed(self, exc: OSError, count: int) -> None:
        """A batched write stopped ``count`` datagrams short (the send buffer is full, or an ICMP
        error was queued): those go through the loop's transport, which buffers them and pauses
        ``send`` when full, or reports the error as it does for any datagram."""
        assert self._unwritten is not None and self._udp is not None
        batch, addr = self._unwritten
        for data in batch[len(batch) - count :]:
            self._udp.sendto(data, addr)

    def _half_open(self) -> int:
        status = self._table.status()
        return status.sessions - status.peers

    # -- Transport ---------------------------------------------------------------------------

    async def connect(self, peer: PeerId, endpoint: Endpoint) -> None:
        self._running()
        if not isinstance(endpoint, IpEndpoint):
            raise TransportUsageError(
                TransportReason.UNSUPPORTED_ENDPOINT, f"{endpoint!r} is not an IP endpoint"
            )
        await self._path.connect(peer, self._address(endpoint), str(endpoint))

    def _address(self, endpoint: IpEndpoint) -> Addr:
        ip = endpoint.ip
        local = self.local
        if local is not None and local.ip.version == 6 and ip.version == 4:
            return (f"::ffff:{ip}", endpoint.port, 0, 0)  # a dual-stack socket reaches v4 so
        return (str(ip), endpoint.port)

    async def send(self, peer: PeerId, frame: Frame) -> None:
        self.check_size(frame)
        self._path.send(peer, frame)
        paused = self._paused
        if paused is not None:
            await asyncio.shield(paused)  # the socket's buffer is above its high-water mark

    def _pause(self) -> None:
        if self._paused is None and self._loop is not None:
            self._paused = self._loop.create_future()

    def _resume(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    # -- health -------------------------------------------------------------------------------

    def health(self) -> TransportHealth:
        sessions = self._table.status().sessions
        return self._path.health(self.kind, self.state, sessions, malformed=self._unknown)

    def metrics(self) -> UdpMetrics:
        status = self._table.status()
        drops = self._path.reassembler.stats().drops
        return UdpMetrics(
            sessions=status.sessions,
            peers=status.peers,
            handshakes=status.counts.get(TableCount.ESTABLISHED, 0),
            cookies_sent=self.cookies.counts[CookieCount.COOKIES_SENT],
            malformed=self._unknown + status.counts.get(TableCount.MALFORMED, 0),
            reassembly_drops=sum(n for reason, n in drops.items() if reason is not FragmentDrop.DUPLICATE),
            events_dropped=self._path.events_dropped,
            stun_responses=self._stun_responses,
            session_datagrams=self._session_datagrams,
            table=status.counts,
            punch_datagrams=self._punch_datagrams,
            punch_unknown=self._punch_unknown,
            adopted=len(self._adopted),
        )

    def peers(self) -> tuple[PeerId, ...]:
        return tuple(self._path.peers)

    # -- the link monitor -------------------------------------------------------------------------

    def _address_moved(self, peer: PeerId, old: Addr | None, new: Addr | None) -> None:
        if new is None:
            self._sources.pop(peer, None)
        else:
            self._sources[peer] = source_address(new)
            self._session_at(peer, _endpoint(new))
        # The session an adopted socket was taken for ended or moved away: the socket's work is done.
        if old is not None and (new is None or new[:2] != old[:2]):
            adopted = self._adopted_by_addr.get(old[:2])
            if adopted is not None:
                self._close_adopted(adopted)

    def _session_at(self, peer: PeerId, endpoint: IpEndpoint) -> None:
        for at, waiter in self._session_waiters.get(peer, ()):
            if (at is None or at == endpoint) and not waiter.done():
                waiter.set_result(endpoint)

    async def wait_session(self, peer: PeerId, at: IpEndpoint | None = None) -> IpEndpoint:
        """Wait (at most ``connect_timeout``) until ``peer`` has an authenticated session (at
        ``at``, when given: where the peer dials from), the moment ``PeerConnected`` is emitted;
        returns the session's endpoint. The events stay the consumer's."""
        self._running()
        current = self._path.peers.get(peer)
        if current is not None and (at is None or _endpoint(current) == at):
            return _endpoint(current)
        waiter: asyncio.Future[IpEndpoint] = asyncio.get_running_loop().create_future()
        entry = (at, waiter)
        self._session_waiters.setdefault(peer, []).append(entry)
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                return await waiter
        except TimeoutError:
            where = f" at {at}" if at is not None else ""
            raise TransportPeerError(
                TransportReason.CONNECT_TIMEOUT,
                f"{peer}{where} completed no handshake within {self.settings.connect_timeout:g} s",
            ) from None
        finally:
            waiters = self._session_waiters.get(peer, [])
            if entry in waiters:
                waiters.remove(entry)
            if not waiters:
                self._session_waiters.pop(peer, None)

    def source_of(self, peer: PeerId) -> IPAddress | None:
        """The local address ``peer``'s session leaves from (None: unknown or not connected)."""
        return self._sources.get(peer)

    def network_down(self, lost: Collection[IPAddress]) -> tuple[PeerId, ...]:
        """Close at once every session whose source address is in ``lost`` (the link monitor saw
        the address or its interface's carrier go), each reported as PeerDisconnected
        (NETWORK_DOWN) instead of after the 30 s consent timeout. Returns the peers closed."""
        closed = tuple(peer for peer, source in self._sources.items() if source in lost)
        for peer in closed:
            self._path.disconnect(peer, GoneReason.NETWORK_DOWN)
        return closed


def _not_started(_callback: Callable[[], object]) -> None:
    raise TransportUsageError(TransportReason.CLOSED, "the UDP transport is not running")


def _endpoint(addr: Addr) -> IpEndpoint:
    ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return IpEndpoint(ip, int(addr[1]))
