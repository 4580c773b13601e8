"""Where the packaged systemd files live, and a small reader for systemd's INI dialect.

systemd allows a key to repeat (``SystemCallFilter=`` twice appends), so configparser does not fit.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

UNIT_NAME = "bitcraps-node.service"
SYSUSERS_NAME = "bitcraps-node.conf"
# The path the image (image/build.sh) and the Ansible role both install the node's venv to.
VENV = Path("/opt/bitcraps-node/venv")
EXECUTABLE = VENV / "bin" / "bitcraps-node"


def unit_path() -> Path:
    return Path(str(resources.files("node") / "data" / "systemd" / UNIT_NAME))


def sysusers_path() -> Path:
    return Path(str(resources.files("node") / "data" / "sysusers.d" / SYSUSERS_NAME))


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections
