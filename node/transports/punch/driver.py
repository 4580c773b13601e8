"""One hole punch on real sockets: the sans-IO ``PunchAgent`` driven by one task.

Socket 0 is the node's UDP port, reached through the transport (``PunchPort``): checks leave with
``send_datagram``, arrive through ``expect_punch``. A BIRTHDAY target also opens ``sockets - 1``
extra sockets (node.transports.punch.sockets). The task sleeps until the agent's timer or a
datagram, feeds it, and sends what the agent wants sent (aioquic's driver shape); time comes from
the caller's clock, so the agreed ``fire_at`` means the same on both sides of the call.

The outcome: the check payload is the sender's peer id, so a nomination carrying another id than
``expected_peer`` is refused (PunchFailure.WRONG_PEER); the session handshake that follows is the
real proof. A nomination on an extra socket hands that socket to the transport (``adopt``) before
the answers of the same receive go out, so the peer's session INIT, sent once it has its answer,
finds the socket read by the transport; the other extra sockets are closed. The run then keeps
answering late checks (the peer may still be finishing) for ``timing.final_wait`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from node.proto.punch.agent import PunchAgent, PunchSetup, PunchTiming
from node.proto.punch.errors import PunchFailure, PunchMisuse, PunchUsageError
from node.proto.punch.events import Nominated, Outgoing, PunchStats
from node.proto.punch.plan import Role, Technique
from node.proto.vocabulary import IpEndpoint, PeerId, TransportReason
from node.transports.base import SocketFactory, TransportError, TransportUsageError
from node.transports.punch.port import PunchPort
from node.transports.punch.sockets import ExtraSockets

log = logging.getLogger(__name__)

MAX_SOCKETS = 256  # the birthday target's sockets, the node's port included (DESIGN.md)
INBOX = 1024  # checks received and not yet fed: beyond, dropped and counted (a flood)
PER_TURN = 256  # checks fed before the answers go out and the loop gets a turn
IDLE = 0.001  # the agent's timer is past but it waits on nothing due: look again this soon


@dataclass(frozen=True, slots=True)
class PunchResult:
    nominated: Nominated | None  # the direct path; None when the punch failed
    failure: PunchFailure | None  # why it failed; None when nominated
    stats: PunchStats  # the agent's counts at the outcome
    socket_adopted: bool  # the path runs over an extra socket the UDP transport took over
    send_errors: int = 0  # sends on extra sockets that failed (lost probes)
    dropped: int = 0  # checks not fed: the inbox was full, or from a socket not ours

    @property
    def remote(self) -> IpEndpoint | None:
        if self.nominated is None:
            return None
        ip, port = self.nominated.remote
        return IpEndpoint(ip, port)


class PunchRun:
    """``async with PunchRun(...) as run: result = await run.outcome()``."""

    def __init__(
        self,
        udp: PunchPort,
        setup: PunchSetup,
        expected_peer: PeerId,
        *,
        socket_factory: SocketFactory = socket.socket,
        rng: random.Random | None = None,
        timing: PunchTiming | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        birthday_target = setup.plan.technique is Technique.BIRTHDAY and setup.plan.role is Role.TARGET
        if setup.sockets > (MAX_SOCKETS if birthday_target else 1):
            raise PunchUsageError(
                PunchMisuse.BAD_SOCKET,
                f"{setup.sockets} sockets asked; only a birthday target opens more than the node's port "
                f"(at most {MAX_SOCKETS})",
            )
        self._udp = udp
        self._setup = setup
        self._expected = expected_peer.encode()
        self._factory = socket_factory
        self._timing = timing or PunchTiming()
        # The agent validates the setup at once: a misuse is raised here, not in the task.
        self._agent = PunchAgent(setup, rng or random.Random(), self._timing)
        self._clock = clock
        self._inbox: deque[tuple[int, bytes, IpEndpoint]] = deque()
        self._wake = asyncio.Event()
        self._extras: ExtraSockets | None = None
        self._adopted: tuple[int, int] | None = None  # (agent socket, the transport's via)
        self._dropped = 0
        self._outcome: asyncio.Future[PunchResult] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = loop.time
        local = self._udp.local
        if local is None:
            raise TransportUsageError(
                TransportReason.CLOSED, "cannot punch: the UDP transport is not running"
            )
        self._outcome = loop.create_future()
        async with contextlib.AsyncExitStack() as stack:
            if self._setup.sockets > 1:
                self._extras = ExtraSockets(
                    loop, self._factory, local, self._setup.sockets - 1, self._received
                )
                stack.callback(self._close_extras)
            self._udp.expect_punch(self._setup.token, self._on_port)
            stack.callback(self._udp.forget_punch, self._setup.token)
            group = await stack.enter_async_context(asyncio.TaskGroup())
            self._task = group.create_task(self._run())
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._outcome is not None and self._task is not None
        if exc is not None or not self._outcome.done():
            self._task.cancel()  # left early: stop punching now
        try:
            # The body's own exception is not handed to the task group (which would wrap it in an
            # ExceptionGroup): the task is cancelled above, and the exception goes on as it is.
            await self._stack.__aexit__(None, None, None)
        finally:
            if not self._outcome.done():
                self._outcome.set_exception(
                    TransportUsageError(TransportReason.CLOSED, "the punch run ended before an outcome")
                )
            if not self._outcome.cancelled():
                self._outcome.exception()  # retrieved: nobody may be waiting for it any more

    async def outcome(self) -> PunchResult:
        """The result as soon as the agent reports one. Raises TransportError when the UDP
        transport failed the run (closed, or the winning socket could not be adopted)."""
        assert self._outcome is not None, "enter the run first"
        return await asyncio.shield(self._outcome)

    def stats(self) -> PunchStats:
        return self._agent.stats()

    def extra_ports(self) -> dict[int, int]:
        """The extra sockets still open: index -> local port."""
        return self._extras.ports() if self._extras is not None else {}

    # -- input ------------------------------------------------------------------------------

    def _on_port(self, data: bytes, source: IpEndpoint, via: int) -> None:
        """A check from the transport: its node port (``via`` 0) or the socket it adopted."""
        if via == 0:
            self._received(0, data, source)
        elif self._adopted is not None and via == self._adopted[1]:
            self._received(self._adopted[0], data, source)
        else:
            self._dropped += 1  # our token on a socket adopted for another punch: not ours to use

    def _received(self, socket_index: int, data: bytes, source: IpEndpoint) -> None:
        if len(self._inbox) >= INBOX:
            self._dropped += 1
            return
        self._inbox.append((socket_index, data, source))
        self._wake.set()

    # -- the task -----------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._outcome is not None
        try:
            await self._punch()
            await self._linger()
        except TransportError as exc:  # the transport closed, or could not take the winning socket
            if not self._outcome.done():
                self._outcome.set_exception(exc)

    def _now(self) -> float:
        assert self._clock is not None
        return self._clock()

    async def _punch(self) -> None:
        agent = self._agent
        assert self._outcome is not None
        while not self._outcome.done():
            now = self._now()
            timer = agent.get_timer()
            if timer is not None and now >= timer:
                agent.handle_timer(now)
            self._step(now)
            if self._outcome.done():
                return
            timer = agent.get_timer()
            if timer is None:
                await self._wait(None)
            else:
                await self._wait(max(timer - self._now(), 0.0) or IDLE)

    async def _linger(self) -> None:
        """Answer late checks (the agent does) for ``final_wait``."""
        end = self._now() + self._timing.final_wait
        while (left := end - self._now()) > 0:
            await self._wait(left)
            self._step(self._now())

    async def _wait(self, delay: float | None) -> None:
        if self._inbox:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    def _step(self, now: float) -> None:
        """Feed what arrived (at most PER_TURN), act on the outcome, send what the agent wants."""
        agent = self._agent
        inbox = self._inbox
        for _ in range(min(len(inbox), PER_TURN)):
            index, data, source = inbox.popleft()
            agent.receive_datagram(index, data, (source.ip, source.port), now)
        while (event := agent.next_event()) is not None:
            if isinstance(event, Nominated):
                self._nominated(event)
            else:
                self._finish(None, event.reason)
        self._send(agent.datagrams_to_send(now))

    def _nominated(self, event: Nominated) -> None:
        if event.payload != self._expected:
            log.info(
                "punch nominated %s:%d but its checks carry another peer id than %s: refused",
                event.remote[0],
                event.remote[1],
                self._expected.decode(),
            )
            self._finish(None, PunchFailure.WRONG_PEER)
            return
        if event.socket > 0:
            assert self._extras is not None
            sock = self._extras.detach(event.socket)
            remote = IpEndpoint(*event.remote)
            try:
                via = self._udp.adopt(sock, remote)
            except BaseException:
                sock.close()
                raise
            self._adopted = (event.socket, via)
        self._finish(event, None)

    def _finish(self, nominated: Nominated | None, failure: PunchFailure | None) -> None:
        assert self._outcome is not None
        self._close_extras()  # an outcome either way: their mappings have served
        if not self._outcome.done():
            self._outcome.set_result(
                PunchResult(
                    nominated,
                    failure,
                    self._agent.stats(),
                    self._adopted is not None,
                    self._extras.send_errors if self._extras is not None else 0,
                    self._dropped,
                )
            )

    def _send(self, out: list[Outgoing]) -> None:
        udp = self._udp
        for item in out:
            destination = IpEndpoint(*item.destination)
            if item.socket == 0:
                udp.send_datagram(item.data, destination)
            elif self._adopted is not None and item.socket == self._adopted[0]:
                udp.send_datagram(item.data, destination, self._adopted[1])
            elif self._extras is not None:
                self._extras.send(item.socket, item.data, destination)

    def _close_extras(self) -> None:
        if self._extras is not None:
            self._extras.close()
