"""``bitcraps-node run``: the daemon on uvloop until SIGTERM/SIGINT (exit 0), 2 for any problem an
operator must fix (config, files it names, state or runtime directory, identity key), 1 for a
failure at run time."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from node import config as configuration
from node import paths
from node.cli.output import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, fail
from node.errors import NodeError, SettingsError

log = logging.getLogger("node.cli")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser("run", help="run the node (on embedded defaults without a config)")
    run.add_argument(
        "--config", type=Path, help=f"TOML config (default {configuration.DEFAULT_CONFIG_PATH} if present)"
    )
    run.add_argument("--state-dir", type=Path, help="where the identity key lives")
    run.add_argument("--runtime-dir", type=Path, help="where the control socket lives")
    run.set_defaults(func=cmd_run)


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
        cfg = configuration.load_effective(args.config)
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
