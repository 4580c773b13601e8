"""Time to a full NAT classification per lab behaviour: ours vs pystun3, same coturn, same host.

In the NAT lab (router A with host A1, coturn on 203.0.113.10/.11): for every behaviour, our
discovery (``NatDiscovery`` in-process, sockets in A1's namespace, default timing) and pystun3's
``get_ip_info`` (its defaults: 2 s socket timeout, up to 4 tries per test) from a fresh source
port each run. Prints both medians, each answer, and the ratio. Goals: every classification of
ours under 1.5 s, and >= 5x faster than pystun3 on the restricted types. The full run also shows
pystun3 run twice from its default port on a port-restricted NAT (leftover conntrack: the
second answer is "Full Cone") beside ours, ten runs in a row.

    python bench/nat_discovery.py [--quick] [--rounds N]

``--quick`` (CI): three rounds of ours per behaviour, pystun3 once on the restricted types only.
Each behaviour has its own router, so pystun3's runs (timeout-bound) go side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_S = 1.5
GOAL_RATIO = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI, well under 60 s)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of ours per behaviour")
    args = parser.parse_args()

    from netlink.lab.builder import missing_prerequisites

    missing = missing_prerequisites()
    if missing:
        print(f"nat_discovery: skipped, the NAT lab needs {', '.join(p.value for p in missing)}")
        return 0
    return asyncio.run(bench(args.rounds or (3 if args.quick else 10), quick=args.quick))


async def bench(rounds: int, *, quick: bool) -> int:
    import stun as pystun3

    from netlink.lab.builder import Lab
    from netlink.lab.coturn import STUN_PORT
    from netlink.lab.nat import NatBehaviour
    from netlink.lab.topology import STUN_PRIMARY, plan
    from node.proto.natprobe.probe import ProbeTiming
    from node.transports.nat.discovery import NatDiscovery

    restricted = (NatBehaviour.RESTRICTED_CONE, NatBehaviour.PORT_RESTRICTED)
    server = f"{STUN_PRIMARY}:{STUN_PORT}"
    # One router per behaviour (A, B, ...), so pystun3's slow runs can go side by side.
    routers = {behaviour: chr(ord("A") + i) for i, behaviour in enumerate(NatBehaviour)}
    with Lab.up(plan([(name, behaviour) for behaviour, name in routers.items()])) as lab:

        def discovery(host: str) -> NatDiscovery:
            def factory(family: int, type_: int) -> socket.socket:
                return lab.socket(host, type_)

            return NatDiscovery([server], ProbeTiming(), socket_factory=factory)

        def theirs(host: str, port: int) -> tuple[str, float]:
            """pystun3's get_ip_info, on a socket made in the host's namespace (the same
            settings: 2 s timeout, SO_REUSEADDR, bound to the host's address and ``port``)."""
            address = str(lab.host(host).address)
            sock = lab.socket(host)
            try:
                sock.settimeout(2)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                t0 = time.perf_counter()
                answer = pystun3.get_nat_type(sock, address, port, str(STUN_PRIMARY), STUN_PORT)[0]
                return str(answer), time.perf_counter() - t0
            finally:
                sock.close()

        ours: dict[NatBehaviour, tuple[float, set[str]]] = {}
        worst = 0.0
        for behaviour, router in routers.items():
            probe = discovery(f"{router}1")
            times, answers = [], set()
            for _ in range(rounds):
                t0 = time.perf_counter()
                report = await probe.run()
                times.append(time.perf_counter() - t0)
                answers.add(report.nat_type.value)
            ours[behaviour] = (statistics.median(times), answers)
            worst = max(worst, *times)
        compared = [b for b in routers if b in restricted or not quick]
        # pystun3 after ours (never competing with it for the CPU), from fresh ports.
        results = await asyncio.gather(
            *(asyncio.to_thread(theirs, f"{routers[b]}1", random.randrange(20000, 30000)) for b in compared)
        )
        pystun = dict(zip(compared, results, strict=True))

        print(f"nat_discovery: time to a classification from behind each lab NAT (ours: median of {rounds})")
        print(f"  {'behaviour':22} {'ours':>9}  {'answer':16} {'pystun3':>9}  {'answer':18} ratio")
        ratios: list[float] = []
        for behaviour in routers:
            took, answers = ours[behaviour]
            line = f"  {behaviour.value:22} {took * 1000:7.0f}ms  {'/'.join(sorted(answers)):16}"
            if behaviour not in pystun:
                print(f"{line} {'-':>9}  {'(full run only)':18}")
                continue
            answer, their_time = pystun[behaviour]
            ratio = their_time / took
            if behaviour in restricted:
                ratios.append(ratio)
            print(f"{line} {their_time * 1000:7.0f}ms  {answer:18} {ratio:5.1f}x")
        print(f"  goal: every classification of ours under {GOAL_S} s: {worst * 1000:.0f} ms at most")
        print(
            f"  goal: >= {GOAL_RATIO:.0f}x faster than pystun3 on the restricted types: "
            f"{min(ratios):.1f}x at least"
        )
        if not quick:
            host = f"{routers[NatBehaviour.PORT_RESTRICTED]}1"
            port = int(pystun3.DEFAULTS["source_port"])
            first, _ = await asyncio.to_thread(theirs, host, port)
            second, _ = await asyncio.to_thread(theirs, host, port)
            probe = discovery(host)
            in_a_row = {(await probe.run()).nat_type.value for _ in range(10)}
            print(
                f"  port-restricted with conntrack left over: pystun3 from port {port} twice: "
                f"{first!r} then {second!r}; ours ten times in a row: {', '.join(sorted(in_a_row))}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
