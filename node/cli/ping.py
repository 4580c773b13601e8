"""``bitcraps-node ping PEER_ADDR``: prove both identities over TCP-TLS or UDP, time round trips.

``udp://HOST:PORT`` runs the datagram secure session's handshake (node.cli.ping_udp);
``tls://HOST:PORT`` or a bare ``HOST:PORT`` connects over TCP-TLS. Uses this node's identity
(``--state-dir``) and trust settings (``--config``: ``[trust]``), so it shows exactly what the
daemon would accept. Prints the peer id the peer proved and the RTT.

Exit codes: 0 answered, 1 the connection or the identity check failed (the typed reason on
stderr, e.g. ``auth_failed (unknown_ca)``, ``peer_mismatch``, ``connect_timeout``), 2 bad usage or
configuration. With ``--json`` stdout carries exactly one JSON document: ``peer_id``, ``address``,
``transport`` (``udp`` or ``tcp_tls``), ``trust``, ``rtt_ms`` (list), ``rtt_ms_min``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from node.cli.output import fail
from node.os_errors import os_reason

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_SCHEMES = ("udp", "tls")


def cmd_ping(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - the network stack only for this command
    import ipaddress  # noqa: PLC0415
    import socket  # noqa: PLC0415

    from node import config as configuration  # noqa: PLC0415
    from node import paths  # noqa: PLC0415
    from node.cli.ping_udp import ping_udp  # noqa: PLC0415
    from node.errors import NodeError  # noqa: PLC0415
    from node.proto.addresses import parse_host_port  # noqa: PLC0415
    from node.proto.vocabulary import IpEndpoint  # noqa: PLC0415
    from node.security import keystore  # noqa: PLC0415
    from node.security.trust import TrustConfigError  # noqa: PLC0415
    from node.transports.base import TransportError  # noqa: PLC0415
    from node.transports.tcp_tls.link import TlsPeerError  # noqa: PLC0415

    scheme, sep, rest = args.address.partition("://")
    if not sep:
        scheme, rest = "tls", args.address
    hostport = parse_host_port(rest) if scheme in _SCHEMES else None
    if hostport is None:
        return fail(f"{args.address!r}: expected [udp:// or tls://]HOST:PORT or [IPv6]:PORT", EXIT_USAGE)
    udp = scheme == "udp"
    try:
        cfg = configuration.load_effective(args.config)
    except configuration.ConfigError as exc:
        return fail(f"config error: {exc}", EXIT_USAGE)
    try:
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        info = socket.getaddrinfo(hostport[0], hostport[1], type=kind)
    except OSError as exc:
        return fail(f"{hostport[0]}: {os_reason(exc)}", EXIT_FAILED)
    endpoint = IpEndpoint(ipaddress.ip_address(str(info[0][4][0]).split("%", 1)[0]), hostport[1])
    dirs = paths.resolve_dirs(args.state_dir, None)
    try:
        ident, _ = keystore.load_or_create(dirs.state)
        if udp:
            result = asyncio.run(ping_udp(cfg, ident, endpoint, args.peer, args.count))
        else:
            result = asyncio.run(_ping(cfg, ident, dirs.state / keystore.KEY_FILE_NAME, endpoint, args))
    except TrustConfigError as exc:
        return fail(f"trust settings: {exc}", EXIT_USAGE)
    except TlsPeerError as exc:
        why = exc.reason.value + ("" if exc.trust is None else f" ({exc.trust.value})")
        return fail(f"{endpoint}: {why}: {exc.detail}", EXIT_FAILED)
    except TransportError as exc:  # UDP: the reason enum's value, then what failed
        return fail(f"{scheme}://{endpoint}: {exc}", EXIT_FAILED)
    except NodeError as exc:
        return fail(f"{endpoint}: {exc}", EXIT_FAILED)
    rtts = result["rtt_ms"]
    if args.json:
        print(json.dumps(result))
    else:
        where = f"udp://{endpoint}" if udp else str(endpoint)
        print(f"peer {result['peer_id']} at {where}: rtt {' '.join(f'{r:.3f}' for r in rtts)} ms")
    return EXIT_OK


async def _ping(
    cfg: Any, ident: Any, key_file: Path, endpoint: Any, args: argparse.Namespace
) -> dict[str, Any]:
    from node.services.tcp_tls import build_transport  # noqa: PLC0415

    async with build_transport(cfg, ident, key_file, listen=False) as transport:
        peer = await transport.dial(endpoint, args.peer)
        rtts = [await transport.ping(peer) * 1000 for _ in range(args.count)]
        return {
            "peer_id": peer,
            "address": str(endpoint),
            "transport": "tcp_tls",
            "trust": transport.creds.policy.mode.value,
            "rtt_ms": [round(r, 3) for r in rtts],
            "rtt_ms_min": round(min(rtts), 3),
        }


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"count must be 1..1000, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ping = subparsers.add_parser(
        "ping", help="TCP-TLS or UDP to a peer: the peer id it proves and the round trip"
    )
    ping.add_argument(
        "address",
        metavar="PEER_ADDR",
        help="udp://HOST:PORT (the peer's UDP port), or tls://HOST:PORT or HOST:PORT (its TCP-TLS listener)",
    )
    ping.add_argument("--peer", help="the peer id expected there (refused if another peer answers)")
    ping.add_argument("--count", type=_count, default=1, help="round trips to time (default 1)")
    ping.add_argument("--config", type=Path, help="TOML config for the trust settings ([trust])")
    ping.add_argument("--state-dir", type=Path, help="where this node's identity key lives")
    ping.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ping.set_defaults(func=cmd_ping)
