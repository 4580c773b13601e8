"""The packaged unit under real systemd: READY, STATUS=, the watchdog, the user and directories."""

from __future__ import annotations

import time

import pytest
from hil.figures import record as record_figure
from hil.nspawn import NspawnMachine
from hil.target import UNIT, Target


def test_node_reaches_ready_and_systemctl_status_shows_its_status_line(
    target: Target, pytestconfig: pytest.Config
) -> None:
    state = target.wait_ready()
    peer_id = target.status()["peer_id"]
    # The node's STATUS= summary names its peer id; systemctl status shows it as "Status:".
    assert peer_id[:12] in state.status_text
    shown = target.check(["systemctl", "status", "--no-pager", "--lines=0", UNIT])
    assert f'Status: "{state.status_text}"' in shown
    assert "active (running)" in shown
    if isinstance(target, NspawnMachine):
        record_figure(pytestconfig, f"boot to READY under nspawn: {target.boot_to_ready_s():.2f} s")


@pytest.mark.timeout(180)
def test_frozen_node_is_killed_by_the_watchdog_and_restarted(fresh_target: Target) -> None:
    before = fresh_target.wait_ready()
    assert before.restarts == 0
    fresh_target.check(["kill", "-STOP", str(before.main_pid)])
    # WatchdogSec=15s: systemd aborts the stopped process, then restarts it after RestartSec.
    after = fresh_target.wait_unit(
        lambda s: s.ready and s.main_pid != before.main_pid, "restart after the watchdog", timeout=120
    )
    assert after.restarts == 1
    journal = fresh_target.check(["journalctl", "--no-pager", "-o", "cat", "-u", UNIT])
    assert "Failed with result 'watchdog'" in journal
    # systemd follows its SIGABRT with SIGCONT, so even a stopped node dumps where it was.
    assert "Fatal Python error: Aborted" in journal
    # The restarted node serves again.
    assert fresh_target.status()["peer_id"]


@pytest.mark.timeout(120)
def test_aborted_node_leaves_its_python_traceback_in_the_journal_and_is_restarted(
    fresh_target: Target,
) -> None:
    # SIGABRT is what the watchdog sends a node whose loop is blocked (and still running).
    before = fresh_target.wait_ready()
    fresh_target.check(["kill", "-ABRT", str(before.main_pid)])
    after = fresh_target.wait_unit(
        lambda s: s.ready and s.main_pid != before.main_pid, "restart after SIGABRT", timeout=90
    )
    assert after.restarts == 1
    journal = fresh_target.check(["journalctl", "--no-pager", "-o", "cat", "-u", UNIT])
    # faulthandler (PYTHONFAULTHANDLER=1 in the unit): where every thread was, for the post-mortem.
    assert "Fatal Python error: Aborted" in journal
    assert "node/cli/main.py" in journal


def test_node_runs_as_its_own_user_with_systemd_directories(target: Target) -> None:
    state = target.wait_ready()
    uid = target.check(["id", "-u", "bitcraps"]).strip()
    proc_status = target.check(["cat", f"/proc/{state.main_pid}/status"])
    uids = next(line.split()[1:] for line in proc_status.splitlines() if line.startswith("Uid:"))
    assert uids == [uid] * 4
    caps = next(line.split()[1] for line in proc_status.splitlines() if line.startswith("CapEff:"))
    assert int(caps, 16) == 0
    # StateDirectory= holds the identity key, RuntimeDirectory= the control socket.
    assert target.check(["stat", "-c", "%U %a", "/var/lib/bitcraps"]).split() == ["bitcraps", "700"]
    assert target.check(["stat", "-c", "%U %F", "/run/bitcraps/control.sock"]).split()[0] == "bitcraps"


def test_idle_rss(target: Target, pytestconfig: pytest.Config) -> None:
    state = target.wait_ready()
    # Let start-up garbage settle before reading: "idle" is the node doing nothing but its
    # watchdog pings.
    time.sleep(5)
    rss = target.rss_kib(state.main_pid)
    assert rss > 0
    record_figure(pytestconfig, f"idle RSS of the node on {target.name}: {rss / 1024:.1f} MiB")


@pytest.mark.timeout(120)
def test_stop_is_orderly_and_start_brings_it_back(fresh_target: Target) -> None:
    fresh_target.wait_ready()
    fresh_target.check(["systemctl", "stop", UNIT])
    stopped = fresh_target.unit()
    # SIGTERM leads to exit 0 (the node sent STOPPING=1 and unwound): no failure recorded.
    assert (stopped.active, stopped.result) == ("inactive", "success")
    fresh_target.check(["systemctl", "start", UNIT])
    assert fresh_target.wait_ready().restarts == 0
