"""Which path each transport has to each peer: a transport keeps at most one connection (or
session) per peer, so (peer, kind) names the path, and its ``PathKey`` is what the coordinator
core knows it by. ``changed()`` wakes whoever waits for a path to come or go."""

from __future__ import annotations

import asyncio

from node.proto.coordinator import PathKey
from node.proto.vocabulary import PeerId, TransportKind


class PathBook:
    def __init__(self) -> None:
        self._keys: dict[tuple[PeerId, TransportKind], PathKey] = {}
        self._changed = asyncio.Event()

    def add(self, peer: PeerId, key: PathKey) -> PathKey | None:
        """Record ``key`` as ``peer``'s path of its kind; the one it replaces, if any."""
        old = self._keys.get((peer, key.kind))
        self._keys[(peer, key.kind)] = key
        self.poke()
        return old if old != key else None

    def remove(self, peer: PeerId, kind: TransportKind) -> PathKey | None:
        key = self._keys.pop((peer, kind), None)
        if key is not None:
            self.poke()
        return key

    def get(self, peer: PeerId, kind: TransportKind) -> PathKey | None:
        return self._keys.get((peer, kind))

    def holds(self, peer: PeerId, key: PathKey) -> bool:
        return self._keys.get((peer, key.kind)) == key

    async def changed(self) -> None:
        """Return at the next path added or removed (any peer)."""
        await self._changed.wait()

    def locals(self) -> set[tuple[TransportKind, str | None]]:
        """Every (kind, local address) a path leaves from: the transports whose load counts."""
        return {(key.kind, key.local) for key in self._keys.values()}

    def poke(self) -> None:
        """Wake every waiter of ``changed`` (a path came or went, or a dial ended)."""
        # Every waiter of this generation wakes; later waiters wait for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
