"""TURN relay throughput and round trip: our client (node.transports.turn_connection) against
aioice's TURN client on the same coturn in the same run, 200-byte payloads.

The lab: host A1 behind a symmetric NAT allocates on coturn; an echo peer on the open host O1
answers every datagram to the relayed address. Both clients run in one worker process inside A1
(``ip netns exec``), one after the other, on uvloop:

- throughput: datagrams per second with a window of outstanding datagrams (a lost one frees its
  slot after a second of silence);
- round trip: ping-pong, one datagram at a time; p50 and p99;
- the worker's CPU time per echoed datagram (client, harness and socket calls together).

The two clients alternate for three rounds (one with ``--quick``) and the medians are printed.

Goal: >= 1.5x aioice's throughput at equal or lower p99. Needs root, nft and coturn.

    python bench/turn_relay.py [--quick] [--transport udp|tcp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAYLOAD = 200
ECHO_PORT = 7000
GOAL = 1.5


# -- the echo peer (runs inside O1) ---------------------------------------------------------------
def serve_echo(address: str) -> None:
    import uvloop

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
            self.transport.sendto(data, addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        sock.bind((address, ECHO_PORT))
        await loop.create_datagram_endpoint(Echo, sock=sock)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


# -- the measurement (runs inside A1) ---------------------------------------------------------------
class Meter:
    """Counts echoes. While a throughput run is on, each echo sends the next datagram straight
    from the receive callback (a closed loop with ``window`` in flight), so the harness adds
    almost nothing per datagram and the clients' own costs decide."""

    def __init__(self) -> None:
        self.received = 0
        self.arrived = asyncio.Event()
        self.last: bytes = b""
        self.send: Callable[[bytes], None] | None = None
        self.to_send = 0
        self.finished: asyncio.Future[None] | None = None
        self.goal = 0

    def on_data(self, data: bytes) -> None:
        self.received += 1
        self.last = data
        if self.send is None:
            self.arrived.set()
            return
        if self.to_send > 0:
            self.to_send -= 1
            self.send(data)
        if self.received >= self.goal and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


async def throughput(
    send: Callable[[bytes], None], meter: Meter, total: int, window: int
) -> tuple[float, float]:
    """Datagrams per second, and the worker's CPU microseconds per echoed datagram."""
    payload = b"t" * PAYLOAD
    start = meter.received
    meter.goal = start + total
    meter.to_send = total - window
    meter.finished = asyncio.get_running_loop().create_future()
    meter.send = send
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(window):
        send(payload)
    progress = start
    try:
        while not meter.finished.done():
            try:
                async with asyncio.timeout(0.5):
                    await asyncio.shield(meter.finished)
            except TimeoutError:
                if meter.received == progress:  # stalled: every datagram in flight was lost
                    break
                progress = meter.received
    finally:
        meter.send = None
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    done = max(meter.received - start, 1)
    return done / elapsed, cpu / done * 1e6


async def round_trips(send: Callable[[bytes], None], meter: Meter, count: int) -> list[float]:
    rtts: list[float] = []
    for i in range(count):
        probe = i.to_bytes(4, "big") + b"r" * (PAYLOAD - 4)
        meter.arrived.clear()
        t0 = time.perf_counter()
        send(probe)
        try:
            async with asyncio.timeout(1.0):
                while meter.last != probe:
                    meter.arrived.clear()
                    await meter.arrived.wait()
        except TimeoutError:
            continue
        rtts.append((time.perf_counter() - t0) * 1000.0)
    return rtts


def summary(rate: tuple[float, float], rtts: list[float]) -> dict[str, float]:
    ordered = sorted(rtts)
    return {
        "datagrams_per_s": rate[0],
        "cpu_us_per_datagram": rate[1],
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


async def run_ours(args: argparse.Namespace) -> dict[str, float]:
    import ipaddress

    from node.proto.turn_credentials import Credentials
    from node.proto.turn_uri import TurnServerAddress, TurnTransport
    from node.transports.turn_connection import TurnConnection

    meter = Meter()
    peer = (ipaddress.ip_address(args.peer), ECHO_PORT)
    server = TurnServerAddress(args.server, args.port, TurnTransport(args.transport))
    async with TurnConnection(
        server, Credentials(args.user, args.password), on_data=lambda _p, d: meter.on_data(d)
    ) as conn:

        def send(data: bytes) -> None:
            conn.send(peer, data)

        await round_trips(send, meter, 20)  # warm-up: permission and channel in place
        rate = await throughput(send, meter, args.total, args.window)
        rtts = await round_trips(send, meter, args.pings)
    return summary(rate, rtts)


async def run_aioice(args: argparse.Namespace) -> dict[str, float]:
    from aioice.turn import create_turn_endpoint

    meter = Meter()

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
            meter.on_data(data)

    transport, _ = await create_turn_endpoint(
        Receiver,
        server_addr=(args.server, args.port),
        username=args.user,
        password=args.password,
        transport=args.transport,
    )
    peer = (args.peer, ECHO_PORT)
    try:

        def send(data: bytes) -> None:
            transport.sendto(data, peer)

        await round_trips(send, meter, 20)
        rate = await throughput(send, meter, args.total, args.window)
        rtts = await round_trips(send, meter, args.pings)
    finally:
        transport.close()
        await asyncio.sleep(0.2)  # let aioice's own close task release the allocation
    return summary(rate, rtts)


def worker(args: argparse.Namespace) -> None:
    import uvloop

    async def main() -> dict[str, Any]:
        # Interleaved rounds, the median of each figure: a shared machine drifts.
        rows: dict[str, list[dict[str, float]]] = {"ours": [], "aioice": []}
        for i in range(args.rounds):
            order = ("ours", "aioice") if i % 2 == 0 else ("aioice", "ours")
            for name in order:
                rows[name].append(await (run_ours(args) if name == "ours" else run_aioice(args)))
        return {
            name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            for name, runs in rows.items()
        }

    print(json.dumps(uvloop.run(main())))


# -- orchestration (root, in the default namespace) -------------------------------------------------
def orchestrate(args: argparse.Namespace) -> int:
    from netlink.lab.builder import Lab, missing_prerequisites
    from netlink.lab.nat import NatBehaviour
    from netlink.lab.topology import plan

    missing = missing_prerequisites()
    if missing:
        print(f"skipped: the NAT lab needs {', '.join(m.value for m in missing)}", file=sys.stderr)
        return 0
    total, pings, rounds = (2000, 200, 1) if args.quick else (20000, 2000, 3)
    with Lab.up(plan((("A", NatBehaviour.SYMMETRIC),), open_hosts=1)) as lab:
        turn = lab.coturn_config
        assert turn is not None
        peer = str(lab.host("O1").address)
        echo = lab.popen(
            "O1",
            [sys.executable, __file__, "--echo", peer],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert echo.stdout is not None
        echo.stdout.readline()  # "ready"
        port = turn.tls_port if args.transport == "tls" else turn.port
        argv = [
            sys.executable,
            __file__,
            "--worker",
            f"--server={turn.primary}",
            f"--port={port}",
            f"--user={turn.username}",
            f"--password={turn.password}",
            f"--peer={peer}",
            f"--transport={args.transport}",
            f"--total={total}",
            f"--pings={pings}",
            f"--window={args.window}",
            f"--rounds={rounds}",
        ]
        done = lab.run("A1", argv, timeout=120)
        if done.returncode != 0:
            print(done.stderr.decode(), file=sys.stderr)
            return 1
        results = json.loads(done.stdout)
    ours, theirs = results["ours"], results["aioice"]
    print(f"TURN relay over {args.transport}, {PAYLOAD}-byte payloads, coturn in the lab, median of {rounds}")
    print(f"{'client':<8} {'datagrams/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'client CPU us/dgram':>20}")
    for name, row in (("ours", ours), ("aioice", theirs)):
        print(
            f"{name:<8} {row['datagrams_per_s']:>12.0f} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}"
            f" {row['cpu_us_per_datagram']:>20.1f}"
        )
    ratio = ours["datagrams_per_s"] / theirs["datagrams_per_s"]
    met = ratio >= GOAL and ours["p99_ms"] <= theirs["p99_ms"]
    print(f"throughput ratio ours/aioice: {ratio:.2f}x (goal >= {GOAL}x at equal or lower p99)")
    print(f"p99 ratio ours/aioice: {ours['p99_ms'] / theirs['p99_ms']:.2f}")
    cpu_ratio = theirs["cpu_us_per_datagram"] / ours["cpu_us_per_datagram"]
    print(f"client CPU per datagram, aioice/ours: {cpu_ratio:.2f}x")
    print(f"goal {'met' if met else 'NOT met'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 datagrams and 200 pings")
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--echo", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("server", "user", "password", "peer"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("port", "total", "pings", "rounds"):
        parser.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        serve_echo(args.echo)
        return 0
    if args.worker:
        worker(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
