"""``bitcraps-node turn``: allocate a relay on a TURN server, print the relayed address, optionally
exchange datagrams with a peer through it (the peer must echo them), then release it.

Exit codes: 0 success; 2 bad usage; 3 authentication failed; 4 server unreachable (or speaking
no TURN we can use); 5 refused by the server (quota 486, capacity 508, mismatch 437, others);
6 the peer did not answer. Errors are one line on stderr; with ``--json`` stdout carries exactly
one JSON document: ``relayed_address``, ``mapped_address`` (``"IP:PORT"``), ``transport``,
``lifetime_s``, ``server``, and with ``--peer`` also ``sent``, ``received``, ``rtt_ms`` (median).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.cli.output import fail
from node.os_errors import os_reason

if TYPE_CHECKING:
    from node.proto.turn.events import Address
    from node.transports.turn.connection import TurnConnection

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5
EXIT_NO_ANSWER = 6
PROBE_TIMEOUT_S = 1.0
PROBE_ATTEMPTS = 3


def _endpoint(address: Address | None) -> str | None:
    if address is None:
        return None
    ip, port = address
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _peer(text: str) -> Address | None:
    from node.proto.addresses import parse_host_port  # noqa: PLC0415

    parsed = parse_host_port(text)
    if parsed is None:
        return None
    try:
        return ipaddress.ip_address(parsed[0]), parsed[1]
    except ValueError:
        return None  # the relay needs the peer's IP address, not a name


async def _probe(conn: TurnConnection, peer: Address, count: int) -> tuple[int, int, list[float]]:
    """Send ``count`` numbered probes one after another, each retried on silence; RTTs in ms."""
    import asyncio  # noqa: PLC0415
    import os  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    sent = received = 0
    rtts: list[float] = []
    for seq in range(count):
        probe = b"bitcraps-turn-probe" + seq.to_bytes(4, "big") + os.urandom(8)
        for _ in range(PROBE_ATTEMPTS):
            started = loop.time()
            conn.send(peer, probe)
            sent += 1
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    while True:
                        answer = await conn.recv()
                        if answer.peer == peer and answer.data == probe:
                            break
            except TimeoutError:
                continue
            received += 1
            rtts.append((loop.time() - started) * 1000.0)
            break
    return sent, received, rtts


async def _run(args: argparse.Namespace, peer: Address | None) -> tuple[int, dict[str, Any], str]:
    from node.proto.addresses import parse_host_port  # noqa: PLC0415
    from node.proto.turn.credentials import Credentials  # noqa: PLC0415
    from node.proto.turn.errors import TurnTryAlternate  # noqa: PLC0415
    from node.proto.turn.uri import TurnServerAddress, TurnTransport  # noqa: PLC0415
    from node.transports.turn.connection import TurnConnection, tls_context  # noqa: PLC0415

    host, port = parse_host_port(args.server) or ("", 0)
    transport = TurnTransport(args.transport)
    server = TurnServerAddress(host, port, transport)
    context = tls_context(args.ca) if transport is TurnTransport.TLS else None
    credentials = Credentials(args.user, args.password)
    for _ in range(2):  # a 300 Try Alternate is followed once (RFC 8489 §10)
        try:
            async with TurnConnection(server, credentials, ssl_context=context) as conn:
                document: dict[str, Any] = {
                    "server": str(server),
                    "transport": transport.value,
                    "relayed_address": _endpoint(conn.relayed),
                    "mapped_address": _endpoint(conn.mapped),
                    "lifetime_s": conn.lifetime,
                }
                code = EXIT_OK
                if peer is not None:
                    sent, received, rtts = await _probe(conn, peer, args.count)
                    document.update(
                        peer=_endpoint(peer),
                        sent=sent,
                        received=received,
                        rtt_ms=round(statistics.median(rtts), 3) if rtts else None,
                    )
                    if received < args.count:
                        code = EXIT_NO_ANSWER
        except TurnTryAlternate as exc:
            if exc.alternate is None:
                raise
            server = TurnServerAddress(str(exc.alternate[0]), exc.alternate[1], transport)
            continue
        text = "\n".join(f"{key}: {value}" for key, value in document.items())
        return code, document, text
    return EXIT_REFUSED, {}, "redirected twice"


def cmd_turn(args: argparse.Namespace) -> int:
    from node.proto.addresses import parse_host_port  # noqa: PLC0415

    if parse_host_port(args.server) is None:
        return fail(f"--server must be HOST:PORT, got {args.server!r}", EXIT_USAGE)
    peer = None
    if args.peer is not None:
        peer = _peer(args.peer)
        if peer is None:
            return fail(f"--peer must be IP:PORT, got {args.peer!r}", EXIT_USAGE)
    if args.ca is not None and not args.ca.is_file():
        return fail(f"--ca: no such file {args.ca}", EXIT_USAGE)
    if args.count < 1:
        return fail("--count must be at least 1", EXIT_USAGE)
    if not args.timeout > 0:
        return fail("--timeout must be positive", EXIT_USAGE)

    import asyncio  # noqa: PLC0415

    from node.proto.turn.errors import TurnError, TurnFailure  # noqa: PLC0415

    async def bounded() -> tuple[int, dict[str, Any], str]:
        async with asyncio.timeout(args.timeout):
            return await _run(args, peer)

    try:
        code, document, text = asyncio.run(bounded())
    except TimeoutError:
        return fail(f"turn {args.server}: no answer within {args.timeout:g} s", EXIT_UNREACHABLE)
    except TurnError as exc:
        exit_code = {
            TurnFailure.AUTH: EXIT_AUTH,
            TurnFailure.REFUSED: EXIT_REFUSED,
            TurnFailure.TRY_ALTERNATE: EXIT_REFUSED,
        }.get(exc.reason, EXIT_UNREACHABLE)
        return fail(f"turn {args.server}: {exc}", exit_code)
    except OSError as exc:
        return fail(f"turn {args.server}: {os_reason(exc)}", EXIT_UNREACHABLE)
    if code == EXIT_REFUSED:
        return fail(f"turn {args.server}: {text}", code)
    print(json.dumps(document) if args.json else text)
    if code == EXIT_NO_ANSWER:
        return fail(f"peer {args.peer} answered {document['received']} of {args.count} probes", code)
    return code


def register(subparsers: Any) -> None:
    turn = subparsers.add_parser(
        "turn", help="allocate a TURN relay, print its address, optionally talk to a peer through it"
    )
    turn.add_argument("--server", required=True, help="TURN server HOST:PORT")
    turn.add_argument("--user", required=True)
    turn.add_argument("--password", required=True)
    turn.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp")
    turn.add_argument("--ca", type=Path, help="CA certificates that sign the server's (TLS)")
    turn.add_argument("--peer", help="IP:PORT of a peer that echoes datagrams")
    turn.add_argument("--count", type=int, default=5, help="probes to send to the peer (default 5)")
    turn.add_argument(
        "--timeout", type=float, default=60.0, help="give up on the whole exchange after this (s)"
    )
    turn.add_argument("--json", action="store_true", help="one JSON document on stdout")
    turn.set_defaults(func=cmd_turn)
