"""Two (or more) nodes' coordinators in one process, each over its own real UDP and TCP-TLS
transports on loopback (development trust: any peer id, bound to its key)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

from node.config import Config, CoordinatorSection, NodeSection, TcpTlsSection, TransportSection
from node.proto.identity import Identity
from node.proto.vocabulary import TransportKind
from node.security import keystore
from node.services.coordinator import CoordinatorService, NodeApi
from node.services.tcp_tls import TcpTlsService
from node.services.udp import UdpService

BASE = Config(
    node=NodeSection(listen_address="127.0.0.1", udp_port=0, software="test"),
    tcp_tls=TcpTlsSection(port=0),
    # Fast failure detection for the tests that wait for it; the rest never reach these.
    transport=TransportSection(connect_timeout_s=10.0),
)


@dataclass
class LocalNode:
    identity: Identity
    udp: UdpService
    tls: TcpTlsService
    coordinator: CoordinatorService
    api: NodeApi

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    @property
    def udp_uri(self) -> str:
        return f"udp://{self.udp.local}"

    @property
    def tls_uri(self) -> str:
        local = self.tls.transport.local
        assert local is not None
        return f"tls://{local}"

    def active_kind(self, peer: str) -> TransportKind | None:
        for view in self.api.peers():
            if view.peer == peer and view.active is not None:
                return view.active.kind
        return None


def config(
    transport: TransportSection | None = None,
    coordinator: CoordinatorSection | None = None,
    **sections: object,
) -> Config:
    out = BASE
    if transport is not None:
        out = replace(out, transport=transport)
    if coordinator is not None:
        out = replace(out, coordinator=coordinator)
    return replace(out, **sections)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def local_node(tmp_path: Path, name: str, cfg: Config = BASE) -> AsyncIterator[LocalNode]:
    identity, _ = keystore.load_or_create(tmp_path / name)
    udp = UdpService(cfg, identity)
    tls = TcpTlsService(cfg, identity, tmp_path / name / keystore.KEY_FILE_NAME)
    coordinator = CoordinatorService(cfg, identity.peer_id, udp, tls)
    async with udp, tls, coordinator:
        yield LocalNode(identity, udp, tls, coordinator, NodeApi(coordinator))
