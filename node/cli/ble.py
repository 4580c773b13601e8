"""``bitcraps-node ble scan [--seconds S] [--json] [--config FILE]``: the nodes advertising our
GATT service nearby, like ``bluetoothctl scan on`` but only ours.

It talks to BlueZ itself over the system D-Bus (not to the daemon, which may not run): the
process's ``ObjectCache`` and the node's ``NodeScanner`` (filtered on the service UUID) on
``[ble] adapter`` of the config (empty: bluetoothd's first adapter), for ``--seconds``. stdout
carries a table, or with ``--json`` exactly one document ``{"nodes": [{"address", "rssi",
"peer_id_prefix"}]}`` (the prefix in hex, null when the advertisement carries none). Exit 1
with one line on stderr when there is no system bus, no bluetoothd on it, or no such adapter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node import config as configuration
from node.cli.output import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, fail

if TYPE_CHECKING:
    from bluez.scanner import FoundNode

DEFAULT_SECONDS = 5.0
START_TIMEOUT = 10.0  # bluetoothd answers StartDiscovery in milliseconds; this bounds a stuck one


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ble = subparsers.add_parser("ble", help="BLE tools that talk to BlueZ directly")
    sub = ble.add_subparsers(dest="ble_command", required=True, metavar="ACTION")
    scan = sub.add_parser("scan", help="list nearby nodes (only those advertising our service)")
    scan.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="how long to listen")
    scan.add_argument("--json", action="store_true", help="one JSON document on stdout")
    scan.add_argument("--config", type=Path, help="TOML config whose [ble] adapter is used")
    scan.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    try:
        cfg = configuration.load_effective(args.config)
    except configuration.ConfigError as exc:
        return fail(f"config error: {exc}", EXIT_USAGE)
    if not args.seconds > 0:
        return fail(f"--seconds {args.seconds}: must be more than 0", EXIT_USAGE)
    # Imported here: the other commands must start fast without asyncio, dbus-fast and bleak.
    import asyncio  # noqa: PLC0415

    from bluez.errors import BluezError  # noqa: PLC0415

    try:
        nodes = asyncio.run(scan(cfg.ble.adapter or None, args.seconds))
    except BluezError as error:
        return fail(f"ble scan: {error}", EXIT_FAILURE)
    except TimeoutError:
        return fail(f"ble scan: discovery did not start within {START_TIMEOUT:g} s", EXIT_FAILURE)
    rows = [_row(node) for node in sorted(nodes, key=lambda n: n.address)]
    if args.json:
        print(json.dumps({"nodes": rows}))
    else:
        sys.stdout.write(describe(rows))
    return EXIT_OK


async def scan(adapter: str | None, seconds: float) -> list[FoundNode]:
    """Every node heard on ``adapter`` within ``seconds`` (its last report each). Raises
    BluezUnavailable (no bus, no bluetoothd, no adapter) or TimeoutError (discovery never ran)."""
    import asyncio  # noqa: PLC0415

    from bluez.objects import ObjectCache  # noqa: PLC0415
    from bluez.scanner import NodeScanner  # noqa: PLC0415

    found: dict[str, FoundNode] = {}
    async with ObjectCache() as cache:
        name = cache.adapter(adapter).name  # raises the typed reason BlueZ is not usable
        async with NodeScanner(cache, name, lambda node: found.__setitem__(node.address, node)) as scanner:
            async with asyncio.timeout(START_TIMEOUT):
                await scanner.scanning.wait()
            await asyncio.sleep(seconds)
    return list(found.values())


def _row(node: FoundNode) -> dict[str, Any]:
    prefix = node.peer_id_prefix
    return {
        "address": node.address,
        "rssi": node.rssi,
        "peer_id_prefix": None if prefix is None else prefix.hex(),
    }


def describe(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no nodes heard\n"
    lines = [f"{'ADDRESS':<17}  {'RSSI':>4}  PEER ID PREFIX"]
    for row in rows:
        rssi = "?" if row["rssi"] is None else str(row["rssi"])
        lines.append(f"{row['address']:<17}  {rssi:>4}  {row['peer_id_prefix'] or '-'}")
    return "\n".join(lines) + "\n"
