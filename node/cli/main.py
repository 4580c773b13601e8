"""``bitcraps-node``: run the daemon, query it, check its config, manage identities, drive the NAT lab.

Exit codes: 0 success, 1 the node failed at run time (or refused a request), 2 bad usage or
configuration (``run`` exits 2 for every configuration problem it finds at start, in the file or
in a file it names (node.errors.SettingsError), and for an unsafe or unusable state or runtime
directory or identity key: an operator must act, and the systemd unit does not restart on 2, so
a bad deployment does not loop; for ``nat``, no STUN server answered; for ``status``, a node
that does not know the command; for the application commands, bad arguments), 3 no node is
running (``status``, ``connect``, ``send``, ``listen``, ``peers``), 141 the reader of stdout
went away. stdout carries only a command's result (exactly one JSON document with ``--json``);
logs and errors go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import node
from netlink.lab.cli import register as register_lab
from node import logs
from node.cli import (
    ble,
    config,
    connect,
    disconnect,
    identity,
    listen,
    nat,
    peers,
    ping,
    run,
    send,
    status,
    turn,
)

# What a shell reports for a command killed by SIGPIPE (128 + 13), as `yes | true` is: the reader
# of our stdout went away, which only `set -o pipefail` turns into the pipeline's failure.
EXIT_BROKEN_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitcraps-node", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bitcraps-node {node.__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (run, status, config, identity, turn):
        command.register(sub)
    register_lab(sub)
    for command in (nat, ping, connect, disconnect, send, listen, peers, ble):
        command.register(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parse_args``, except that a command naming ``late_positional`` (``send``'s TEXT,
    ``connect``'s URIs) also takes that positional after options: argparse fills every
    positional from the first run of them (``send PEER --priority high TEXT`` would leave TEXT
    over, bpo-14191), and ``parse_intermixed_args`` does not work with subcommands."""
    args, extra = parser.parse_known_args(argv)
    name = getattr(args, "late_positional", None)
    if extra and name is not None and not any(e.startswith("-") and e != "-" for e in extra):
        current = getattr(args, name)
        if isinstance(current, list):
            setattr(args, name, [*current, *extra])
            return args
        if current is None and len(extra) == 1:
            setattr(args, name, extra[0])
            return args
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            args = parse(build_parser(), argv)
            logs.setup(args.log_level)
            code: int = args.func(args)
        finally:
            # Here, not at the interpreter's exit where a broken pipe can no longer be caught; also
            # when argparse exits after printing --help or --version.
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader of stdout went away (`status --json | head -c1`): end quietly like a Unix
        # tool. stdout now points at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
