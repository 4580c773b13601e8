"""How every ``bitcraps-node`` command reports a failure: one line on stderr, then its exit code
(stdout carries only results)."""

from __future__ import annotations

import sys

# The exit codes every command shares (a command may add its own above 3: node.cli.turn does).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad usage or configuration: an operator must act, a restart cannot help
EXIT_NOT_RUNNING = 3  # status: no node answers on the control socket


def fail(message: str, code: int) -> int:
    print(f"bitcraps-node: {message}", file=sys.stderr)
    return code
