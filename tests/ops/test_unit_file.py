"""The packaged systemd unit: linted by systemd itself, and holding what the node relies on.

``systemd-analyze verify`` runs against a scratch root holding the host's unit directory (for
sysinit.target and friends) and a stand-in executable at the venv path, so it checks the unit as
installed without touching this machine's /opt.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.ops import unitfile
from tests.support.prerequisites import unavailable

HOST_UNITS = Path("/usr/lib/systemd/system")


def _need(tool: str) -> str:
    __tracebackhide__ = True
    found = shutil.which(tool)
    if found is None:
        unavailable(f"{tool} is not installed (apt-get install systemd)")
    return found


def _scratch_root(tmp_path: Path, unit_text: str) -> Path:
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/lib/systemd/system" / unitfile.UNIT_NAME).write_text(unit_text)
    exe = root / unitfile.EXECUTABLE.relative_to("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def _verify(tmp_path: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    tool = _need("systemd-analyze")
    if not HOST_UNITS.is_dir():
        unavailable(f"{HOST_UNITS} missing: systemd-analyze verify needs the standard targets")
    root = _scratch_root(tmp_path, unit_text)
    return subprocess.run(
        [tool, "verify", "--man=no", f"--root={root}", unitfile.UNIT_NAME],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    done = _verify(tmp_path, unitfile.unit_path().read_text())
    # verify exits 0 on warnings such as an unknown key: any output at all is a finding.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_catches_a_misspelt_key(tmp_path: Path) -> None:
    # The lint above can fail: a typo in a key is reported.
    text = unitfile.unit_path().read_text().replace("WatchdogSec=", "WatchdogSecs=")
    done = _verify(tmp_path, text)
    assert "Unknown key 'WatchdogSecs'" in done.stderr


def test_verify_catches_a_missing_executable(tmp_path: Path) -> None:
    text = unitfile.unit_path().read_text().replace(str(unitfile.EXECUTABLE), "/opt/nowhere/bin/x")
    done = _verify(tmp_path, text)
    assert done.returncode != 0
    assert "/opt/nowhere/bin/x" in done.stderr


def test_unit_holds_what_the_node_needs() -> None:
    unit = unitfile.parse(unitfile.unit_path().read_text())
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["Restart"] == ["on-failure"]
    # `run` exits 2 for any configuration problem (node.errors.SettingsError): never restarted.
    assert "2" in service["RestartPreventExitStatus"][0].split()
    assert service["WatchdogSec"][0]
    assert service["ExecStart"] == [f"{unitfile.EXECUTABLE} run"]
    assert service["User"] == ["bitcraps"]
    # node/paths.py takes $STATE_DIRECTORY and $RUNTIME_DIRECTORY from these.
    assert service["StateDirectory"] == ["bitcraps"]
    assert service["RuntimeDirectory"] == ["bitcraps"]
    families = set(service["RestrictAddressFamilies"][0].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_BLUETOOTH"}
    # No capability: the node binds unprivileged ports only.
    assert service["CapabilityBoundingSet"] == [""]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_sysusers_creates_the_units_user(tmp_path: Path) -> None:
    tool = _need("systemd-sysusers")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).touch()
    conf = root / "usr/lib/sysusers.d" / unitfile.SYSUSERS_NAME
    conf.parent.mkdir(parents=True)
    shutil.copy(unitfile.sysusers_path(), conf)
    done = subprocess.run([tool, f"--root={root}"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    passwd = (root / "etc/passwd").read_text()
    user = next(line.split(":") for line in passwd.splitlines() if line.startswith("bitcraps:"))
    assert user[5] == "/var/lib/bitcraps"
    group = (root / "etc/group").read_text()
    bluetooth = next(line for line in group.splitlines() if line.startswith("bluetooth:"))
    assert bluetooth.rsplit(":", 1)[1] == "bitcraps"
