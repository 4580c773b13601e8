"""Punch, then prove the peer on the path that won: the handoff to the UDP secure session.

Side A controls the punch (it nominates, node.proto.punch.agent) and dials: ``connect`` runs the
secure-session handshake to the nominated address, which proves the peer's identity (another id:
TransportPeerError(PEER_MISMATCH)). Side B waits for that session from the address its nomination
came from. Either way the punch keeps answering late checks meanwhile (the run is still open).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

from node.proto.punch import wire
from node.proto.punch.agent import PunchSetup, PunchTiming
from node.proto.vocabulary import PeerId
from node.transports.base import SocketFactory
from node.transports.punch.driver import PunchResult, PunchRun
from node.transports.punch.port import SessionPort


async def punch_and_connect(
    udp: SessionPort,
    setup: PunchSetup,
    expected_peer: PeerId,
    *,
    socket_factory: SocketFactory = socket.socket,
    rng: random.Random | None = None,
    timing: PunchTiming | None = None,
    clock: Callable[[], float] | None = None,
    on_proven: Callable[[PunchResult], None] | None = None,
) -> PunchResult:
    """The punch's result; when it nominated a path, returns once the secure session with
    ``expected_peer`` runs on it. Raises TransportPeerError (PEER_MISMATCH, CONNECT_TIMEOUT,
    AUTH_FAILED) when the handshake on the path fails; the adopted socket is released then.
    ``on_proven`` is told the moment the session is proven: the return waits for the run's
    linger (late checks of the peer are answered for ``timing.final_wait``)."""
    async with PunchRun(
        udp, setup, expected_peer, socket_factory=socket_factory, rng=rng, timing=timing, clock=clock
    ) as run:
        result = await run.outcome()
        remote = result.remote
        if remote is None:
            return result
        try:
            if setup.side is wire.Side.A:
                await udp.connect(expected_peer, remote)
            else:
                await udp.wait_session(expected_peer, remote)
        except BaseException:
            udp.release(remote)
            raise
        if on_proven is not None:
            on_proven(result)
        return result
