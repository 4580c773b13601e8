"""The node's view of the NAT in front of it: one discovery at start, another on request.

``async with NatService(config) as nat:`` owns one task (in its own TaskGroup) that runs a
discovery whenever one is wanted; requests made while one runs are coalesced into one more run.
``rediscover()`` is the entry point for whatever learns that the network changed: the netlink
monitor calls it on address and route changes. The breakers live as long as the service, so a
dead server stops costing time after it has failed often enough. Given the node's UDP port (the
daemon passes its UDP transport), discovery sends its Binding and mapping tests from that port,
so ``nat.result.mapped_address`` is the mapping peers reach; the filtering tests, and everything
without a port, use ephemeral sockets of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from node.config import Config, StunSection
from node.errors import NodeError
from node.proto.natprobe.probe import ProbeTiming
from node.proto.natprobe.types import NatReport
from node.services.background import run_in_background
from node.services.service import Service
from node.transports.base import SocketFactory
from node.transports.nat.discovery import NatDiscovery
from node.transports.port import DatagramPort

log = logging.getLogger(__name__)


def probe_timing(section: StunSection, *, hairpin: bool = False) -> ProbeTiming:
    return ProbeTiming(
        deadline=section.discovery_timeout_s,
        binding_timeout=section.binding_timeout_s,
        rto=section.probe_rto_s,
        silence_rtts=section.silence_rtts,
        silence_floor=section.silence_floor_s,
        silence_max=section.silence_max_s,
        tcp_after=section.tcp_after_s,
        hairpin=hairpin,
    )


@dataclass(frozen=True, slots=True)
class NatView:
    """What ``status`` shows under ``nat``."""

    enabled: bool  # servers are configured
    discovering: bool
    runs: int  # discoveries finished since start
    report: NatReport | None  # the latest that classified anything
    age_s: float | None  # since that report

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "discovering": self.discovering,
            "runs": self.runs,
            "age_s": None if self.age_s is None else round(self.age_s, 3),
            "result": None if self.report is None else self.report.to_json(),
        }

    def summary(self) -> str:
        return "nat unknown" if self.report is None else f"nat {self.report.nat_type.value}"


class NatService(Service[NatView]):
    name = "nat"

    def __init__(
        self,
        config: Config,
        *,
        socket_factory: SocketFactory | None = None,
        port: DatagramPort | None = None,
    ) -> None:
        super().__init__()
        stun = self._stun = config.stun
        factory = {} if socket_factory is None else {"socket_factory": socket_factory}
        self._discovery = (
            NatDiscovery(stun.servers, probe_timing(stun), config.breaker.new_breaker, **factory, port=port)
            if stun.servers
            else None
        )
        self._wanted = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._report: NatReport | None = None
        self._at: float | None = None
        self._runs = 0
        # Told each report that classified anything (the coordinator's prior needs the NAT type).
        self.on_report: list[Callable[[NatReport], object]] = []

    async def _start(self, stack: AsyncExitStack) -> None:
        if self._discovery is None:
            return
        await run_in_background(stack, self._work(self._discovery), "nat-discovery")
        if self._stun.discover_at_start:
            self.rediscover()

    def rediscover(self) -> None:
        """Ask for a discovery (the netlink monitor calls this when addresses or routes change).
        Returns at once; calls while one runs are coalesced into one more run."""
        if self._discovery is not None:
            self._wanted.set()
            self._idle.clear()

    async def wait_idle(self) -> None:
        """Until no discovery is running or wanted (for tests and orderly callers)."""
        await self._idle.wait()

    async def _work(self, discovery: NatDiscovery) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                report = await discovery.run()
            except NodeError as exc:  # e.g. no local address to bind right after a link change
                log.warning("NAT discovery failed: %s", exc)
            else:
                self._runs += 1
                if report.answered:
                    self._report, self._at = report, time.monotonic()
                    for listener in self.on_report:
                        listener(report)
                log.info(
                    "NAT discovery: %s (mapping %s, filtering %s) in %.0f ms",
                    report.nat_type.value,
                    report.mapping.value if report.mapping else "unknown",
                    report.filtering.value if report.filtering else "unknown",
                    report.elapsed * 1000,
                )
            if not self._wanted.is_set():
                self._idle.set()

    def status(self) -> NatView:
        return NatView(
            enabled=self._discovery is not None,
            discovering=not self._idle.is_set(),
            runs=self._runs,
            report=self._report,
            age_s=None if self._at is None else time.monotonic() - self._at,
        )
