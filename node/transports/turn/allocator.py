"""A relay that stays up: one TURN allocation at a time, on the first configured server that
works, re-made by itself when it is lost, with every peer's permission and channel restored.

``async with RelayAllocation(servers, credentials) as relay:`` returns once an allocation exists
(or raises the last server's typed ``TurnError`` when none could be made). A keeper task in the
relay's own TaskGroup then holds the allocation; when it is lost (a refresh unanswered, the
stream closed, the server restarted and answering 437) it picks the next server from the
``ServerPool`` (configured order, a circuit breaker each, made by the ``breaker`` factory),
allocates again and re-opens the known peers. Its new relayed address goes to ``on_relay``: the
peers must learn it (signalling's job) before their traffic can follow. A server that fell
silent (its liveness probe unanswered: node.proto.turn.liveness) is skipped for the next
allocation, so the relay moves to another server at once instead of waiting out an Allocate's
39.5 s there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any, Self

from node.proto.breaker import BreakerFactory, CircuitBreaker
from node.proto.turn.credentials import Credentials
from node.proto.turn.errors import TurnError, TurnTryAlternate, TurnUnreachableError
from node.proto.turn.events import Address
from node.proto.turn.servers import ServerPool
from node.proto.turn.uri import TurnServerAddress
from node.transports.turn.connection import DataHandler, TurnConnection

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2  # after a failed attempt, wait this long, doubling, before the next one
RETRY_MAX_S = 5.0
RelayHandler = Callable[[Address | None], None]


@dataclass(slots=True)
class RelayCounters:
    allocations: int = 0  # successful allocations, the first included
    losses: int = 0
    failed_attempts: int = 0
    dropped_no_relay: int = 0  # sends while no allocation existed
    servers_used: list[str] = field(default_factory=list)


class RelayAllocation:
    def __init__(
        self,
        servers: Sequence[TurnServerAddress],
        credentials: Callable[[], Credentials],
        *,
        breaker: BreakerFactory = CircuitBreaker,
        on_data: DataHandler | None = None,
        on_relay: RelayHandler | None = None,
        **connection_options: Any,
    ) -> None:
        self.pool: ServerPool[TurnServerAddress] = ServerPool(servers, breaker)
        self._credentials = credentials
        self._on_data = on_data
        self._on_relay = on_relay
        self._options = connection_options
        self.counters = RelayCounters()
        self.connection: TurnConnection | None = None
        self._peers: set[Address] = set()
        self._stack = contextlib.AsyncExitStack()
        self._ready: asyncio.Future[None] | None = None
        self._stop: asyncio.Future[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.last_error: TurnError | None = None

    @property
    def relayed(self) -> Address | None:
        conn = self.connection
        return conn.relayed if conn is not None and conn.alive else None

    # -- lifecycle --------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._stop = loop.create_future()
        await self._stack.__aenter__()
        try:
            group = await self._stack.enter_async_context(asyncio.TaskGroup())
            self._stack.callback(self._request_stop)  # runs before the group waits
            self._keeper = group.create_task(self._keep())
            await asyncio.shield(self._ready)
        except TurnError:
            await self._stack.aclose()  # the keeper has ended; the error is ours to raise
            raise
        except BaseException as exc:
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def _request_stop(self) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    # -- use --------------------------------------------------------------------------------------
    def send(self, peer: Address, data: bytes) -> None:
        conn = self.connection
        if conn is None or not conn.alive:
            self.counters.dropped_no_relay += 1
            return
        conn.send(peer, data)

    def open_peer(self, peer: Address) -> None:
        """Let ``peer`` in now and after every re-allocation."""
        self._peers.add(peer)
        conn = self.connection
        if conn is not None and conn.alive:
            conn.open_peer(peer)

    def close_peer(self, peer: Address) -> None:
        self._peers.discard(peer)  # its permission lapses by itself (RFC 8656 §9)

    def network_down(self, lost: Collection[IPv4Address | IPv6Address]) -> bool:
        """Give up the allocation at once when its connection leaves from an address in ``lost``
        ; the keeper allocates again. True if it did."""
        conn = self.connection
        if conn is None or conn.local_ip not in lost:
            return False
        conn.network_lost()
        return True

    async def peer_ready(self, peer: Address) -> None:
        conn = self.connection
        if conn is None:
            raise TurnUnreachableError("no allocation")
        await conn.peer_ready(peer)

    # -- the keeper -------------------------------------------------------------------------------
    async def _keep(self) -> None:
        assert self._ready is not None and self._stop is not None
        loop = asyncio.get_running_loop()
        delay = RETRY_FIRST_S
        failed: set[TurnServerAddress] = set()  # this round's failures: try the others first
        while not self._stop.done():
            server = self.pool.pick(loop.time(), exclude=failed)
            if server is None:
                if not self._ready.done():  # every server failed once: __aenter__ raises
                    self._ready.set_exception(self.last_error or TurnUnreachableError("no server"))
                    return
                failed.clear()
                at = self.pool.next_retry(loop.time())
                await self._pause(max(at - loop.time(), delay) if at is not None else delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            conn = TurnConnection(server, self._credentials(), on_data=self._on_data, **self._options)
            try:
                async with conn:
                    self.pool.succeeded(server, loop.time())
                    failed.clear()
                    delay = RETRY_FIRST_S
                    lost = await self._hold(server, conn)
                    if isinstance(lost, TurnUnreachableError) and not conn.lost_locally:
                        failed.add(server)  # silent: the others first (a lost local address is not its fault)
            except TurnError as exc:
                self.pool.failed(server, loop.time())
                failed.add(server)
                self.counters.failed_attempts += 1
                self.last_error = exc
                log.info("TURN server %s failed: %s", server, exc)
                if isinstance(exc, TurnTryAlternate) and exc.alternate is not None:
                    ip, port = exc.alternate
                    self.pool.redirect(TurnServerAddress(str(ip), port, server.transport))
            finally:
                if self.connection is conn:
                    self.connection = None

    async def _hold(self, server: TurnServerAddress, conn: TurnConnection) -> TurnError | None:
        """Serve on ``conn`` until it is lost (its error) or the relay stops (None)."""
        assert self._ready is not None and self._stop is not None and conn.lost is not None
        self.connection = conn
        self.counters.allocations += 1
        self.counters.servers_used.append(str(server))
        for peer in self._peers:
            conn.open_peer(peer)
        if not self._ready.done():
            self._ready.set_result(None)
        if self._on_relay is not None:
            self._on_relay(conn.relayed)
        await asyncio.wait((conn.lost, self._stop), return_when=asyncio.FIRST_COMPLETED)
        if conn.lost.done() and not conn.lost.cancelled():
            self.counters.losses += 1
            self.last_error = conn.lost.result()
            self.connection = None
            if self._on_relay is not None:
                self._on_relay(None)
            return self.last_error
        return None

    async def _pause(self, seconds: float) -> None:
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._stop)
