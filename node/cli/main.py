"""``bitcraps-node``: run the daemon, query it, check its config, manage identities, drive the NAT lab.

Exit codes: 0 success, 1 the node failed at run time (or refused a request), 2 bad usage or
configuration (``run`` exits 2 for every configuration problem it finds at start, in the file or
in a file it names (node.errors.SettingsError), and for an unsafe or unusable state or runtime
directory or identity key: an operator must act, and the systemd unit does not restart on 2, so
a bad deployment does not loop; for ``nat``, no STUN server answered; for ``status``, a node
that does not know the command), 3 no node is running (``status``), 141 the reader of stdout
went away. stdout carries only a command's result (exactly one JSON document with ``--json``);
logs and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import node
from netlink.lab.cli import register as register_lab
from node import config as configuration
from node import logs, paths
from node.cli import control_client
from node.cli.identity import register as register_identity
from node.cli.nat import register as register_nat
from node.cli.output import fail
from node.cli.ping import register as register_ping
from node.cli.turn import register as register_turn
from node.errors import NodeError, SettingsError
from node.services import control

log = logging.getLogger("node.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
# What a shell reports for a command killed by SIGPIPE (128 + 13), as `yes | true` is: the reader
# of our stdout went away, which only `set -o pipefail` turns into the pipeline's failure.
EXIT_BROKEN_PIPE = 141


def _load_config(path: Path | None) -> configuration.Config:
    return configuration.load_effective(path)


def _run_daemon(cfg: configuration.Config, dirs: paths.NodeDirs) -> int:
    # Imported here, not at the top: status, config and lab must start fast, and only `run`
    # needs asyncio, the daemon, the STUN codec and cryptography.
    import asyncio  # noqa: PLC0415

    from node.security import keystore  # noqa: PLC0415
    from node.services.daemon import serve  # noqa: PLC0415
    from node.services.systemd import Notifier  # noqa: PLC0415

    try:
        ident, created = keystore.load_or_create(dirs.state)
    except NodeError as exc:
        # The directory, the key file or the key is unsafe or unusable: only an operator can fix
        # it, so exit 2, which the unit does not restart on (RestartPreventExitStatus=2).
        return fail(str(exc), EXIT_USAGE)
    log.info("%s identity %s (key in %s)", "created" if created else "loaded", ident.peer_id, dirs.state)
    main = serve(cfg, dirs, ident, Notifier())
    try:
        import uvloop  # noqa: PLC0415 - optional at run time: fall back to asyncio with a warning
    except ImportError:
        log.warning("uvloop is not installed; running on the default asyncio loop")
        asyncio.run(main)
        return EXIT_OK
    uvloop.run(main)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = _load_config(args.config)
    except configuration.ConfigError as exc:
        return fail(f"config error: {exc}", EXIT_USAGE)
    dirs = paths.resolve_dirs(args.state_dir, args.runtime_dir)
    try:
        return _run_daemon(cfg, dirs)
    except paths.DirectoryError as exc:  # the runtime directory: as the state directory, exit 2
        return fail(str(exc), EXIT_USAGE)
    except SettingsError as exc:
        return fail(f"config error: {exc}", EXIT_USAGE)
    except NodeError as exc:
        return fail(str(exc), EXIT_FAILURE)


def cmd_status(args: argparse.Namespace) -> int:
    dirs = paths.resolve_dirs(None, args.runtime_dir)
    try:
        reply = control_client.request(dirs.control_socket, "status")
    except control_client.NotRunning as exc:
        return fail(str(exc), EXIT_NOT_RUNNING)
    except control_client.Refused as exc:
        return _refused(exc)
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


def _refused(exc: control_client.Refused) -> int:
    """One line per typed error the node answers with, and its exit code."""
    match exc.code:
        case control.ErrorCode.TOO_MANY_CLIENTS:
            return fail(f"the node is busy and still refused after retrying: {exc.detail}", EXIT_FAILURE)
        case control.ErrorCode.UNKNOWN_COMMAND:
            return fail(f"the node does not know this command (an older node?): {exc.detail}", EXIT_USAGE)
        case control.ErrorCode.COMMAND_FAILED:
            return fail(f"the node could not answer: {exc.detail}", EXIT_FAILURE)
        case control.ErrorCode.BAD_REQUEST | control.ErrorCode.REQUEST_TOO_LARGE | control.ErrorCode.TIMEOUT:
            return fail(f"the node rejected this client's request ({exc.code}): {exc.detail}", EXIT_FAILURE)
        case None:
            return fail(
                f"the node answered with an error this version does not know: {exc.detail}", EXIT_FAILURE
            )


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        configuration.load(args.path)
    except configuration.ConfigError as exc:
        return fail(f"{args.path}: {exc}", EXIT_USAGE)
    print(f"{args.path}: ok")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    try:
        cfg = _load_config(args.config)
    except configuration.ConfigError as exc:
        return fail(f"config error: {exc}", EXIT_USAGE)
    if args.json:
        print(json.dumps(configuration.to_dict(cfg, redact=not args.show_secrets)))
    else:
        sys.stdout.write(configuration.to_toml(cfg, redact=not args.show_secrets))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitcraps-node", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bitcraps-node {node.__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the node (on embedded defaults without a config)")
    run.add_argument(
        "--config", type=Path, help=f"TOML config (default {configuration.DEFAULT_CONFIG_PATH} if present)"
    )
    run.add_argument("--state-dir", type=Path, help="where the identity key lives")
    run.add_argument("--runtime-dir", type=Path, help="where the control socket lives")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="ask the running node how it is")
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    status.add_argument("--runtime-dir", type=Path, help="where the control socket lives")
    status.set_defaults(func=cmd_status)

    cfg = sub.add_parser("config", help="check or show configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser("check", help="validate a config file")
    check.add_argument("path", type=Path)
    check.set_defaults(func=cmd_config_check)
    show = cfg_sub.add_parser("show", help="print the effective configuration")
    show.add_argument("--config", type=Path)
    show.add_argument("--json", action="store_true")
    show.add_argument("--show-secrets", action="store_true", help="print passwords and shared secrets")
    show.set_defaults(func=cmd_config_show)

    register_identity(sub)
    register_turn(sub)
    register_lab(sub)
    register_nat(sub)
    register_ping(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
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
