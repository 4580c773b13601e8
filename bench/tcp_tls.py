"""TCP-TLS throughput and handshake rate: the node's transport against a plain asyncio TLS echo.

Both sides run on uvloop over loopback with the same TLS 1.3 contexts (Ed25519 certificates):

- echo: one connection; the client pipelines N messages of 1 KiB or 64 KiB, the server sends
  each back, the client stops when all N came back. Baseline: asyncio streams, raw bytes, the
  server writes back whatever it reads (no framing at all). Ours: TcpTlsTransport on both ends
  (frames with message ids, the link core, the event queue, per-message send). Ours is run
  twice: its consumers read ``batched_events()`` (the messages of one read as one event, then
  each sent back on its own) and, on the line below, ``events()`` (one event per message).
  msgs/s and MB/s counted one way; the ratio ours/baseline is printed (goal >= 0.8).
- handshakes: sequential connections per second. Baseline: TCP + TLS 1.3. Ours: TCP + TLS 1.3 +
  the in-band identity proof (one more round trip and an Ed25519 sign and verify).

Rounds rotate which side goes first; figures are medians.

    .venv/bin/python bench/tcp_tls.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from node.proto.breaker import CircuitBreaker
from node.proto.vocabulary import Frame, MessageReceived, MessagesReceived
from node.security import keystore
from node.security.trust import TrustMode, TrustPolicy
from node.transports.tcp_tls.link import LinkSettings, TlsCredentials, dial, make_credentials
from node.transports.tcp_tls.transport import TcpTlsSettings, TcpTlsTransport

HIGH_WATER = 1 << 20
WIDTHS = (22, 14, 14, 11, 12, 8)


def creds(tmp: Path, name: str) -> TlsCredentials:
    ident, _ = keystore.load_or_create(tmp / name)
    return make_credentials(
        ident, tmp / name / keystore.KEY_FILE_NAME, TrustPolicy(TrustMode.DEVELOPMENT), None
    )


def transport(c: TlsCredentials, listen: bool) -> TcpTlsTransport:
    settings = TcpTlsSettings(LinkSettings(max_message=1 << 20), health_check_interval=3600)
    return TcpTlsTransport(c, settings, CircuitBreaker, ("127.0.0.1", 0) if listen else None)


async def ours_echo(
    server: TlsCredentials, client: TlsCredentials, size: int, count: int, batched: bool = True
) -> float:
    payload = b"x" * size
    async with transport(server, True) as ts, transport(client, False) as tc:
        local = ts.local
        assert local is not None
        peer = await tc.dial(local)

        async def echo() -> None:
            if batched:
                async for batch in ts.batched_events():
                    if isinstance(batch, MessagesReceived):
                        for frame in batch.frames:
                            await ts.send(batch.peer, frame)
                return
            async for event in ts.events():
                if isinstance(event, MessageReceived):
                    await ts.send(event.peer, event.frame)

        async def received() -> None:
            """Until all came back (counted from the events, as the consumer reads them)."""
            got = 0
            if batched:
                async for batch in tc.batched_events():
                    if isinstance(batch, MessagesReceived):
                        got += len(batch.frames)
                        if got >= count:
                            return
            else:
                async for event in tc.events():
                    if isinstance(event, MessageReceived):
                        got += 1
                        if got == count:
                            return
            raise RuntimeError(f"the transport closed after {got} of {count} messages")

        async def produce() -> None:
            for i in range(count):
                await tc.send(peer, Frame(i, payload))

        async with asyncio.TaskGroup() as tasks:
            echoer = tasks.create_task(echo())
            start = time.perf_counter()
            tasks.create_task(produce())
            await received()
            elapsed = time.perf_counter() - start
            echoer.cancel()
    return elapsed


async def plain_echo(server: TlsCredentials, client: TlsCredentials, size: int, count: int) -> float:
    payload = b"x" * size

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(256 * 1024):
                writer.write(data)
                if writer.transport.get_write_buffer_size() > HIGH_WATER:
                    await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=server.server_context)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client.client_context)

    async def produce() -> None:
        for _ in range(count):
            writer.write(payload)
            if writer.transport.get_write_buffer_size() > HIGH_WATER:
                await writer.drain()

    total = size * count
    async with asyncio.TaskGroup() as tasks:
        start = time.perf_counter()
        tasks.create_task(produce())
        got = 0
        while got < total:
            got += len(await reader.read(256 * 1024))
        elapsed = time.perf_counter() - start
    writer.close()
    srv.close()
    return elapsed


async def ours_handshakes(server: TlsCredentials, client: TlsCredentials, count: int) -> float:
    async with transport(server, True) as ts:
        local = ts.local
        assert local is not None
        start = time.perf_counter()
        for _ in range(count):
            link = await dial(local, None, client, LinkSettings())
            link.close()
        return time.perf_counter() - start


async def plain_handshakes(server: TlsCredentials, client: TlsCredentials, count: int) -> float:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    srv = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=server.server_context)
    port = srv.sockets[0].getsockname()[1]
    start = time.perf_counter()
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client.client_context)
        writer.close()
    elapsed = time.perf_counter() - start
    srv.close()
    return elapsed


async def rounds(runs: list[Callable[[], Awaitable[float]]], n: int) -> list[float]:
    """The median time of each run over ``n`` rounds, interleaved, each round starting with the next."""
    times: list[list[float]] = [[] for _ in runs]
    for i in range(n):
        for k in range(len(runs)):
            j = (i + k) % len(runs)
            times[j].append(await runs[j]())
    return [statistics.median(t) for t in times]


async def main(quick: bool) -> None:
    n_rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        server, client = creds(Path(tmp), "server"), creds(Path(tmp), "client")
        await ours_echo(server, client, 1024, 1000)  # warm-up (first connections, caches), unmeasured
        await plain_echo(server, client, 1024, 1000)
        header = ("case", "ours msgs/s", "plain msgs/s", "ours MB/s", "plain MB/s", "ratio")
        print(
            "".join(
                f"{h:<22}" if i == 0 else f"{h:>{w}}"
                for i, (h, w) in enumerate(zip(header, WIDTHS, strict=True))
            )
        )
        for size, count in ((1024, 5_000 if quick else 50_000), (64 * 1024, 300 if quick else 3_000)):
            t_batched, t_events, t_plain = await rounds(
                [
                    lambda s=size, c=count: ours_echo(server, client, s, c, batched=True),
                    lambda s=size, c=count: ours_echo(server, client, s, c, batched=False),
                    lambda s=size, c=count: plain_echo(server, client, s, c),
                ],
                n_rounds,
            )
            mb = size * count / 1e6
            for label, t_ours in (
                (f"echo {size // 1024:>3} KiB x {count:<8}", t_batched),
                ("  via events()", t_events),
            ):
                print(
                    f"{label:<22}{count / t_ours:>14,.0f}{count / t_plain:>14,.0f}"
                    f"{mb / t_ours:>11.1f}{mb / t_plain:>12.1f}{t_plain / t_ours:>8.2f}"
                )
        count = 50 if quick else 300
        t_ours, t_plain = await rounds(
            [lambda: ours_handshakes(server, client, count), lambda: plain_handshakes(server, client, count)],
            n_rounds,
        )
        print(
            f"{'handshakes/s':<22}{count / t_ours:>14,.0f}{count / t_plain:>14,.0f}{'':>11}{'':>12}"
            f"{t_plain / t_ours:>8.2f}   (ours adds the in-band identity proof)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, one round (CI)")
    uvloop.run(main(parser.parse_args().quick))
