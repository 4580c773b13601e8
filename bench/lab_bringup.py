"""Median time to bring the full NAT lab up and down, coturn answering.

Full lab: bridge, server, routers A (port-restricted) and B (symmetric) with a host each,
coturn started and answering STUN on UDP and accepting TCP and TLS. Measured in-process
(``Lab.up`` + ``Lab.down``) and through the CLI (``lab up`` + ``lab down`` as processes).
Reference: the shell scripts that verified the design did it in 0.24 s on this machine.

    python bench/lab_bringup.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHELL_REFERENCE_S = 0.24


def in_process(rounds: int) -> tuple[list[float], list[float]]:
    from netlink.lab.builder import Lab
    from netlink.lab.nat import NatBehaviour
    from netlink.lab.topology import plan

    nats = (("A", NatBehaviour.PORT_RESTRICTED), ("B", NatBehaviour.SYMMETRIC))
    ups: list[float] = []
    downs: list[float] = []
    Lab.up(plan(nats)).down()  # warm-up: imports, page cache
    for _ in range(rounds):
        t0 = time.perf_counter()
        lab = Lab.up(plan(nats))
        t1 = time.perf_counter()
        lab.down()
        t2 = time.perf_counter()
        ups.append(t1 - t0)
        downs.append(t2 - t1)
    return ups, downs


def cli_entries() -> list[tuple[list[str], str]]:
    """``python -m netlink.lab.cli``, and ``bitcraps-node`` once the node's CLI has ``lab``."""
    entries = [([sys.executable, "-m", "netlink.lab.cli"], "python -m netlink.lab.cli")]
    exe = shutil.which("bitcraps-node", path=str(Path(sys.executable).parent))
    if exe is not None:
        probe = subprocess.run([exe, "lab", "--help"], capture_output=True, check=False)
        if probe.returncode == 0:
            entries.append(([exe], "bitcraps-node"))
    return entries


def via_cli(entry: list[str], rounds: int) -> tuple[list[float], list[float]]:
    ups: list[float] = []
    downs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bcl-bench-") as tmp:
        state = str(Path(tmp) / "lab.json")

        def lab(verb: str) -> None:
            subprocess.run(
                [*entry, "lab", verb, "--state-file", state],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=REPO,
            )

        for _ in range(rounds + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            lab("up")
            t1 = time.perf_counter()
            lab("down")
            t2 = time.perf_counter()
            ups.append(t1 - t0)
            downs.append(t2 - t1)
    return ups[1:], downs[1:]


def _line(label: str, ups: list[float], downs: list[float]) -> str:
    total = statistics.median(u + d for u, d in zip(ups, downs, strict=True))
    return (
        f"{label:40} up+down median {total * 1000:7.1f} ms "
        f"(up {statistics.median(ups) * 1000:6.1f}, down {statistics.median(downs) * 1000:5.1f}; "
        f"n={len(ups)})  vs shell scripts {SHELL_REFERENCE_S * 1000:.0f} ms: "
        f"{total / SHELL_REFERENCE_S:.2f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI, < 60 s)")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()

    from netlink.lab.builder import missing_prerequisites

    missing = missing_prerequisites()
    if missing:
        names = ", ".join(p.value for p in missing)
        print(f"lab_bringup: skipped, the NAT lab needs {names}")
        return 0
    rounds = args.rounds or (7 if args.quick else 25)
    ups, downs = in_process(rounds)
    print(_line("lab_bringup in-process (Lab.up/down)", ups, downs))
    for entry, name in cli_entries():
        cups, cdowns = via_cli(entry, max(3, rounds // 2))
        print(_line(f"lab_bringup CLI ({name})", cups, cdowns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
