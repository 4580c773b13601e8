"""``bitcraps-node status [--json]``: ask the running node over its control socket (exit 3 when
none runs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from node import paths
from node.cli import control_client
from node.cli.output import EXIT_FAILURE, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE, fail
from node.services import control


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser("status", help="ask the running node how it is")
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    status.add_argument("--runtime-dir", type=Path, help="where the control socket lives")
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    dirs = paths.resolve_dirs(None, args.runtime_dir)
    try:
        reply = control_client.request(dirs.control_socket, "status")
    except control_client.NotRunning as exc:
        return fail(str(exc), EXIT_NOT_RUNNING)
    except control_client.Refused as exc:
        return refused_exit(exc)
    except control.ControlError as exc:
        return fail(str(exc), EXIT_FAILURE)
    if args.json:
        print(json.dumps(reply))
        return EXIT_OK
    print(f"peer id:    {reply['peer_id']}")
    print(f"version:    {reply['version']}")
    print(f"uptime:     {reply['uptime_s']:.0f} s")
    print(f"listen:     {', '.join(reply['listen'])}")
    for name, state in reply["transports"].items():
        print(f"transport:  {name} {state}")
    nat = reply.get("nat") or {}
    result = nat.get("result")
    if result is not None:
        print(
            f"nat:        {result['nat_type']} (mapped {result['mapped_address']}, {nat['age_s']:.0f} s ago)"
        )
    elif nat.get("enabled"):
        print("nat:        discovering" if nat.get("discovering") else "nat:        no STUN server answered")
    tls = reply.get("tcp_tls")
    if tls is not None:
        print(
            f"tcp-tls:    {tls['listen']} trust {tls['trust']}; {tls['connections']} connections,"
            f" {tls['handshakes']} handshakes, {tls['handshake_failures']} failed, {tls['refused']} refused"
        )
    ctl = reply.get("control")
    if ctl is not None:
        print(
            f"control:    {ctl['clients']}/{ctl['max_clients']} clients, {ctl['served']} served,"
            f" {ctl['refused']} refused, {sum(ctl['errors'].values())} bad requests,"
            f" {sum(ctl['faults'].values())} faults"
        )
    return EXIT_OK


def refused_exit(exc: control_client.Refused) -> int:
    """One line per typed error the node answers with, and its exit code."""
    match exc.code:
        case control.ErrorCode.TOO_MANY_CLIENTS:
            return fail(f"the node is busy and still refused after retrying: {exc.detail}", EXIT_FAILURE)
        case control.ErrorCode.UNKNOWN_COMMAND:
            return fail(f"the node does not know this command (an older node?): {exc.detail}", EXIT_USAGE)
        case control.ErrorCode.COMMAND_FAILED | control.ErrorCode.COMMAND_TIMEOUT:
            return fail(f"the node could not answer: {exc.detail}", EXIT_FAILURE)
        case control.ErrorCode.TOO_MANY_STREAMS:  # not for status (no stream), for completeness
            return fail(f"the node is busy: {exc.detail}", EXIT_FAILURE)
        case control.ErrorCode.BAD_REQUEST | control.ErrorCode.REQUEST_TOO_LARGE | control.ErrorCode.TIMEOUT:
            return fail(f"the node rejected this client's request ({exc.code}): {exc.detail}", EXIT_FAILURE)
        case None:
            return fail(
                f"the node answered with an error this version does not know: {exc.detail}", EXIT_FAILURE
            )
