"""UDP transport echo and handshake rate: the node's UDP transport against a plain uvloop UDP echo.

Both run on uvloop in this one process over loopback (client and server share the event loop in
both cases, so neither side gets a core to itself the other lacks):

- echo: the client keeps a window of messages in flight and sends the next as each comes back,
  until ``count`` have come back. Ours: two UdpTransports (sessions proven with Ed25519, every
  datagram sealed and opened with ChaCha20-Poly1305, messages fragmented and reassembled), the
  server sending each received frame back. Plain: a DatagramProtocol on each side without any
  cryptography, sending per message the same number of datagrams of the same sizes as ours puts
  on the wire (a 16 KiB message is 15 datagrams for both), the server echoing each datagram.
  A window that makes no progress for a while is topped up and counted as lost (UDP may drop).
  Ratio = ours msgs/s / plain msgs/s (goal >= 0.6).
- ceiling: the best ratio any implementation on this library could reach. Each echoed message
  costs ours, beyond what plain does, at least one seal and one open per datagram on the way out
  and again on the way back: 2 x sum over its datagrams of aead(plaintext size), where aead(n) is
  cryptography's ChaCha20Poly1305 encrypt + decrypt of n bytes with the 16-byte header as
  associated data (measured here, in rounds interleaved with the echoes). With plain's time per
  message t: ceiling = t / (t + 2 x sum aead). "of ceiling" = ratio / ceiling.
- handshakes: sequential first handshakes, each from a fresh client socket (opened before the
  clock starts) to one server, with the cookie gate at its default rate and with it forced on
  (``handshakes_per_second = 0``: every INIT first gets a cookie reply, one more round trip).

Rounds rotate which side goes first; figures are medians.

    .venv/bin/python bench/udp_transport.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.proto.datagram.fragments import UDP_PLAINTEXT, fragment
from node.proto.identity import Identity
from node.proto.session.messages import TRANSPORT_OVERHEAD
from node.proto.session.table_types import DEFAULT_TABLE_CONFIG
from node.proto.vocabulary import Frame, MessagesReceived, PeerConnected
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.transports.udp.transport import UdpSettings, UdpTransport

GOAL = 0.6
COOKIE_OFF = 1_000_000.0  # udp.handshakes_per_second's maximum: never reached here
STALL = 0.3  # seconds without an echo before the window is topped up (a loss)


def identity() -> Identity:
    return Identity.from_private_key(Ed25519PrivateKey.generate())


def transport(ident: Identity, handshakes_per_second: float = 100.0, sessions: int = 256) -> UdpTransport:
    settings = UdpSettings(
        handshakes_per_second=handshakes_per_second,
        health_check_interval=3600,
        table=replace(DEFAULT_TABLE_CONFIG, max_sessions=sessions),
    )
    return UdpTransport(ident, SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT)), settings)


def wire_sizes(size: int) -> list[int]:
    """The datagrams ours sends for one message of ``size`` bytes, as sizes on the wire."""
    return [
        len(piece) + TRANSPORT_OVERHEAD for piece in fragment(Frame(0, b"x" * size), UDP_PLAINTEXT, 1 << 20)
    ]


def aead_seconds(size: int, datagrams: int = 30_000) -> float:
    """Seconds per message for the raw AEAD work of one direction: a seal and an open (cryptography's
    ChaCha20Poly1305, 16-byte associated data, a counter nonce) of each datagram's plaintext."""
    plaintexts = [os.urandom(n - TRANSPORT_OVERHEAD) for n in wire_sizes(size)]
    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    encrypt, decrypt = aead.encrypt, aead.decrypt
    header = bytes(16)
    iterations = max(1, datagrams // len(plaintexts))
    start = time.perf_counter()
    for counter in range(iterations):
        nonce = (counter << 32).to_bytes(12, "little")
        for plaintext in plaintexts:
            decrypt(nonce, encrypt(nonce, plaintext, header), header)
    return (time.perf_counter() - start) / iterations


class Window:
    """``count`` messages echoed, at most ``window`` in flight; a stall tops the window up."""

    def __init__(self, count: int, window: int, send: Callable[[], Awaitable[None]]) -> None:
        self.count, self.window, self.send = count, window, send
        self.sent = self.done = self.lost = 0
        self.finished = asyncio.Event()
        self.progress = asyncio.Event()

    async def start(self) -> float:
        start = time.perf_counter()
        for _ in range(min(self.window, self.count)):
            await self._one()
        while not self.finished.is_set():
            try:
                async with asyncio.timeout(STALL):
                    await self.progress.wait()
                self.progress.clear()
            except TimeoutError:
                self.lost += 1
                await self._one()
        return time.perf_counter() - start

    async def _one(self) -> None:
        self.sent += 1
        await self.send()

    async def echoed(self) -> None:
        self.done += 1
        self.progress.set()
        if self.done >= self.count:
            self.finished.set()
        elif self.sent < self.count + self.lost:
            await self._one()


async def ours_echo(size: int, count: int, window: int) -> tuple[float, int]:
    payload = b"x" * size
    async with transport(identity()) as ts, transport(identity()) as tc:
        local = ts.local
        assert local is not None
        await tc.connect(ts.identity.peer_id, local)
        peer = ts.identity.peer_id
        message_id = 0

        async def send() -> None:
            nonlocal message_id
            message_id += 1
            await tc.send(peer, Frame(message_id, payload))

        pump = Window(count, window, send)

        async def echo() -> None:
            async for batch in ts.batched_events():
                if isinstance(batch, MessagesReceived):
                    for frame in batch.frames:
                        await ts.send(batch.peer, frame)

        async def receive() -> None:
            async for batch in tc.batched_events():
                if isinstance(batch, MessagesReceived):
                    for _ in batch.frames:
                        await pump.echoed()

        async with asyncio.TaskGroup() as tasks:
            echoer, receiver = tasks.create_task(echo()), tasks.create_task(receive())
            elapsed = await pump.start()
            echoer.cancel()
            receiver.cancel()
    return elapsed, pump.lost


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self, per_message: int) -> None:
        self.per_message = per_message
        self.datagrams = 0
        self.pump: Window | None = None
        self.replies: asyncio.Queue[None] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams += 1
        if self.datagrams % self.per_message == 0:
            self.replies.put_nowait(None)


async def plain_echo(size: int, count: int, window: int) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    datagrams = [b"x" * n for n in wire_sizes(size)]
    server, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    address = server.get_extra_info("sockname")
    # Not connected (no remote_addr): the node's socket serves every peer and cannot be, and a
    # connected socket skips the kernel's route lookup on each send.
    client, protocol = await loop.create_datagram_endpoint(
        lambda: _Client(len(datagrams)), local_addr=("127.0.0.1", 0)
    )
    try:

        async def send() -> None:
            for datagram in datagrams:
                client.sendto(datagram, address)

        pump = Window(count, window, send)

        async def receive() -> None:
            while True:
                await protocol.replies.get()
                await pump.echoed()

        async with asyncio.TaskGroup() as tasks:
            receiver = tasks.create_task(receive())
            elapsed = await pump.start()
            receiver.cancel()
    finally:
        client.close()
        server.close()
    return elapsed, pump.lost


async def handshakes(count: int, handshakes_per_second: float) -> float:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(transport(identity(), handshakes_per_second, 2 * count + 8))
        local = server.local
        assert local is not None
        peer = server.identity.peer_id
        clients = [await stack.enter_async_context(transport(identity())) for _ in range(count)]
        start = time.perf_counter()
        for client in clients:
            await client.connect(peer, local)
        elapsed = time.perf_counter() - start
        # connect() returns once the client sent its CONFIRM; the server counts on receiving it.
        connected = 0
        async with asyncio.timeout(5):
            async for event in server.events():
                connected += isinstance(event, PeerConnected)
                if connected == count:
                    break
        metrics = server.metrics()
        assert metrics.handshakes == count, metrics
        # The gate did what the case says: never asked, or asked (nearly) every INIT.
        assert (
            (metrics.cookies_sent == 0) if handshakes_per_second else (metrics.cookies_sent >= count - 1)
        ), metrics
    return elapsed


async def _async(func: Callable[[int], float], arg: int) -> float:
    return func(arg)


async def rounds(runs: list[Callable[[], Awaitable[Any]]], n: int) -> list[list[Any]]:
    """Each run's results over ``n`` rounds, interleaved, each round starting with the next run."""
    results: list[list[Any]] = [[] for _ in runs]
    for i in range(n):
        for k in range(len(runs)):
            j = (i + k) % len(runs)
            results[j].append(await runs[j]())
    return results


async def main(quick: bool) -> None:
    n_rounds = 3 if quick else 5
    await ours_echo(1024, 500, 32)  # warm-up (imports, caches), unmeasured
    await plain_echo(1024, 500, 32)
    print(
        f"{'case':<26}{'ours msgs/s':>13}{'plain msgs/s':>14}{'ours MB/s':>11}{'plain MB/s':>12}{'ratio':>7}"
        f"{'aead us/msg':>13}{'ceiling':>9}{'of ceiling':>12}"
    )
    ratios = []
    # Windows of about 40 KiB and 60 KiB in flight: well inside the default 208 KiB socket buffers.
    for size, count, window in (
        (1024, 5_000 if quick else 20_000, 32),
        (16 * 1024, 600 if quick else 3_000, 4),
    ):
        ours, plain, aead = await rounds(
            [
                lambda s=size, c=count, w=window: ours_echo(s, c, w),
                lambda s=size, c=count, w=window: plain_echo(s, c, w),
                lambda s=size: _async(aead_seconds, s),
            ],
            n_rounds,
        )
        t_ours = statistics.median(t for t, _ in ours)
        t_plain = statistics.median(t for t, _ in plain)
        # Both directions: the client seals and the server opens, the server seals and the client opens.
        t_aead = 2 * statistics.median(aead)
        ceiling = (t_plain / count) / (t_plain / count + t_aead)
        lost = sum(n for _, n in ours), sum(n for _, n in plain)
        ratio = t_plain / t_ours
        ratios.append(ratio)
        mb = size * count / 1e6
        label = f"echo {size // 1024:>2} KiB x {count} ({len(wire_sizes(size))} dgrams)"
        print(
            f"{label:<26}{count / t_ours:>13,.0f}{count / t_plain:>14,.0f}"
            f"{mb / t_ours:>11.1f}{mb / t_plain:>12.1f}{ratio:>7.2f}"
            f"{t_aead * 1e6:>13.1f}{ceiling:>9.2f}{ratio / ceiling:>12.2f}"
            + (f"   (windows topped up: ours {lost[0]}, plain {lost[1]})" if any(lost) else "")
        )
    met = all(r >= GOAL for r in ratios)
    print(
        f"goal (>= {GOAL}x plain UDP echo) {'met' if met else 'NOT met'}:"
        f" {' / '.join(f'{r:.2f}' for r in ratios)}"
    )
    count = 50 if quick else 200
    default, forced = await rounds(
        [lambda: handshakes(count, COOKIE_OFF), lambda: handshakes(count, 0.0)],
        n_rounds,
    )
    t_default, t_forced = statistics.median(default), statistics.median(forced)
    print(
        f"{'handshakes/s, cookie off':<26}{count / t_default:>13,.0f}"
        "   (sequential; gate above any rate reached)"
    )
    print(
        f"{'handshakes/s, cookie on':<26}{count / t_forced:>13,.0f}"
        "   (handshakes_per_second = 0: every INIT asked)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds (CI)")
    uvloop.run(main(parser.parse_args().quick))
