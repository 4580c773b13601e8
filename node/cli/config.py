"""``bitcraps-node config check PATH`` (exit 2 and one line naming the key when invalid) and
``config show [--config PATH] [--json]`` (the effective config, every key documented)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node import config as configuration
from node.cli.output import EXIT_OK, EXIT_USAGE, fail


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cfg = subparsers.add_parser("config", help="check or show configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser("check", help="validate a config file")
    check.add_argument("path", type=Path)
    check.set_defaults(func=cmd_config_check)
    show = cfg_sub.add_parser("show", help="print the effective configuration")
    show.add_argument("--config", type=Path)
    show.add_argument("--json", action="store_true")
    show.add_argument("--show-secrets", action="store_true", help="print passwords and shared secrets")
    show.set_defaults(func=cmd_config_show)


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        configuration.load(args.path)
    except configuration.ConfigError as exc:
        return fail(f"{args.path}: {exc}", EXIT_USAGE)
    print(f"{args.path}: ok")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    try:
        cfg = configuration.load_effective(args.config)
    except configuration.ConfigError as exc:
        return fail(f"config error: {exc}", EXIT_USAGE)
    if args.json:
        print(json.dumps(configuration.to_dict(cfg, redact=not args.show_secrets)))
    else:
        sys.stdout.write(configuration.to_toml(cfg, redact=not args.show_secrets))
    return EXIT_OK
