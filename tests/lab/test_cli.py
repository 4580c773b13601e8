"""``lab up|status|down`` through a local argparse harness, ``python -m netlink.lab.cli`` and
``bitcraps-node``."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlink.lab import netns, procs, state
from netlink.lab.builder import Lab
from netlink.lab.cli import register

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_not_root_is_refused_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for action in ("up", "down"):
        args = _parse(["lab", action, "--state-file", str(tmp_path / "s.json")])
        assert args.func(args) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert "must run as root" in err and len(err.strip().splitlines()) == 1


def test_bad_nat_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        _parse(["lab", "up", "--nat", "A=carrier-grade"])
    assert caught.value.code == 2
    assert "unknown NAT behaviour" in capsys.readouterr().err


def test_status_without_a_lab_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = _parse(["lab", "status", "--json", "--state-file", str(tmp_path / "none.json")])
    assert args.func(args) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"up": False, "state_file": str(tmp_path / "none.json")}
    assert "no lab is up" in err


def _cli(argv: list[str], *, entry: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*entry, *argv], capture_output=True, text=True, timeout=30, check=False, cwd=REPO)


def _round_trip(entry: list[str], state_file: Path) -> None:
    up = _cli(
        ["lab", "up", "--json", "--state-file", str(state_file), "--nat", "A=port-restricted",
         "--nat", "B=symmetric-sequential", "--open-hosts", "1"],
        entry=entry,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)  # exactly one JSON document
    try:
        assert [r["nat"] for r in doc["routers"]] == ["port-restricted", "symmetric-sequential"]
        names = [h["netns"] for h in doc["hosts"]]
        assert all(netns.exists(n) for n in names)
        hosts = {h["name"]: h for h in doc["hosts"]}
        assert hosts["A1"]["enter"] == f"ip netns exec {hosts['A1']['netns']} bash"
        # The printed command really enters the host.
        inside = subprocess.run(
            ["ip", "netns", "exec", hosts["A1"]["netns"], "ip", "-4", "-o", "addr", "show", "eth0"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "198.18.1.2/24" in inside.stdout

        again = _cli(["lab", "up", "--state-file", str(state_file)], entry=entry)
        assert again.returncode == 1 and "already up" in again.stderr

        status = _cli(["lab", "status", "--json", "--state-file", str(state_file)], entry=entry)
        assert status.returncode == 0, status.stderr
        live = json.loads(status.stdout)
        assert live["up"] is True and all(live["processes"].values())
        human = _cli(["lab", "status", "--state-file", str(state_file)], entry=entry)
        assert "status: up" in human.stdout and "ip netns exec" in human.stdout
    finally:
        down = _cli(["lab", "down", "--json", "--state-file", str(state_file)], entry=entry)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout) == {"down": True, "prefix": doc["prefix"]}
    assert not state_file.exists()
    assert not any(netns.exists(n) for n in names)
    assert not Path(doc["workdir"]).exists()
    turn = subprocess.run(["pgrep", "-f", doc["workdir"]], capture_output=True, text=True, check=False)
    assert [p for p in turn.stdout.split() if procs.alive(int(p))] == []


def test_module_cli_up_status_down(lab_ready: None, tmp_path: Path) -> None:
    _round_trip([sys.executable, "-m", "netlink.lab.cli"], tmp_path / "lab.json")


def test_node_cli_up_status_down(lab_ready: None, tmp_path: Path) -> None:
    # No skip: node/cli/main.py registers netlink.lab.cli directly, so a missing command is a failure.
    exe = shutil.which("bitcraps-node", path=str(Path(sys.executable).parent))
    assert exe is not None, "bitcraps-node is not installed in the venv"
    helped = subprocess.run([exe, "lab", "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "up" in helped.stdout, helped.stderr
    _round_trip([exe], tmp_path / "lab.json")


def test_state_lives_in_the_labs_own_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not /run/bitcraps: systemd's RuntimeDirectory=bitcraps deletes it when the node stops.
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/bitcraps")  # as inside the node's unit
    assert state.default_state_file() == Path("/run/bitcraps-lab/lab.json")
    assert state.registry_path("bcl0000-").parent == Path("/run/bitcraps-lab/labs")


AS_NOBODY = """
import os, sys
from netlink.lab import cli
os.setgroups([])
os.setgid(65534)
os.setuid(65534)  # nobody, for real: the kernel, not a patched geteuid, refuses the reads
sys.exit(cli.main(sys.argv[1:]))
"""


def _as_nobody(argv: list[str]) -> subprocess.CompletedProcess[str]:
    # The venv's interpreter lives under /root, which nobody cannot enter: start as root, then
    # drop every privilege before the command runs.
    return _cli(argv, entry=[sys.executable, "-c", AS_NOBODY])


@pytest.fixture
def private_state_file() -> Iterator[Path]:
    """A state file as `lab up` writes it (0600, root's), in a directory anyone may enter."""
    directory = Path(tempfile.mkdtemp())
    try:
        directory.chmod(0o755)
        path = directory / "lab.json"
        state.write_atomic(path, "{}")
        assert path.stat().st_mode & 0o777 == 0o600
        yield path
    finally:
        shutil.rmtree(directory)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_status_as_non_root_is_refused_in_one_line(private_state_file: Path) -> None:
    human = _as_nobody(["lab", "status", "--state-file", str(private_state_file)])
    assert human.returncode == 2, human.stderr
    assert human.stdout == ""
    (line,) = human.stderr.splitlines()
    assert "permission-denied" in line and "run as root" in line and str(private_state_file) in line
    doc = _as_nobody(["lab", "status", "--json", "--state-file", str(private_state_file)])
    assert doc.returncode == 2 and len(doc.stderr.splitlines()) == 1
    assert json.loads(doc.stdout) == {"up": False, "state_file": str(private_state_file)}
    for action in ("up", "down"):
        refused = _as_nobody(["lab", action, "--state-file", str(private_state_file)])
        assert refused.returncode == 2 and "must run as root" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1


def test_unreadable_state_file_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    old = tmp_path / "old.json"  # as written before the format had a version
    old.write_text(json.dumps({"prefix": "bcl0000-", "namespaces": [], "processes": [], "workdir": "/x"}))
    bad_summary = tmp_path / "bad-summary.json"
    bad_summary.write_text(
        json.dumps(
            {"version": state.FORMAT_VERSION, "prefix": "bcl0000-", "namespaces": [], "processes": [],
             "workdir": "/x", "owner_pid": None, "summary": {"prefix": "bcl0000-", "routers": "A"}}
        )
    )  # fmt: skip
    cases = (
        (corrupt, "corrupt"),
        (old, "unsupported-version"),
        (bad_summary, "corrupt"),
        (tmp_path, "io-error"),  # a directory: EISDIR
    )
    for path, failure in cases:
        args = _parse(["lab", "status", "--state-file", str(path)])
        assert args.func(args) == 1
        out, err = capsys.readouterr()
        (line,) = err.splitlines()
        assert out == "" and failure in line and str(path) in line


def test_up_whose_state_file_cannot_be_written_removes_the_lab(lab_ready: None) -> None:
    # /proc takes no new files: loading finds no lab, saving after the build fails.
    state_file = Path(f"/proc/bitcraps-lab-test-{os.getpid()}/lab.json")
    up = _cli(
        ["lab", "up", "--no-coturn", "--state-file", str(state_file)],
        entry=[sys.executable, "-m", "netlink.lab.cli"],
    )
    assert up.returncode == 1 and up.stdout == ""
    assert "Traceback" not in up.stderr
    (line,) = [ln for ln in up.stderr.splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert "io-error" in line
    match = re.search(r"lab (bcl[0-9a-f]{4}-) removed again", line)
    assert match is not None, line
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert match.group(1) not in listing.stdout
    assert not state.registry_path(match.group(1)).exists()


def test_record_and_summary_round_trip_through_json(nat_lab: Lab) -> None:
    record = nat_lab.record()
    assert record.summary.coturn is not None and any(h.router is None for h in record.summary.hosts)
    assert state.LabRecord.from_json(record.to_json()) == record


# Builds a lab per pair and runs the nodes as processes: 60 s on a slow machine; the guard is the
# command's own limit.
@pytest.mark.timeout(300)
def test_lab_matrix_among_two_behaviours_prints_its_json_and_cleans_up(
    lab_ready: None, tmp_path: Path
) -> None:
    before = _namespaces()
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", "lab", "matrix", "--json", "--behaviours", "open,udp-blocked",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    pairs = json.loads(done.stdout)["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [
        ("open", "open"),
        ("open", "udp-blocked"),
        ("udp-blocked", "udp-blocked"),
    ]
    by_pair = {(p["a"], p["b"]): p for p in pairs}
    assert by_pair["open", "open"]["direct"] == 1 and by_pair["open", "open"]["methods"] == ["host"]
    for pair in (("open", "udp-blocked"), ("udp-blocked", "udp-blocked")):
        assert (by_pair[pair]["relay"], by_pair[pair]["failed"]) == (1, 0), by_pair[pair]
    assert set(pairs[0]) == {
        "a", "b", "runs", "direct", "relay", "tcp_tls", "failed",
        "time_to_first_ms_p50", "time_to_direct_ms_p50", "methods", "errors",
    }  # fmt: skip
    assert _namespaces() == before  # the lab is gone


def _namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
