"""Running the repository's playbooks against targets, and reading PLAY RECAP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.target import Target

ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "ansible"
_RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Recap:
    ok: int
    changed: int
    unreachable: int
    failed: int


@dataclass(frozen=True, slots=True)
class PlaybookRun:
    returncode: int
    output: str
    recap: dict[str, Recap]


def missing() -> str | None:
    if shutil.which("ansible-playbook") is None:
        return "ansible-playbook (apt-get install ansible)"
    return None


def run_playbook(
    playbook: str,
    targets: Mapping[str, Target],
    extra_vars: Mapping[str, Any],
    workdir: Path,
    timeout: float = 600.0,
) -> PlaybookRun:
    """ansible-playbook ansible/PLAYBOOK on ``targets`` (inventory name -> target) as bitcraps_nodes."""
    inventory = {
        "all": {
            "children": {
                "bitcraps_nodes": {"hosts": {name: t.ansible_host_vars() for name, t in targets.items()}}
            }
        }
    }
    inventory_path = workdir / "inventory.json"
    inventory_path.write_text(json.dumps(inventory))
    vars_path = workdir / "vars.json"
    vars_path.write_text(json.dumps(dict(extra_vars)))
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-tmp"),
        ANSIBLE_HOME=str(workdir / "ansible-home"),
    )
    wrappers = {t.wrapper for t in targets.values()}
    if len(wrappers) != 1:
        raise ValueError(f"targets reached in different ways: {wrappers}")
    (wrapper,) = wrappers
    done = subprocess.run(
        [
            *wrapper,
            "ansible-playbook",
            "-i",
            str(inventory_path),
            "-e",
            f"@{vars_path}",
            str(ANSIBLE_DIR / playbook),
        ],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    recap = {
        m["host"]: Recap(int(m["ok"]), int(m["changed"]), int(m["unreachable"]), int(m["failed"]))
        for m in _RECAP.finditer(output)
    }
    return PlaybookRun(done.returncode, output, recap)
