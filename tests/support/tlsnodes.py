"""Helpers for TCP-TLS tests: identities, a fleet CA, credentials and transports on loopback."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from node.proto import identity
from node.proto.breaker import BreakerFactory, CircuitBreaker
from node.proto.vocabulary import IpEndpoint, TransportEvent
from node.security import certs, keystore
from node.security.trust import TrustMode, TrustPolicy
from node.transports.tcp_tls.link import LinkSettings, TlsCredentials, TlsLink, make_credentials
from node.transports.tcp_tls.transport import TcpTlsSettings, TcpTlsTransport


@dataclass(frozen=True)
class NodeFiles:
    ident: identity.Identity
    key_file: Path
    cert_file: Path | None


def new_node(tmp: Path, name: str, ca: certs.FleetCa | None = None, **issue_kw: object) -> NodeFiles:
    state = tmp / name
    ident, _ = keystore.load_or_create(state)
    cert_file = None
    if ca is not None:
        cert_file = state / "node.crt"
        cert_file.write_bytes(certs.cert_pem(certs.issue(ca, ident.public_key, **issue_kw)))  # type: ignore[arg-type]
    return NodeFiles(ident, state / keystore.KEY_FILE_NAME, cert_file)


def expired_issue(ca: certs.FleetCa, node: identity.Identity) -> bytes:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    return certs.cert_pem(certs.issue(ca, node.public_key, days=2, now=past))


def fleet_creds(node: NodeFiles, ca: certs.FleetCa, pinned: frozenset[str] = frozenset()) -> TlsCredentials:
    policy = TrustPolicy(TrustMode.FLEET_CA, ca=ca.certificate, pinned=pinned)
    return make_credentials(node.ident, node.key_file, policy, node.cert_file)


def rogue_creds(node: NodeFiles, ca: certs.FleetCa) -> TlsCredentials:
    """A client that trusts our CA but presents whatever certificate it holds (foreign, expired,
    lying SAN): make_credentials would refuse to build these, a hostile peer does not ask it."""
    assert node.cert_file is not None
    policy = TrustPolicy(TrustMode.FLEET_CA, ca=ca.certificate)
    der = certs.load_certificate(node.cert_file).public_bytes(serialization.Encoding.DER)
    return TlsCredentials(
        node.ident,
        policy,
        policy.server_context(node.cert_file, node.key_file),
        policy.client_context(node.cert_file, node.key_file),
        der,
    )


def pinned_creds(node: NodeFiles, pinned: frozenset[str]) -> TlsCredentials:
    policy = TrustPolicy(TrustMode.PINNED, pinned=pinned) if pinned else TrustPolicy(TrustMode.DEVELOPMENT)
    return make_credentials(node.ident, node.key_file, policy, None)


def transport(
    creds: TlsCredentials,
    *,
    listen: bool = True,
    max_connections: int = 100,
    max_message: int = 1 << 20,
    health_check_interval: float = 10.0,
    connect_timeout: float = 10.0,
    port: int = 0,
    pool_size: int = 20,
    breaker: BreakerFactory = CircuitBreaker,
    handshake_timeout: float = 10.0,
    max_pending: int = 32,
    max_pending_per_address: int = 8,
) -> TcpTlsTransport:
    settings = TcpTlsSettings(
        LinkSettings(
            max_message=max_message, connect_timeout=connect_timeout, handshake_timeout=handshake_timeout
        ),
        max_connections=max_connections,
        max_pending=max_pending,
        max_pending_per_address=max_pending_per_address,
        pool_size=pool_size,
        health_check_interval=health_check_interval,
    )
    return TcpTlsTransport(creds, settings, breaker, ("127.0.0.1", port) if listen else None)


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (10 s at most) until ``condition()`` holds, e.g. the server counted a refusal it has
    already sent: the client can see the refusal before the server's task gets to count it."""
    async with asyncio.timeout(10.0):
        while not condition():  # noqa: ASYNC110 - polling a counter, nothing to wait on
            await asyncio.sleep(0.01)


async def next_event(t: TcpTlsTransport, kind: type) -> TransportEvent:
    """The next event of type ``kind`` on ``t`` (others are passed over), within 10 s."""
    async with asyncio.timeout(10):
        async for event in t.events():
            if isinstance(event, kind):
                return event
    raise AssertionError("events ended")


def endpoint_of(t: TcpTlsTransport) -> IpEndpoint:
    local = t.local
    assert local is not None
    return local


async def ping_once(link: TlsLink) -> float:
    """A round trip on a client link (its run loop delivers the PONG), then close it."""
    running = asyncio.ensure_future(link.run(lambda link, frames: None, lambda rtt: None))
    try:
        async with asyncio.timeout(20):
            return await link.ping()
    finally:
        link.close()
        await running
