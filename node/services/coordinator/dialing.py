"""Dialling peers: a ``PeerUri``'s host resolved to one IP endpoint (bounded, on the node's
resolver pool), the backoff between attempts to reach a static peer, and the ``Dialer`` that
makes the attempts."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from node.config import Config
from node.errors import NodeError
from node.os_errors import os_reason
from node.proto.peer_uri import PeerUri
from node.proto.vocabulary import Endpoint, IpEndpoint, PeerId, TransportKind
from node.services.coordinator.carriers import Carrier
from node.services.coordinator.errors import ApiReason, PeerUnreachableError
from node.services.coordinator.paths import PathBook
from node.transports import resolver
from node.transports.base import BreakerOpenError

log = logging.getLogger(__name__)


async def endpoint_of(peer: PeerId, uri: PeerUri) -> IpEndpoint:
    """``uri``'s address (the first the resolver gives for a name). Run it under a timeout."""
    try:
        return IpEndpoint(ipaddress.ip_address(uri.host), uri.port)
    except ValueError:
        pass  # a name
    try:
        infos = await resolver.getaddrinfo(uri.host, uri.port, socktype=socket.SOCK_DGRAM)
    except OSError as exc:
        raise PeerUnreachableError(
            ApiReason.CONNECT_FAILED, f"{peer} at {uri}: cannot resolve {uri.host}: {os_reason(exc)}"
        ) from exc
    host = str(infos[0][4][0]).split("%", 1)[0]
    return IpEndpoint(ipaddress.ip_address(host), uri.port)


class Backoff:
    """Exponential waits from ``first`` up to ``ceiling``; ``reset`` after a success."""

    def __init__(self, first: float, ceiling: float) -> None:
        self._first = first
        self._ceiling = max(first, ceiling)
        self._next = first

    def next(self) -> float:
        wait = self._next
        self._next = min(self._next * 2, self._ceiling)
        return wait

    def reset(self) -> None:
        self._next = self._first

    def after(self, error: BaseException) -> float:
        """The wait after a failed dial: until the remote's breaker half-opens when the dial was
        refused on an open breaker (never less than ``first``: a half-open breaker whose one
        trial is under way says "now"), else the next exponential wait."""
        if isinstance(error, BreakerOpenError):
            return max(error.retry_in_s, self._first)
        return self.next()


class Dialer:
    """Dialling: ``connect``'s attempts, and each static peer (``[peers] static``) kept dialled in
    the background with backoff while its kind of path to it is missing. A ``udp://`` address
    is also dialled through the node's own TURN relay when it has one (a ``turn`` path beside
    the direct one)."""

    def __init__(
        self,
        config: Config,
        carriers: dict[TransportKind, Carrier],
        book: PathBook,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
    ) -> None:
        self.config = config
        self.carriers = carriers
        self.book = book
        self._spawn = spawn
        self.dialling: Counter[PeerId] = Counter()  # connect() calls under way, per peer

    async def attempt(self, peer: PeerId, uri: PeerUri, errors: list[str]) -> None:
        """One ``connect`` attempt: its error, if any, goes to ``errors``."""
        try:
            await self.dial(peer, uri)
        except NodeError as exc:
            errors.append(f"{uri}: {exc}")
        finally:
            self.book.poke()

    async def dial(self, peer: PeerId, uri: PeerUri) -> None:
        """One attempt to open a path to ``peer`` at ``uri``; raises a typed NodeError."""
        carrier = self.carriers.get(uri.kind)
        transport = None if carrier is None else carrier.current()
        if transport is None:
            raise PeerUnreachableError(
                ApiReason.CONNECT_FAILED, f"{uri}: the {uri.kind.value} transport is off"
            )
        async with asyncio.timeout(self.config.transport.connect_timeout_s):
            endpoint = await endpoint_of(peer, uri)
        turn = self.carriers.get(TransportKind.TURN)
        if uri.kind is TransportKind.UDP and turn is not None and turn.current() is not None:
            # The same address through our own relay: a `turn` path beside the direct one.
            self._spawn(self._dial_relayed(peer, turn, endpoint), f"relay-{uri}")
        try:
            await transport.connect(peer, endpoint)
        except TimeoutError:
            raise PeerUnreachableError(ApiReason.CONNECT_FAILED, f"{uri}: no answer") from None

    async def _dial_relayed(self, peer: PeerId, turn: Carrier, endpoint: Endpoint) -> None:
        transport = turn.current()
        if transport is None:
            return
        try:
            await transport.connect(peer, endpoint)
        except NodeError as exc:
            log.debug("coordinator: no relayed path to %s at %s: %s", peer, endpoint, exc)

    async def keep_dialled(self, peer: PeerId, uri: PeerUri) -> None:
        """A static peer: dialled whenever this kind of path to it is missing, with backoff."""
        t = self.config.transport
        backoff = Backoff(t.retry_backoff_s, self.config.breaker.recovery_timeout_s)
        failures = 0
        while True:
            if self.book.get(peer, uri.kind) is None:
                try:
                    await self.dial(peer, uri)
                except NodeError as exc:
                    failures += 1
                    level = logging.INFO if failures == 1 else logging.DEBUG
                    log.log(
                        level,
                        "coordinator: static peer %s at %s unreachable (%d tries): %s",
                        peer,
                        uri,
                        failures,
                        exc,
                    )
                    await asyncio.sleep(backoff.after(exc))
                    continue
                failures = 0
                backoff.reset()
            await self.book.changed()  # the path came (or will), or went: look again
