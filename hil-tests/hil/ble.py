"""BLE on real boards, driven through commands: the node's config for a BLE-only run, its adapter
powered off and on, ``send`` of random bytes, and ``listen`` kept running on the board.

Everything goes through ``Target.run`` (SSH on a board): a listener is a transient systemd unit
on the board writing its JSON lines to a file there, so no SSH session has to stay open.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shlex
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from hil.target import NODE, UNIT, Target, TargetError

CONFIG = "/etc/bitcraps/node.toml"  # the unit's config (image/build.sh, the Ansible role)
RUNTIME = "/run/bitcraps"  # the unit's RuntimeDirectory: its control socket
_BACKUP = f"{CONFIG}.hil-ble-orig"

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], what: str, seconds: float) -> T:
    """Poll ``condition()`` until it returns something truthy (bounded; nothing is timed)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TargetError(f"never happened within {seconds:.0f} s: {what}")
        time.sleep(0.5)


def app_json(target: Target, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    """``bitcraps-node ARGS --json`` against the unit's node, as root."""
    done = target.node(*args, "--json", "--runtime-dir", RUNTIME, timeout=timeout)
    if done.returncode != 0:
        raise TargetError(
            f"{target.name}: {shlex.join(args)} exited {done.returncode}: {done.stderr.strip()}"
        )
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


def ble_status(target: Target) -> dict[str, Any]:
    ble: dict[str, Any] = app_json(target, "status")["ble"]
    return ble


def peer_row(target: Target, peer_id: str) -> dict[str, Any] | None:
    """``peers --json``'s row for ``peer_id`` when it has a BLE path (else None)."""
    for row in app_json(target, "peers")["peers"]:
        if row["peer_id"] == peer_id and any(p["kind"] == "ble" for p in row["paths"]):
            found: dict[str, Any] = row
            return found
    return None


# -- config -----------------------------------------------------------------------------------


def ble_only_config(original: str | None) -> str:
    """``original`` (None: no file, the embedded defaults) with BLE on and no way to reach a peer
    over IP: no static peers, no introducers; the rest (trust, adapter) as the operator set it."""
    config = tomllib.loads(original or "")
    config.setdefault("ble", {})["enabled"] = True
    config.setdefault("peers", {})["static"] = []
    config.setdefault("rendezvous", {})["introducers"] = []
    return dump_toml(config)


def dump_toml(config: dict[str, dict[str, Any]]) -> str:
    """The node's config shape only: sections of booleans, numbers, strings and string lists."""
    lines: list[str] = []
    for section, keys in config.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_value(value)}" for key, value in keys.items()]
        lines.append("")
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a config value")


@contextmanager
def ble_configured(target: Target) -> Iterator[None]:
    """The board's node restarted with ``ble_only_config``; its own config back (and the node
    restarted) afterwards. The original is kept beside it on the board until then."""
    had = target.run(["test", "-e", CONFIG]).returncode == 0
    original = target.check(["cat", CONFIG]) if had else None
    if had:
        target.check(["cp", "-p", CONFIG, _BACKUP])
    else:
        target.check(["install", "-m", "0640", "-o", "root", "-g", "bitcraps", "/dev/null", CONFIG])
    try:
        text = ble_only_config(original)
        # ``>`` truncates: the file keeps its owner and mode (root:bitcraps 0640).
        target.check(["sh", "-c", f"printf '%s' {shlex.quote(text)} > {CONFIG}"])
        target.check([NODE, "config", "check", CONFIG])
        target.check(["systemctl", "restart", UNIT], timeout=120)
        target.wait_ready()
        yield
    finally:
        if had:
            target.check(["mv", "-f", _BACKUP, CONFIG])
        else:
            target.check(["rm", "-f", CONFIG])
        target.check(["systemctl", "restart", UNIT], timeout=120)
        target.wait_ready()


# -- the radio --------------------------------------------------------------------------------


def set_power(target: Target, adapter: str, on: bool) -> None:
    """Power ``adapter`` ("hciN") off or on: ``btmgmt --index N`` where it exists, else
    ``bluetoothctl`` (its default adapter: it takes no adapter argument in one-shot mode)."""
    state = "on" if on else "off"
    if target.run(["sh", "-c", "command -v btmgmt"]).returncode == 0:
        target.check(["btmgmt", "--index", adapter.removeprefix("hci"), "power", state])
        return
    if target.run(["sh", "-c", "command -v bluetoothctl"]).returncode != 0:
        raise TargetError(f"{target.name}: neither btmgmt nor bluetoothctl to power {adapter} {state}")
    target.check(["bluetoothctl", "power", state])


def bluetoothd_pid(target: Target) -> int:
    return int(target.check(["systemctl", "show", "--property=MainPID", "--value", "bluetooth"]).strip())


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    sha256: str
    returncode: int
    reply: dict[str, Any] | None  # send's JSON when it exited 0
    stderr: str


def send_random(target: Target, peer_id: str, size: int, *, unreliable: bool = False) -> Sent:
    """``send PEER -`` of ``size`` random bytes made on the board; their SHA-256 comes back."""
    flags = " --unreliable" if unreliable else ""
    send = f"{NODE} send {peer_id} - --json --runtime-dir {RUNTIME}{flags}"
    script = (
        f'f=$(mktemp) && head -c {size} /dev/urandom > "$f" && sha256sum "$f" | cut -d" " -f1'
        f' && {send} < "$f"; rc=$?; rm -f "$f"; exit $rc'
    )
    done = target.sh(script, timeout=180)
    lines = done.stdout.splitlines()
    if not lines:
        raise TargetError(f"{target.name}: making {size} random bytes failed: {done.stderr.strip()}")
    reply = json.loads(lines[1]) if done.returncode == 0 and len(lines) > 1 else None
    return Sent(lines[0].strip(), done.returncode, reply, done.stderr.strip())


class Listener:
    """``bitcraps-node listen --json`` on the board as a transient unit, its lines in a file."""

    def __init__(self, target: Target) -> None:
        self.target = target
        token = secrets.token_hex(4)
        self.unit = f"bitcraps-hil-listen-{token}"
        self.path = f"/run/bitcraps-hil-listen-{token}.jsonl"

    def __enter__(self) -> Listener:
        before = _streams(self.target)
        argv = ["systemd-run", f"--unit={self.unit}", "--collect", "-p", f"StandardOutput=file:{self.path}"]
        argv += ["-p", "RuntimeMaxSec=900", NODE, "listen", "--json", "--runtime-dir", RUNTIME]
        self.target.check(argv)
        # Listening once the node counts the stream: a message sent from now on reaches it.
        wait_for(lambda: _streams(self.target) > before, f"{self.unit} streaming on {self.target.name}", 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.target.run(["systemctl", "stop", self.unit], timeout=30)
        self.target.run(["rm", "-f", self.path], timeout=30)

    def items(self) -> list[dict[str, Any]]:
        text = self.target.check(["cat", self.path], timeout=60)
        # The last line may still be being written: only whole lines count.
        return [json.loads(line) for line in text.split("\n")[:-1] if line]

    def message(self, sha256: str, seconds: float) -> dict[str, Any]:
        """The message whose data has ``sha256`` (waited for)."""

        def found() -> dict[str, Any] | None:
            for item in self.items():
                data = base64.b64decode(item["data_b64"]) if item["type"] == "message" else b""
                if item["type"] == "message" and hashlib.sha256(data).hexdigest() == sha256:
                    return item
            return None

        return wait_for(found, f"a message with SHA-256 {sha256[:12]} on {self.target.name}", seconds)


def _streams(target: Target) -> int:
    streams: int = app_json(target, "status")["control"]["streams"]
    return streams
