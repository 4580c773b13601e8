"""The shape every bluez component shares: ``async with`` owns an AsyncExitStack that ``_start``
fills as it acquires things (exports, subscriptions, a TaskGroup), closed in reverse on exit or
when the start itself fails part-way (STYLE.md: resources registered as they are acquired)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from dbus_fast import Message

from bluez.defs import BLUEZ_SERVICE, Interface
from bluez.objects import ObjectCache


class Component:
    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    async def _start(self, stack: AsyncExitStack) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()


async def disconnect_device(cache: ObjectCache, path: str) -> None:
    """Device1.Disconnect (device-api.txt); a failure raises its typed BluezCallError."""
    await cache.call(
        Message(destination=BLUEZ_SERVICE, path=path, interface=Interface.DEVICE.value, member="Disconnect"),
        f"Device1.Disconnect on {path}",
    )
