"""Bring-up and strict teardown: nothing is left behind, also on failure or interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netlink.lab import builder, coturn, netns, probe, procs, state, teardown
from netlink.lab.builder import Lab
from netlink.lab.errors import LabStateError, NftError, NftFailure, ProcessStopError, StateFailure
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import new_prefix, plan

pytestmark = pytest.mark.lab

NATS = (("A", NatBehaviour.PORT_RESTRICTED), ("B", NatBehaviour.SYMMETRIC))


def _lab_namespaces(prefix: str) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in listing.stdout.splitlines() if line.startswith(prefix)]


def _live_pids_matching(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    pids = [int(p) for p in found.stdout.split()]
    return [p for p in pids if p != os.getpid() and procs.alive(p)]


def _assert_gone(prefix: str, workdir: Path, turn_pid: int | None) -> None:
    assert _lab_namespaces(prefix) == []
    assert _live_pids_matching(str(workdir)) == []
    if turn_pid is not None:
        assert not procs.alive(turn_pid)
    assert not workdir.exists()
    assert not state.registry_path(prefix).exists()


def test_full_lab_comes_up_and_down_twice_leaving_nothing(lab_ready: None) -> None:
    for _ in range(2):
        lab = Lab.up(plan(NATS))
        try:
            prefix, workdir = lab.topology.prefix, lab.workdir
            assert sorted(_lab_namespaces(prefix)) == sorted(lab.topology.namespaces)
            (turn,) = lab.record().processes
            assert turn.name == "turnserver" and procs.process_alive(turn)
            listening = lab.run("srv", ["ss", "-Hlnu"]).stdout.decode()
            assert "203.0.113.10:3478" in listening and "203.0.113.11:3478" in listening
            assert "203.0.113.10:5349" in lab.run("srv", ["ss", "-Hlnt"]).stdout.decode()
        finally:
            lab.down()
        _assert_gone(prefix, workdir, turn.pid)  # how fast: bench/lab_bringup.py reports it


def test_two_labs_coexist_and_stay_apart(lab_factory: Callable[..., Lab]) -> None:
    one = lab_factory(NATS, with_coturn=False)
    two = lab_factory(NATS, with_coturn=False)
    assert one.topology.prefix != two.topology.prefix
    assert not set(one.topology.namespaces) & set(two.topology.namespaces)
    servers = [
        lab.socket("srv", bind=("203.0.113.10", 4000), timeout=timeout)
        for lab, timeout in ((one, probe.ANSWER_S), (two, probe.SILENCE_S))
    ]
    host = one.socket("A1")
    host.sendto(b"to lab one", ("203.0.113.10", 4000))
    assert servers[0].recv(64) == b"to lab one"
    with pytest.raises(TimeoutError):
        servers[1].recv(64)


def _spy_on_coturn(monkeypatch: pytest.MonkeyPatch) -> list[state.ProcessRecord]:
    """Record each turnserver a lab starts (its marker is the lab's real workdir)."""
    started: list[state.ProcessRecord] = []
    real_start = coturn.start

    def start(runner: netns.NamespaceThread, ns: str, config: coturn.CoturnConfig, workdir: Path) -> Any:
        proc = real_start(runner, ns, config, workdir)
        started.append(state.ProcessRecord(proc.pid, "turnserver", str(workdir)))
        return proc

    monkeypatch.setattr(coturn, "start", start)
    return started


def _assert_build_left_nothing(prefix: str, turn: state.ProcessRecord) -> None:
    assert _lab_namespaces(prefix) == []
    assert not procs.alive(turn.pid)
    assert _live_pids_matching(turn.marker) == []  # the lab's real workdir, wherever TMPDIR is
    assert not Path(turn.marker).exists()
    assert not state.registry_path(prefix).exists()


def test_failed_build_tears_down_what_it_made(lab_ready: None, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _spy_on_coturn(monkeypatch)
    running_at_failure: list[bool] = []

    def broken_ruleset(*args: object) -> str:
        running_at_failure.extend(procs.process_alive(t) for t in started)
        return "this is not nftables\n"

    monkeypatch.setattr(builder, "ruleset", broken_ruleset)
    prefix = new_prefix()
    with pytest.raises(NftError) as caught:
        Lab.up(plan(NATS, prefix=prefix))
    assert caught.value.returncode != 0
    (turn,) = started
    assert running_at_failure and all(running_at_failure)  # coturn really ran when nft failed
    _assert_build_left_nothing(prefix, turn)


def test_interrupted_build_tears_down_what_it_made(lab_ready: None, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _spy_on_coturn(monkeypatch)
    running_at_interrupt: list[bool] = []

    def interrupt(*args: object, **kwargs: object) -> float:
        running_at_interrupt.extend(procs.process_alive(t) for t in started)
        raise KeyboardInterrupt

    monkeypatch.setattr(coturn, "wait_ready", interrupt)
    prefix = new_prefix()
    with pytest.raises(KeyboardInterrupt):
        Lab.up(plan(NATS, prefix=prefix))
    (turn,) = started
    assert running_at_interrupt == [True]
    _assert_build_left_nothing(prefix, turn)


def test_lab_of_a_killed_process_is_reaped(lab_ready: None) -> None:
    prefix = new_prefix()
    script = textwrap.dedent(
        f"""
        import sys, time
        from netlink.lab.builder import Lab
        from netlink.lab.topology import plan
        lab = Lab.up(plan(prefix={prefix!r}))
        print(lab.workdir, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        workdir = Path(child.stdout.readline().strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert _lab_namespaces(prefix)  # the killed owner could not clean up
    (record,) = [r for r in state.registered() if r.prefix == prefix]
    (turn,) = record.processes
    assert procs.process_alive(turn)
    assert prefix in teardown.reap_stale()
    _assert_gone(prefix, workdir, turn.pid)


def test_namespace_thread_keeps_caller_in_its_namespace(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(NATS, with_coturn=False)
    before = os.stat("/proc/thread-self/ns/net").st_ino
    inside = lab.run_in("A1", lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    assert inside == os.stat(netns.netns_path(lab.netns_of("A1"))).st_ino
    assert os.stat("/proc/thread-self/ns/net").st_ino == before != inside


def test_lab_is_removed_when_its_program_exits_without_down(lab_ready: None) -> None:
    prefix = new_prefix()
    script = f"""
from netlink.lab.builder import Lab
from netlink.lab.topology import plan
lab = Lab.up(plan(prefix={prefix!r}))
print(lab.workdir, flush=True)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    _assert_gone(prefix, Path(done.stdout.strip()), None)


def test_unusable_workdir_is_a_typed_error(lab_ready: None) -> None:
    prefix = new_prefix()
    with pytest.raises(LabStateError) as caught:
        Lab.up(plan(NATS, prefix=prefix), with_coturn=False, workdir=Path("/proc/bitcraps-lab-no/dir"))
    assert caught.value.failure is StateFailure.IO
    assert _lab_namespaces(prefix) == []


def test_timed_out_nft_is_killed_and_reaped_with_its_siblings(
    lab_ready: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Each "nft" notes its pid, reads its rule set and then never finishes.
    hang = (
        "import os, sys, time; open(sys.argv[1] + '/' + str(os.getpid()), 'w'); "
        "sys.stdin.read(); time.sleep(60)"
    )
    monkeypatch.setattr(builder, "NFT_ARGV", (sys.executable, "-c", hang, str(tmp_path)))
    monkeypatch.setattr(builder, "NFT_TIMEOUT_S", 2.0)
    prefix = new_prefix()
    with pytest.raises(NftError) as caught:
        Lab.up(plan(NATS, prefix=prefix), with_coturn=False)
    assert caught.value.failure is NftFailure.TIMEOUT and caught.value.returncode is None
    started = [int(p.name) for p in tmp_path.iterdir()]
    assert started  # at least one was running when the deadline passed
    assert [pid for pid in started if os.path.exists(f"/proc/{pid}")] == []  # killed and reaped
    assert _lab_namespaces(prefix) == []


def test_process_that_survives_sigkill_is_reported_after_the_rest_is_gone(
    lab_factory: Callable[..., Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = lab_factory(NATS, with_coturn=False)
    stuck = subprocess.Popen(
        lab.command("A1", ["sh", "-c", "echo in; exec sleep 60"]), stdout=subprocess.PIPE, text=True
    )
    assert stuck.stdout is not None and stuck.stdout.readline() == "in\n"  # inside A1 now
    # A process in uninterruptible sleep cannot be made on demand: this one looks alive forever.
    real_alive = procs.alive
    monkeypatch.setattr(procs, "alive", lambda pid: pid == stuck.pid or real_alive(pid))
    monkeypatch.setattr(procs, "STOP_GRACE_S", 0.05)
    monkeypatch.setattr(procs, "KILL_WAIT_S", 0.05)
    record = lab.record()
    record = state.LabRecord(
        prefix=record.prefix,
        namespaces=record.namespaces,
        processes=(state.ProcessRecord(stuck.pid, "sleep", "sleep 60"),),
        workdir=record.workdir,
        owner_pid=record.owner_pid,
        summary=record.summary,
    )
    try:
        with pytest.raises(ProcessStopError) as caught:
            teardown.remove(record)
        assert caught.value.pid == stuck.pid
        assert _lab_namespaces(lab.topology.prefix) == []  # the rest was torn down regardless
        assert not Path(record.workdir).exists()
        assert not state.registry_path(lab.topology.prefix).exists()
    finally:
        stuck.kill()
        stuck.wait()
        stuck.stdout.close()
