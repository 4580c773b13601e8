"""``bitcraps-node lab up|status|down``: a NAT lab for people, left running between commands;
``lab matrix`` connects nodes across every pair of NAT behaviours (netlink.lab.matrix_cli).

``up`` builds the lab, starts coturn detached, writes a state file and prints how to enter each
host; ``status`` reads the state file and checks what is still there; ``down`` tears down
everything the state file names. Logs go to stderr; stdout carries only the result, and with
``--json`` exactly one JSON document. Exit codes: 0 ok, 1 failed (or no lab), 2 refused (not
root, permission denied on the lab's files, or bad arguments). Every failure is one line on
stderr, never a traceback: the commands raise typed ``LabError``s and :func:`_guarded` reports them.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netlink.lab import builder, matrix_cli, netns, procs, state, teardown
from netlink.lab.errors import LabError, LabPrerequisiteError, LabStateError, Prerequisite, StateFailure
from netlink.lab.nat import NatBehaviour
from netlink.lab.summary import LabSummary
from netlink.lab.topology import plan

log = logging.getLogger("netlink.lab.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
DEFAULT_NATS = ("A=port-restricted", "B=symmetric")
BEHAVIOURS = ", ".join(b.value for b in NatBehaviour)


def _nat_arg(text: str) -> tuple[str, NatBehaviour]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected ROUTER=BEHAVIOUR, got {text!r}")
    try:
        return name, NatBehaviour(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown NAT behaviour {value!r} ({BEHAVIOURS})") from None


Command = Callable[[argparse.Namespace], int]


def exit_code(exc: LabError) -> int:
    """Refused (2) when the machine or the user lacks the right (root); else failed (1)."""
    if isinstance(exc, LabPrerequisiteError) and Prerequisite.ROOT in exc.missing:
        return EXIT_REFUSED
    if isinstance(exc, LabStateError) and exc.failure is StateFailure.PERMISSION:
        return EXIT_REFUSED
    return EXIT_FAILED


def _guarded(command: Command) -> Command:
    """Run ``command``; a LabError becomes one line on stderr and its exit code."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except LabError as exc:
            hint = ""
            if exit_code(exc) == EXIT_REFUSED and os.geteuid() != 0:
                hint = "; run as root"
            sys.stderr.write(f"bitcraps-node lab {args.lab_command}: {exc}{hint}\n")
            return exit_code(exc)

    return run


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help=f"where the running lab is recorded (default {state.default_state_file()})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lab`` with ``up``/``status``/``down`` to a CLI's subcommands."""
    lab = subparsers.add_parser("lab", help="a NAT lab in network namespaces (root)", description=__doc__)
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    up = sub.add_parser("up", help="build the lab and leave it running")
    _add_common(up)
    up.add_argument(
        "--nat",
        action="append",
        type=_nat_arg,
        metavar="ROUTER=BEHAVIOUR",
        help=f"a router (one capital letter) and its NAT: {BEHAVIOURS}; repeat "
        f"(default: {' '.join(DEFAULT_NATS)})",
    )
    up.add_argument("--hosts", type=int, default=1, help="hosts behind each router (default 1)")
    up.add_argument("--open-hosts", type=int, default=0, help="hosts with a public address, no NAT")
    up.add_argument("--no-coturn", action="store_true", help="do not start coturn")
    up.set_defaults(func=_guarded(cmd_up))

    status = sub.add_parser("status", help="show the running lab")
    _add_common(status)
    status.set_defaults(func=_guarded(cmd_status))

    down = sub.add_parser("down", help="remove the running lab (processes, namespaces, files)")
    _add_common(down)
    down.set_defaults(func=_guarded(cmd_down))

    matrix = matrix_cli.add_parser(sub)
    matrix.set_defaults(func=_guarded(_rooted(matrix_cli.cmd_matrix)))


def _rooted(command: Command) -> Command:
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        refused = _refuse_unless_root(args)
        return refused if refused is not None else command(args)

    return run


def _state_path(args: argparse.Namespace) -> Path:
    path: Path | None = args.state_file
    return path if path is not None else state.default_state_file()


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    else:
        sys.stdout.write(text)
    sys.stdout.flush()


def _refuse_unless_root(args: argparse.Namespace) -> int | None:
    if os.geteuid() != 0:
        sys.stderr.write(
            f"bitcraps-node lab {args.lab_command}: refused, must run as root "
            "(network namespaces, nftables and coturn need it); exit 2\n"
        )
        return EXIT_REFUSED
    return None


def _liveness(record: state.LabRecord) -> dict[str, Any]:
    namespaces = {name: netns.exists(name) for name in record.namespaces}
    processes = {f"{p.name}:{p.pid}": procs.process_alive(p) for p in record.processes}
    return {
        "up": all(namespaces.values()) and all(processes.values()),
        "namespaces": namespaces,
        "processes": processes,
    }


def _describe_text(summary: LabSummary) -> str:
    server = summary.server
    lines = [
        f"lab {summary.prefix}",
        f"  server  {server.netns}  {server.primary} {server.secondary}  stranger {server.stranger}",
    ]
    for router in summary.routers:
        lines.append(
            f"  router {router.name}  {router.netns}  {router.nat.value}  WAN {router.wan}  LAN {router.lan}"
        )
    turn = summary.coturn
    if turn is not None:
        lines.append(
            f"  coturn  udp/tcp {turn.primary}:{turn.port}  tls {turn.primary}:{turn.tls_port}  "
            f"alt {turn.secondary}:{turn.alt_port}  "
            f"user {turn.username} password {turn.password} realm {turn.realm}"
        )
    lines.append("enter a host:")
    for host in summary.hosts:
        lines.append(f"  {host.name:4} {host.address!s:15} {host.enter}")
    return "\n".join(lines) + "\n"


def cmd_up(args: argparse.Namespace) -> int:
    refused = _refuse_unless_root(args)
    if refused is not None:
        return refused
    path = _state_path(args)
    try:
        old = state.load(path)
    except LabStateError as exc:
        if exc.failure is not StateFailure.MISSING:
            raise
    else:
        if any(netns.exists(n) for n in old.namespaces):
            sys.stderr.write(
                f"bitcraps-node lab up: a lab ({old.prefix}) is already up per {path}; run `lab down` first\n"
            )
            return EXIT_FAILED
        log.warning("removing stale state of lab %s", old.prefix)
        teardown.remove(old)
        _unlink(path)
    for prefix in teardown.reap_stale():
        log.warning("removed lab %s left by a process that died", prefix)
    nats = args.nat or [_nat_arg(n) for n in DEFAULT_NATS]
    topology = plan(nats, hosts_per_router=args.hosts, open_hosts=args.open_hosts)
    lab = builder.Lab.up(topology, with_coturn=not args.no_coturn)
    record = lab.release()
    try:
        state.save(path, record)
    except LabStateError as exc:
        teardown.remove(record)
        sys.stderr.write(f"bitcraps-node lab up: {exc}; lab {record.prefix} removed again\n")
        return exit_code(exc)
    log.info("lab %s up; state in %s", record.prefix, path)
    doc = record.summary.to_json()
    doc["state_file"] = str(path)
    _emit(args, doc, _describe_text(record.summary) + f"state: {path}\n")
    return EXIT_OK


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise state.os_error(exc, path) from exc


def _load_or_report(args: argparse.Namespace, path: Path) -> state.LabRecord | None:
    """The lab in the state file; None (reported) when there is none. Raises LabStateError."""
    try:
        return state.load(path)
    except LabStateError as exc:
        _emit(args, {"up": False, "state_file": str(path)}, "")
        if exc.failure is not StateFailure.MISSING:
            raise
        sys.stderr.write(f"bitcraps-node lab {args.lab_command}: no lab is up ({path})\n")
        return None


def cmd_status(args: argparse.Namespace) -> int:
    path = _state_path(args)
    record = _load_or_report(args, path)
    if record is None:
        return EXIT_FAILED
    live = _liveness(record)
    doc = record.summary.to_json()
    doc.update(live)
    doc["state_file"] = str(path)
    gone = [n for n, ok in live["namespaces"].items() if not ok]
    gone += [p for p, ok in live["processes"].items() if not ok]
    health = "up" if live["up"] else f"DEGRADED, missing: {' '.join(gone)}"
    _emit(args, doc, _describe_text(record.summary) + f"status: {health}\n")
    return EXIT_OK if live["up"] else EXIT_FAILED


def cmd_down(args: argparse.Namespace) -> int:
    refused = _refuse_unless_root(args)
    if refused is not None:
        return refused
    path = _state_path(args)
    record = _load_or_report(args, path)
    if record is None:
        return EXIT_FAILED
    teardown.remove(record)
    _unlink(path)
    log.info("lab %s removed", record.prefix)
    _emit(args, {"down": True, "prefix": record.prefix}, f"lab {record.prefix} removed\n")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m netlink.lab.cli lab up ...`` (the same commands without the node's CLI)."""
    parser = argparse.ArgumentParser(prog="python -m netlink.lab.cli")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
