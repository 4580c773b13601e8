"""One TCP + TLS 1.3 connection around a ``StreamLink`` core: dial, accept, run.

The asyncio layer is thin: bytes from the stream go into the core, bytes the core wants sent go
to the stream, and a ``CoreTimer`` keeps one ``loop.call_at`` at the core's ``get_timer`` (a
keepalive PING, a dead peer's close). Identity is settled before
``dial``/``accept`` return: the TLS certificate (fleet CA chain checked by OpenSSL, the SAN bound
to the key by ``TrustPolicy``) and the client's in-band proof.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives import serialization

from node.os_errors import os_reason
from node.proto.identity import Identity
from node.proto.link.stream_link import (
    NONCE_SIZE,
    Accepted,
    CloseReason,
    DataReceived,
    Decision,
    HelloReceived,
    LinkClosed,
    LinkEvent,
    LinkTiming,
    PongReceived,
    ProofReceived,
    Role,
    StreamLink,
)
from node.proto.vocabulary import Frame, IpEndpoint, PeerId, TransportReason
from node.security.trust import TrustError, TrustMode, TrustPolicy, TrustReason, classify_tls_error
from node.transports.base import TransportPeerError
from node.transports.timer import CoreTimer

READ_SIZE = 256 * 1024
WRITE_HIGH_WATER = 1 << 20  # drain (wait for the socket) above this much unsent data
# How long an inbound connection waits for the peer's close_notify after sending its own. RFC
# 8446 §6.1: the side that closes need not wait for the answer at all; asyncio waits 30 s by
# default, and a stranger who never answers would keep our descriptor that long after its slot.
TLS_SHUTDOWN_S = 2.0

# A refused proof's reason on the wire (CloseReason) and back (TrustReason), one table.
_TRUST_ON_WIRE = {
    TrustReason.UNKNOWN_CA: CloseReason.UNKNOWN_CA,
    TrustReason.EXPIRED: CloseReason.EXPIRED,
    TrustReason.NOT_YET_VALID: CloseReason.NOT_YET_VALID,
    TrustReason.SAN_MISMATCH: CloseReason.SAN_MISMATCH,
    TrustReason.BAD_CERTIFICATE: CloseReason.BAD_CERTIFICATE,
    TrustReason.NO_CERTIFICATE: CloseReason.BAD_CERTIFICATE,
    TrustReason.KEY_MISMATCH: CloseReason.BAD_CERTIFICATE,
    TrustReason.BAD_PROOF: CloseReason.BAD_PROOF,
    TrustReason.NOT_PINNED: CloseReason.NOT_PINNED,
    TrustReason.PEER_MISMATCH: CloseReason.PEER_MISMATCH,
}
_TRUST_FROM_WIRE = {
    wire: trust
    for trust, wire in _TRUST_ON_WIRE.items()
    if trust not in (TrustReason.NO_CERTIFICATE, TrustReason.KEY_MISMATCH)
}
# A refusal received from the server, as the client's typed error.
_REFUSED_AS = {
    # The server is full, for everyone or for connections still proving an identity: retry later.
    CloseReason.TOO_MANY_CONNECTIONS: TransportReason.TOO_MANY_CONNECTIONS,
    CloseReason.TOO_MANY_PENDING: TransportReason.TOO_MANY_CONNECTIONS,
    CloseReason.TOO_MANY_PENDING_FROM_ADDRESS: TransportReason.TOO_MANY_CONNECTIONS,
    CloseReason.NOT_TRUSTED: TransportReason.AUTH_FAILED,
    CloseReason.TIMEOUT: TransportReason.CONNECT_TIMEOUT,
    **{wire: TransportReason.AUTH_FAILED for wire in _TRUST_FROM_WIRE},
}


class _ClosedByTimer(Exception):
    """Raised out of ``TlsLink.run``'s read when the core's timer closed the link (a dead peer):
    the peer, silent, would never end that read."""


class TlsPeerError(TransportPeerError):
    """A TCP-TLS connection failed; ``trust`` or ``close`` says exactly why when known."""

    def __init__(
        self,
        reason: TransportReason,
        detail: str,
        *,
        trust: TrustReason | None = None,
        close: CloseReason | None = None,
    ) -> None:
        self.trust = trust
        self.close = close
        super().__init__(reason, detail)


@dataclass(frozen=True, slots=True)
class TlsCredentials:
    """Everything a connection needs to prove itself and judge the peer."""

    identity: Identity
    policy: TrustPolicy
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    certificate_der: bytes  # the certificate we present (the in-band proof is bound to it)


@dataclass(frozen=True, slots=True)
class LinkSettings:
    max_message: int = 1 << 20
    connect_timeout: float = 30.0
    handshake_timeout: float = 10.0
    keepalive: float = 60.0

    def timing(self) -> LinkTiming:
        return LinkTiming(self.handshake_timeout, self.keepalive, 2 * self.keepalive)


def make_credentials(
    identity: Identity, key_file: Path, policy: TrustPolicy, cert_file: Path | None
) -> TlsCredentials:
    """TLS contexts for this node: its fleet certificate, or a self-signed one of its identity key.

    ssl loads certificates only from files: a self-signed one goes through a private temporary
    directory that is removed once loaded.
    """
    cert = policy.own_certificate(identity, cert_file)
    der = cert.public_bytes(serialization.Encoding.DER)
    if cert_file is not None and policy.mode is TrustMode.FLEET_CA:
        return TlsCredentials(
            identity,
            policy,
            policy.server_context(cert_file, key_file),
            policy.client_context(cert_file, key_file),
            der,
        )
    with tempfile.TemporaryDirectory(prefix="bitcraps-tls-") as tmp:
        path = Path(tmp) / "self-signed.crt"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return TlsCredentials(
            identity,
            policy,
            policy.server_context(path, key_file),
            policy.client_context(path, key_file),
            der,
        )


def _set_keepalive(writer: asyncio.StreamWriter, idle: float) -> None:
    """TCP keepalive below the application's PING, so dead NAT mappings are noticed too."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(idle)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(idle) // 4))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)


class TlsLink:
    """An authenticated connection. ``run`` pumps it until it closes; ``queue`` sends a frame."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        core: StreamLink,
        peer: PeerId,
        endpoint: IpEndpoint,
        *,
        outbound: bool,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.core = core
        self.peer = peer
        self.endpoint = endpoint
        self.outbound = outbound
        self.loop = asyncio.get_running_loop()
        self.last_active = self.established = self.loop.time()
        self.messages_sent = 0
        self.messages_received = 0
        self.closed_reason: CloseReason | None = None
        self.closed_by_peer = False
        # The address this end of the connection uses: when the link monitor reports it gone
        # (a pulled cable, a lost DHCP lease) the link is dead whatever TCP still believes.
        self.local_ip = _local_ip_of(writer)
        self.network_down = False
        self._pongs: dict[int, tuple[float, asyncio.Future[float]]] = {}
        self._flush_scheduled = False
        self._transport = writer.transport
        # The socket's unsent bytes were above WRITE_HIGH_WATER after the last write: a sender
        # checks again and drains. Kept by flush and drain, which are the only times it changes
        # upwards (a per-message check would cost a call per message).
        self._congested = False

    def flush(self) -> None:
        chunks = self.core.chunks_to_send()
        if chunks and not self.writer.is_closing():
            self.writer.writelines(chunks)
            self._congested = self._transport.get_write_buffer_size() > WRITE_HIGH_WATER

    def queue(self, message_id: int, priority: int, payload: bytes) -> bool:
        """Queue a DATA frame; True when the caller should ``await drain()`` first.

        Frames queued in one turn of the event loop go out in one TLS write (a write per frame
        costs a TLS record and a syscall each). Raises LinkUsageError when the link is closed."""
        core = self.core
        core.send_data(message_id, priority, payload)
        self.messages_sent += 1
        if core.pending_bytes > WRITE_HIGH_WATER:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)
        return self._congested

    async def drain(self) -> None:
        """Wait until the socket has taken what was written (TCP backpressure)."""
        await self.writer.drain()
        self._congested = self._transport.get_write_buffer_size() > WRITE_HIGH_WATER

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.last_active = self.loop.time()
        self.flush()

    async def ping(self) -> float:
        """One round trip, in seconds (the peer answers PING with PONG inside the TLS channel)."""
        if self.core.closed:
            raise TlsPeerError(
                TransportReason.CLOSED, f"the link to {self.peer} is closed", close=self.closed_reason
            )
        # perf_counter, not loop.time(): uvloop's clock ticks in milliseconds, loopback RTTs are less.
        token = self.core.send_ping(self.loop.time())
        future: asyncio.Future[float] = self.loop.create_future()
        self._pongs[token] = (time.perf_counter(), future)
        self.flush()
        try:
            return await future
        finally:
            self._pongs.pop(token, None)

    def close(self, reason: CloseReason = CloseReason.CLOSED) -> None:
        self.core.close(reason)
        self.flush()
        self.writer.close()

    def abort(self) -> None:
        """End the link now because its local address is gone: no CLOSE frame and no TLS
        close_notify (they could only sit in a socket buffer that no route drains), the socket
        is reset and ``run`` returns at once."""
        self.network_down = True
        self.core.close(CloseReason.CLOSED)
        self._transport.abort()
        self.reader.set_exception(_ClosedByTimer())

    async def run(
        self,
        on_data: Callable[[TlsLink, Sequence[Frame]], Awaitable[None] | None],
        on_rtt: Callable[[float], None],
    ) -> CloseReason:
        """Pump until the link closes; returns why. Never raises for anything the peer does.

        ``on_data`` takes the messages of each read at once; it returns an awaitable when the
        reads must pause until the consumer has caught up (backpressure), else None (no
        coroutine per read)."""
        core = self.core
        read = self.reader.read
        timer = CoreTimer(self.loop, core.get_timer, core.handle_timer, self._after_timer)
        rearm = timer.rearm
        try:
            while True:
                event = core.next_event()
                if event is not None:
                    if type(event) is DataReceived:
                        self.messages_received += len(event.frames)
                        pause = on_data(self, event.frames)
                        if pause is not None:
                            await pause
                    elif isinstance(event, LinkClosed):
                        self.closed_reason = event.reason
                        self.closed_by_peer = event.by_peer
                        self.flush()
                        return event.reason
                    elif isinstance(event, PongReceived):
                        pending = self._pongs.get(event.token)
                        if pending is None:
                            on_rtt(event.rtt)  # a keepalive PING of the core's, in loop time
                        elif not pending[1].done():
                            rtt = time.perf_counter() - pending[0]
                            on_rtt(rtt)
                            pending[1].set_result(rtt)
                    continue
                rearm()  # the deadline moves with every read: cheap when it only moved later
                try:
                    data = await read(READ_SIZE)
                except _ClosedByTimer:
                    continue  # the core's LinkClosed is queued
                if not data:
                    self.closed_reason, self.closed_by_peer = CloseReason.CLOSED, True
                    return CloseReason.CLOSED
                self.last_active = self.loop.time()
                core.receive_data(data, self.last_active)
                self.flush()
        except (OSError, ssl.SSLError, EOFError):
            self.closed_reason, self.closed_by_peer = CloseReason.CLOSED, True
            return CloseReason.CLOSED
        finally:
            timer.close()
            for _, future in self._pongs.values():
                if not future.done():
                    future.set_exception(
                        TlsPeerError(
                            TransportReason.CLOSED, "link closed before the pong", close=self.closed_reason
                        )
                    )
            self.writer.close()

    def _after_timer(self) -> None:
        """The core handled its timer: send what it queued (a PING, or a CLOSE) and, when it closed
        the link, wake ``run`` from its read. Not by closing the writer, which would wait for the
        peer's TLS close_notify first, nor by feed_eof, after which the peer's next bytes would
        trip StreamReader's assertion: the read raises ``_ClosedByTimer`` instead."""
        self.flush()
        if self.core.closed:
            self.reader.set_exception(_ClosedByTimer())


async def _next_handshake_event(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, core: StreamLink
) -> LinkEvent:
    """Read until the core has an event (handshake frames are tiny; the caller holds the timeout)."""
    loop = asyncio.get_running_loop()
    while (event := core.next_event()) is None:
        data = await reader.read(READ_SIZE)
        if not data:
            raise TlsPeerError(
                TransportReason.CONNECT_FAILED, "the peer closed the connection during the handshake"
            )
        core.receive_data(data, loop.time())
        out = core.data_to_send()
        if out:
            writer.write(out)
    return event


def _closed_error(event: LinkClosed) -> TlsPeerError:
    reason = _REFUSED_AS.get(event.reason, TransportReason.REFUSED)
    who = "the peer refused us" if event.by_peer else "handshake failed"
    return TlsPeerError(
        reason,
        f"{who}: {event.reason.name.lower()}",
        close=event.reason,
        trust=_TRUST_FROM_WIRE.get(event.reason),
    )


async def dial(
    endpoint: IpEndpoint,
    expected: PeerId | None,
    creds: TlsCredentials,
    settings: LinkSettings,
    *,
    source: str | None = None,
) -> TlsLink:
    """Connect (from the local address ``source``, else the kernel's choice), check the server's
    certificate, prove our identity. Raises TlsPeerError."""
    loop = asyncio.get_running_loop()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(settings.connect_timeout):
            try:
                reader, writer = await asyncio.open_connection(
                    str(endpoint.ip),
                    endpoint.port,
                    ssl=creds.client_context,
                    limit=READ_SIZE,
                    local_addr=None if source is None else (source, 0),
                )
            except ssl.SSLError as exc:
                reason = classify_tls_error(exc)
                raise TlsPeerError(TransportReason.AUTH_FAILED, f"TLS: {exc}", trust=reason) from exc
            except OSError as exc:
                raise TlsPeerError(
                    TransportReason.CONNECT_FAILED, f"{endpoint}: TCP or TLS: {os_reason(exc)}"
                ) from exc
            _set_keepalive(writer, settings.keepalive)
            tls = cast(ssl.SSLObject, writer.get_extra_info("ssl_object"))
            server_der = tls.getpeercert(binary_form=True)
            try:
                peer = creds.policy.check_certificate(server_der, expected)
            except TrustError as exc:
                kind = (
                    TransportReason.PEER_MISMATCH
                    if exc.reason is TrustReason.PEER_MISMATCH
                    else TransportReason.AUTH_FAILED
                )
                raise TlsPeerError(kind, exc.detail, trust=exc.reason) from exc
            assert server_der is not None
            core = StreamLink(Role.CLIENT, settings.max_message, loop.time(), settings.timing())
            try:
                event = await _next_handshake_event(reader, writer, core)
                if not isinstance(event, HelloReceived):
                    raise _closed_error(event) if isinstance(event, LinkClosed) else AssertionError(event)
                nonce = os.urandom(NONCE_SIZE)
                signature = creds.policy.make_proof(creds.identity, server_der, event.server_nonce, nonce)
                credential = creds.certificate_der if creds.policy.mode is TrustMode.FLEET_CA else b""
                core.send_proof(nonce, creds.identity.public_key, signature, credential)
                writer.write(core.data_to_send())
                event = await _next_handshake_event(reader, writer, core)
            except ssl.SSLError as exc:
                raise TlsPeerError(
                    TransportReason.AUTH_FAILED, f"TLS: {exc}", trust=classify_tls_error(exc)
                ) from exc
            except OSError as exc:
                raise TlsPeerError(
                    TransportReason.CONNECT_FAILED, f"{endpoint}: identity proof: {os_reason(exc)}"
                ) from exc
            if isinstance(event, LinkClosed):
                raise _closed_error(event)
            if not isinstance(event, Accepted):
                raise TlsPeerError(TransportReason.CONNECT_FAILED, f"unexpected {type(event).__name__}")
            return TlsLink(reader, writer, core, peer, endpoint, outbound=True)
    except TimeoutError as exc:
        if writer is not None:
            writer.close()
        raise TlsPeerError(
            TransportReason.CONNECT_TIMEOUT, f"{endpoint}: no connection within {settings.connect_timeout} s"
        ) from exc
    except BaseException:
        if writer is not None:
            writer.close()
        raise


def _local_ip_of(writer: asyncio.StreamWriter) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    sockname = writer.get_extra_info("sockname")
    if not isinstance(sockname, tuple) or not sockname:
        return None
    try:
        return ipaddress.ip_address(str(sockname[0]).split("%", 1)[0])
    except ValueError:
        return None


def _endpoint_of(sock: socket.socket) -> IpEndpoint:
    host, port = sock.getpeername()[:2]
    return IpEndpoint(ipaddress.ip_address(str(host).split("%", 1)[0]), int(port))


async def _tls_over(
    sock: socket.socket, context: ssl.SSLContext, handshake_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Run the TLS handshake (server side) on an accepted socket; the socket is the transport's
    from here on, closed by it on failure. Handshake errors reach the caller typed (ssl.SSLError),
    which asyncio.start_server never passes on."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol,
        sock,
        ssl=context,
        ssl_handshake_timeout=handshake_s,
        ssl_shutdown_timeout=TLS_SHUTDOWN_S,
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def refuse(
    sock: socket.socket, creds: TlsCredentials, settings: LinkSettings, reason: CloseReason
) -> None:
    """Tell a client why it is refused (inside TLS, so it sees a typed reason), then close; returns
    once the connection is gone (the caller's refusal budget covers its descriptor until then)."""
    loop = asyncio.get_running_loop()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(settings.handshake_timeout):
            _, writer = await _tls_over(sock, creds.server_context, settings.handshake_timeout)
            core = StreamLink(Role.SERVER, settings.max_message, loop.time(), settings.timing())
            core.refuse(reason)
            writer.write(core.data_to_send())
            await writer.drain()
            await _shut(writer)
    except (TimeoutError, OSError, ssl.SSLError):
        pass  # it is being refused anyway
    finally:
        _abort(writer)


async def accept(sock: socket.socket, creds: TlsCredentials, settings: LinkSettings) -> TlsLink:
    """TLS on an accepted socket, then the client's in-band proof. Raises TlsPeerError.

    (Not StreamWriter.start_tls: uvloop loses bytes that arrived before it, uvloop#707.)"""
    loop = asyncio.get_running_loop()
    try:
        endpoint = _endpoint_of(sock)
    except OSError as exc:  # the client is gone already
        sock.close()
        raise TlsPeerError(TransportReason.CONNECT_FAILED, f"accepted socket: {os_reason(exc)}") from exc
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(settings.handshake_timeout):
            try:
                reader, writer = await _tls_over(sock, creds.server_context, settings.handshake_timeout)
            except ssl.SSLError as exc:
                raise TlsPeerError(
                    TransportReason.AUTH_FAILED, f"{endpoint}: TLS: {exc}", trust=classify_tls_error(exc)
                ) from exc
            _set_keepalive(writer, settings.keepalive)
            core = StreamLink(Role.SERVER, settings.max_message, loop.time(), settings.timing())
            nonce = os.urandom(NONCE_SIZE)
            core.send_hello(nonce)
            writer.write(core.data_to_send())
            event = await _next_handshake_event(reader, writer, core)
            if isinstance(event, LinkClosed):
                writer.write(core.data_to_send())
                raise _closed_error(event)
            assert isinstance(event, ProofReceived), event  # the core allows nothing else here
            if core.closed:  # frames behind the PROOF broke the protocol: no proof to check
                await _flush_refusal(writer, core)
                raise _closed_error(_last_event(core))
            try:
                peer = creds.policy.check_proof(
                    public_key=event.public_key,
                    signature=event.signature,
                    own_cert_der=creds.certificate_der,
                    server_nonce=nonce,
                    client_nonce=event.client_nonce,
                    credential=event.credential,
                )
            except TrustError as exc:
                core.refuse(_TRUST_ON_WIRE.get(exc.reason, CloseReason.NOT_TRUSTED))
                await _flush_refusal(writer, core)
                raise TlsPeerError(TransportReason.AUTH_FAILED, exc.detail, trust=exc.reason) from exc
            if core.accept() is Decision.LINK_CLOSED:
                await _flush_refusal(writer, core)
                raise _closed_error(_last_event(core))
            writer.write(core.data_to_send())
            return TlsLink(reader, writer, core, peer, endpoint, outbound=False)
    except TimeoutError as exc:
        _abort(writer)  # a silent peer: nothing to tell it, nothing to wait for
        raise TlsPeerError(
            TransportReason.CONNECT_TIMEOUT, f"{endpoint}: handshake not done in time"
        ) from exc
    except TlsPeerError:
        await _shut(writer)
        raise
    except (OSError, ssl.SSLError) as exc:
        await _shut(writer)
        raise TlsPeerError(
            TransportReason.CONNECT_FAILED, f"{endpoint}: {os_reason(exc)}", trust=classify_tls_error(exc)
        ) from exc
    except BaseException:
        _abort(writer)
        raise


async def _flush_refusal(writer: asyncio.StreamWriter, core: StreamLink) -> None:
    """Send the REFUSE/CLOSE the core queued, so the client learns why before we close."""
    writer.write(core.data_to_send())
    await writer.drain()


def _last_event(core: StreamLink) -> LinkClosed:
    """The LinkClosed a closed core ends its events with."""
    last: LinkEvent | None = None
    while (event := core.next_event()) is not None:
        last = event
    assert isinstance(last, LinkClosed), last  # a closed core's last event, always
    return last


async def _shut(writer: asyncio.StreamWriter | None) -> None:
    """Close (sending close_notify) and return once the descriptor is gone, TLS_SHUTDOWN_S at most:
    a failed or refused connection keeps its slot until then, so its descriptor is counted."""
    if writer is None:
        return
    writer.close()
    try:
        async with asyncio.timeout(TLS_SHUTDOWN_S):
            await writer.wait_closed()
    except (TimeoutError, OSError):  # ssl.SSLError is an OSError: the peer broke off, gone too
        pass
    finally:
        writer.transport.abort()  # nothing left to do once closed; else the descriptor goes now


def _abort(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.transport.abort()
