"""``bitcraps-node nat [--stun HOST:PORT ...] [--json]``: one NAT behaviour discovery.

Servers come from ``--stun`` (repeatable) or else from the config's ``stun.servers``; timing from
the config's ``[stun]`` section. stdout carries only the result: lines for a person, or with
``--json`` exactly one JSON document (keys in ``NatReport.to_json``). Exit codes: 0 a
classification was made (udp-blocked included), 2 bad usage or configuration, or no server
answered at all (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from node import config as configuration
from node.cli.output import fail
from node.proto.addresses import parse_host_port

if TYPE_CHECKING:
    from node.proto.natprobe.types import NatReport

EXIT_OK = 0
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nat = subparsers.add_parser("nat", help="discover the NAT (and firewall) in front of this host")
    nat.add_argument(
        "--stun",
        action="append",
        metavar="HOST:PORT",
        help="a STUN server (repeat for several; default: the config's stun.servers)",
    )
    nat.add_argument("--json", action="store_true", help="one JSON document on stdout")
    nat.add_argument(
        "--hairpin",
        action="store_true",
        help="also test hairpinning (RFC 5780 §4.5; shown in the text output, not in --json)",
    )
    nat.add_argument("--config", type=Path, help="TOML config for timing and default servers")
    nat.set_defaults(func=cmd_nat)


def cmd_nat(args: argparse.Namespace) -> int:
    try:
        cfg = configuration.load_effective(args.config)
    except configuration.ConfigError as exc:
        return fail(f"config error: {exc}", EXIT_USAGE)
    servers = tuple(args.stun) if args.stun else cfg.stun.servers
    if not servers:
        return fail("no STUN server: give --stun HOST:PORT or set stun.servers in the config", EXIT_USAGE)
    for server in servers:
        if parse_host_port(server) is None:
            return fail(f"--stun {server!r}: must be 'host:port' or '[ipv6]:port'", EXIT_USAGE)
    # Imported here: the other commands must start fast without asyncio and the probe.
    import asyncio  # noqa: PLC0415

    from node.errors import NodeError  # noqa: PLC0415
    from node.services.nat import probe_timing  # noqa: PLC0415
    from node.transports.nat.discovery import NatDiscovery  # noqa: PLC0415

    timing = probe_timing(cfg.stun, hairpin=args.hairpin)
    discovery = NatDiscovery(servers, timing, cfg.breaker.new_breaker)
    try:
        report = asyncio.run(discovery.run())
    except NodeError as exc:
        return fail(str(exc), EXIT_USAGE)
    if not report.answered:
        outcomes = ", ".join(f"{s.server} {s.outcome.value}" for s in report.servers)
        return fail(f"no STUN server answered ({outcomes})", EXIT_USAGE)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        sys.stdout.write(describe(report))
    return EXIT_OK


def describe(report: NatReport) -> str:
    """The report for a person, one fact a line."""
    from node.proto.natprobe.types import format_endpoint  # noqa: PLC0415

    def value(item: object) -> str:
        return "unknown" if item is None else str(getattr(item, "value", item))

    allocation = value(report.port_allocation)
    if report.port_delta is not None:
        allocation += f" (delta {report.port_delta})"
    mapped = "none" if report.mapped_address is None else format_endpoint(report.mapped_address)
    lines = [
        f"NAT type:         {report.nat_type.value}",
        f"mapping:          {value(report.mapping)}",
        f"filtering:        {value(report.filtering)}",
        f"port allocation:  {allocation}",
        f"mapped address:   {mapped}",
        f"consistent:       {'yes' if report.consistent else 'no'}",
    ]
    if report.hairpinning is not None:
        lines.append(f"hairpinning:      {'yes' if report.hairpinning else 'no'}")
    for server in report.servers:
        rtt = "" if server.rtt is None else f", rtt {server.rtt * 1000:.1f} ms"
        rfc = ", RFC 5780" if server.rfc5780 else ""
        lines.append(f"server:           {server.server} {server.outcome.value}{rfc}{rtt}")
    lines.append(f"elapsed:          {report.elapsed * 1000:.0f} ms")
    return "\n".join(lines) + "\n"
