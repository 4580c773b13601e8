"""The one shape of a node service: built from the Config (plus what it needs: the identity, its
key file; the control socket, which nothing configures, from its path and commands), entered with
``async with``, shown in ``status`` by ``status()``.

``Service.__aenter__`` gives the subclass's ``_start`` a fresh AsyncExitStack; whatever it
acquires (a socket, a transport, a ``run_in_background`` task) goes on that stack as it is
acquired, so a start that fails half-way gives back what it took, and ``__aexit__`` closes it
all in reverse order (bleak's connect; STYLE.md). The daemon starts its services in a list, one
after the other, and stops them in reverse.

``status()`` is a frozen view taken at one instant; its ``to_json()`` is what ``status --json``
shows under the service's ``name``. A ``TransportService`` (one that carries peers' traffic)
also says its state (``transports`` in ``status``) and where it listens (``listen``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from node.proto.vocabulary import TransportState


class ServiceView(Protocol):
    """A service's status at one instant (a frozen dataclass)."""

    def to_json(self) -> dict[str, Any]: ...


V_co = TypeVar("V_co", bound=ServiceView, covariant=True)


class Service(ABC, Generic[V_co]):
    name: ClassVar[str]  # its key in status

    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    @abstractmethod
    async def _start(self, stack: AsyncExitStack) -> None:
        """Acquire what the service owns, each thing on ``stack`` as it is acquired."""

    @abstractmethod
    def status(self) -> V_co: ...

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await self._start(stack)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()


class TransportService(Service[V_co]):
    """A service that carries peers' traffic (and shows up under ``transports`` in status)."""

    @property
    @abstractmethod
    def state(self) -> TransportState: ...

    @property
    def listen_url(self) -> str | None:
        """Where peers reach it (``listen`` in status); None for one that only dials out."""
        return None
