"""Coordinator send cost: reliable messages through the coordinator against the bare UDP transport.

Both run on uvloop in this one process over loopback UDP (two nodes' transports in one event loop,
so neither side gets a core the other lacks), in the same run, rounds alternating which goes first:

- coordinator: two CoordinatorServices over their own UdpServices (development trust, sessions
  sealed with ChaCha20-Poly1305 as in the node). ``WINDOW`` callers send ``count`` reliable NORMAL
  messages of ``size`` bytes with ``NodeApi.send`` (each returns once the peer's node has the
  message in its inbox: acknowledged), while one subscriber on the other node takes them from
  ``messages()``. Done when every send returned and every message was taken.
- bare: the same two kinds of UdpTransport (``build_transport`` from the same config), the sender
  calling ``transport.send`` for each message of the same size, the receiver counting the
  messages its ``batched_events()`` hands over. UDP has no flow control of its own, and a
  sender that outruns the receiver just loses datagrams (unpaced, 24 % were lost), which is no
  throughput to compare with. So it is paced the way the coordinator's window paces it: at most
  ``WINDOW`` messages sent and not yet received. The pacing reads the receiver's count in
  memory (free: both ends are in this process), so it costs the bare side nothing that the
  coordinator pays for with its ACKs on the wire.

Figures per side: delivered msgs/s (wall clock), and CPU time per delivered message (the
process's user + system time, both ends included, over the same interval). Ratio = coordinator
msgs/s / bare msgs/s, and cpu ratio = bare CPU per message / coordinator CPU per message (goal
>= 0.8 both). Medians over the rounds.

    .venv/bin/python bench/coordinator.py [--quick] [--size BYTES] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvloop

from node.config import Config, NodeSection
from node.proto.vocabulary import Frame, MessagesReceived, PeerConnected, Priority
from node.security import keystore
from node.services.coordinator import CoordinatorService, NodeApi
from node.services.udp import UdpService, build_transport

GOAL = 0.8
WINDOW = 256  # callers in flight (the coordinator's default window_max_messages)
STALL = 0.5  # seconds without progress before the bare side counts its window as lost

CONFIG = Config(node=NodeSection(listen_address="127.0.0.1", udp_port=0, software="bench"))


@dataclass(frozen=True, slots=True)
class Result:
    seconds: float
    cpu: float
    delivered: int
    lost: int = 0

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.delivered * 1e6


class Clock:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def result(self, delivered: int, lost: int = 0) -> Result:
        return Result(time.perf_counter() - self.wall, time.process_time() - self.cpu, delivered, lost)


@asynccontextmanager
async def coordinator_pair(root: Path) -> AsyncIterator[tuple[NodeApi, NodeApi, str]]:
    nodes = []
    for name in ("a", "b"):
        identity, _ = keystore.load_or_create(root / name)
        udp = UdpService(CONFIG, identity)
        nodes.append((identity, udp, CoordinatorService(CONFIG, identity.peer_id, udp)))
    (_, udp_a, coord_a), (id_b, udp_b, coord_b) = nodes
    async with udp_a, udp_b, coord_a, coord_b:
        api_a, api_b = NodeApi(coord_a), NodeApi(coord_b)
        await api_a.connect(id_b.peer_id, [f"udp://{udp_b.local}"], timeout=10)
        yield api_a, api_b, id_b.peer_id


async def through_coordinator(root: Path, count: int, size: int) -> Result:
    payload = b"x" * size
    async with coordinator_pair(root) as (a, b, peer):

        async def take() -> None:
            n = 0
            async for _ in b.messages():
                n += 1
                if n == count:
                    return

        async def caller(n: int) -> None:
            for _ in range(n):
                await a.send(peer, payload, Priority.NORMAL)

        clock = Clock()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(take())
            share, extra = divmod(count, WINDOW)
            for i in range(WINDOW):
                tasks.create_task(caller(share + (i < extra)))
        return clock.result(count)


async def bare(root: Path, count: int, size: int) -> Result:
    ids = [keystore.load_or_create(root / name)[0] for name in ("a", "b")]
    a, b = (build_transport(CONFIG, identity) for identity in ids)
    payload = b"x" * size
    async with a, b:
        local = b.local
        assert local is not None
        await a.connect(ids[1].peer_id, local)
        received = 0
        progress = asyncio.Event()

        async def count_received() -> None:
            nonlocal received
            async for event in b.batched_events():
                if isinstance(event, MessagesReceived):
                    received += len(event.frames)
                    progress.set()
                elif isinstance(event, PeerConnected):
                    continue

        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(count_received())
            peer = ids[1].peer_id
            sent = lost = 0
            clock = Clock()
            while received + lost < count:
                while sent < count and sent - received - lost < WINDOW:
                    sent += 1
                    await a.send(peer, Frame(sent, payload, Priority.NORMAL))
                if received + lost >= count:
                    break
                progress.clear()
                try:
                    async with asyncio.timeout(STALL):
                        await progress.wait()
                except TimeoutError:
                    lost = sent - received  # the rest of the window is not coming
            result = clock.result(received, lost)
            reader.cancel()
        return result


Run = Callable[[Path, int, int], Awaitable[Result]]


async def rounds(count: int, size: int, n: int) -> dict[str, list[Result]]:
    sides: dict[str, Run] = {"coordinator": through_coordinator, "bare": bare}
    out: dict[str, list[Result]] = {name: [] for name in sides}
    order = list(sides)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            for name in order if i % 2 == 0 else reversed(order):
                out[name].append(await sides[name](Path(tmp) / f"{name}{i}", count, size))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (well under 60 s)")
    parser.add_argument("--size", type=int, default=100, help="payload bytes per message (100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of one coordinator run to this file")
    args = parser.parse_args()
    count = 20_000 if args.quick else 100_000
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            profile = cProfile.Profile()
            profile.enable()
            uvloop.run(through_coordinator(Path(tmp), count, args.size))
            profile.disable()
            profile.dump_stats(args.profile)
        return
    results = uvloop.run(rounds(count, args.size, args.rounds))
    print(f"{count} reliable messages of {args.size} B, {WINDOW} in flight, {args.rounds} rounds (medians)")
    for name, rs in results.items():
        rates = ", ".join(f"{r.rate:,.0f}" for r in rs)
        lost = sum(r.lost for r in rs)
        print(
            f"  {name:12s} {statistics.median(r.rate for r in rs):>9,.0f} msgs/s"
            f" ({rates})  {statistics.median(r.cpu_us for r in rs):6.1f} us CPU/msg"
            + (f"  lost {lost}" if lost else "")
        )
    ours, theirs = results["coordinator"], results["bare"]
    ratio = statistics.median(o.rate / t.rate for o, t in zip(ours, theirs, strict=True))
    cpu = statistics.median(t.cpu_us / o.cpu_us for o, t in zip(ours, theirs, strict=True))
    verdict = "meets" if min(ratio, cpu) >= GOAL else "below"
    print(f"  ratio {ratio:.2f} msgs/s, {cpu:.2f} CPU/msg ({verdict} the goal >= {GOAL})")


if __name__ == "__main__":
    main()
