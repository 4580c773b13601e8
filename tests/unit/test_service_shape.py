"""node.services.service: what every service inherits. A start that fails half-way gives back
what it had taken; a stop gives back everything, last taken first; ``status()`` is the view."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from node.errors import LocalError
from node.services.service import Service


@dataclass(frozen=True, slots=True)
class _View:
    held: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"held": list(self.held)}


class _Taker(Service[_View]):
    name = "taker"

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.held: list[str] = []
        self.released: list[str] = []
        self._fail_after = fail_after

    async def _start(self, stack: AsyncExitStack) -> None:
        for thing in ("socket", "transport", "task"):
            if len(self.held) == self._fail_after:
                raise LocalError(f"cannot take the {thing}: test says so")
            self.held.append(thing)
            stack.callback(self._release, thing)

    def _release(self, thing: str) -> None:
        self.held.remove(thing)
        self.released.append(thing)

    def status(self) -> _View:
        return _View(tuple(self.held))


async def test_a_stop_gives_back_everything_last_taken_first() -> None:
    async with _Taker() as service:
        assert service.status().to_json() == {"held": ["socket", "transport", "task"]}
    assert service.released == ["task", "transport", "socket"]
    assert service.status().to_json() == {"held": []}


async def test_a_failed_start_gives_back_what_it_had_taken() -> None:
    service = _Taker(fail_after=2)
    with pytest.raises(LocalError, match="cannot take the task"):
        async with service:
            pytest.fail("a failed start does not run the body")
    assert service.released == ["transport", "socket"]
    assert service.held == []
