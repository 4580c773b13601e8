"""Real node processes in lab hosts, driven through the CLI the way a game would: the coordinator's
lab tests (tests/lab/test_failover.py, tests/lab/test_fleet.py) and bench/failover.py.

Each node gets its own state directory (its identity key, made here beforehand so that every
node's ``[peers] static`` can name the others), runtime directory (control socket) and config;
metrics are off (several nodes share nothing but the lab). Commands (``connect``, ``send``,
``peers``, ``listen``) run inside the node's host namespace through ``ip netns exec``.

:class:`Listener` collects ``listen --json`` lines in a thread, stamped with ``time.monotonic()``
on arrival; :func:`delivery` checks exactly-once and order from the 8-byte big-endian index each
generated message (``send --count``) starts with; :func:`first_on_next_path` is the time from a
fault to the first message that came over another path.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import enum
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from netlink.lab import procs
from netlink.lab.builder import Lab
from netlink.lab.errors import LabError
from node.errors import LocalError, ReasonError

NODE = (sys.executable, "-m", "node.cli")
# The nodes' log level (their stderr is kept in each node's workdir): LAB_NODE_LOG_LEVEL=debug
# when a lab run needs to be understood afterwards.
NODE_LOG_LEVEL = os.environ.get("LAB_NODE_LOG_LEVEL", "info")
UDP_PORT, TLS_PORT = 47474, 47475
START_TIMEOUT_S = 60.0  # a deadline only to detect a hang (a Pi-sized CI box imports slowly)
COMMAND_TIMEOUT_S = 120.0
INDEX_BYTES = 8  # send --count: message i starts with i, 8 bytes big-endian


class FleetFailure(enum.Enum):
    NODE_EXITED = "node exited"
    NOT_READY = "not ready"
    COMMAND_FAILED = "command failed"
    BAD_OUTPUT = "bad output"
    TIMEOUT = "timeout"


class FleetError(LabError, ReasonError[FleetFailure], LocalError):
    """A fleet node or one of its commands failed; ``reason`` says how, the detail shows its
    exit code and stderr."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of the fleet: where it runs and what it is."""

    host: str
    address: str
    peer_id: str
    workdir: Path

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def runtime_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr"

    def uri(self, kind: str) -> str:
        """``udp://host:port`` or ``tls://host:port`` (connect's URIs)."""
        return f"{kind}://{self.address}:{UDP_PORT if kind == 'udp' else TLS_PORT}"

    def static(self, kind: str) -> str:
        """The ``[peers] static`` entry naming this node over ``kind`` (``udp`` or ``tls``)."""
        return f"{self.peer_id}@{self.uri(kind)}"


def config_text(static: Sequence[str], extra: str = "", stun: Sequence[str] = ()) -> str:
    """A lab node's config: fixed ports on every address, no metrics, and NAT discovery only
    against ``stun`` (``host:port``; none: no discovery, so the NAT type stays unknown)."""
    entries = ", ".join(json.dumps(entry) for entry in static)
    servers = ", ".join(json.dumps(server) for server in stun)
    discovery = f"[stun]\nservers = [{servers}]\n" if stun else "[stun]\ndiscover_at_start = false\n"
    return (
        f'[node]\nlisten_address = "0.0.0.0"\nudp_port = {UDP_PORT}\n'
        f"[tcp_tls]\nport = {TLS_PORT}\n"
        f"{discovery}"
        '[metrics]\nlisten = ""\n'
        f"[peers]\nstatic = [{entries}]\n{extra}"
    )


@dataclass(frozen=True, slots=True)
class Received:
    """A ``listen`` message event, stamped when its line arrived."""

    at: float
    peer_id: str
    message_id: str
    priority: str
    path: str  # the event's "path", as canonical JSON (compared, never parsed)
    data: bytes

    @property
    def index(self) -> int:
        return int.from_bytes(self.data[:INDEX_BYTES], "big")


@dataclass(frozen=True, slots=True)
class PeerEvent:
    at: float
    peer_id: str
    state: str
    path: str


def path_key(value: object) -> str:
    return json.dumps(value, sort_keys=True)


class Listener:
    """``bitcraps-node listen --json`` of one node, read in a thread."""

    def __init__(self, proc: subprocess.Popen[bytes], spec: NodeSpec) -> None:
        self.proc = proc
        self.spec = spec
        self.messages: list[Received] = []
        self.peer_events: list[PeerEvent] = []
        self.bad_lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, name=f"listen-{spec.host}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            at = time.monotonic()
            try:
                event = json.loads(line)
                if event["type"] == "message":
                    item: Received | PeerEvent = Received(
                        at,
                        event["peer_id"],
                        str(event["message_id"]),
                        event["priority"],
                        path_key(event["path"]),
                        base64.b64decode(event["data_b64"]),
                    )
                else:
                    item = PeerEvent(at, event["peer_id"], event["state"], path_key(event.get("path")))
            except (ValueError, KeyError, TypeError):
                with self._changed:
                    self.bad_lines.append(line.decode(errors="replace"))
                continue
            with self._changed:
                if isinstance(item, Received):
                    self.messages.append(item)
                else:
                    self.peer_events.append(item)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def from_peer(self, peer_id: str) -> list[Received]:
        with self._changed:
            return [m for m in self.messages if m.peer_id == peer_id]

    def events_of(self, peer_id: str) -> list[PeerEvent]:
        with self._changed:
            return [e for e in self.peer_events if e.peer_id == peer_id]

    def wait(self, condition: Callable[[Listener], bool], timeout: float, what: str) -> None:
        """Block until ``condition(self)`` (checked on every event); FleetError on timeout or
        when listen exits first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FleetError(FleetFailure.TIMEOUT, f"{self.spec.host}: no {what} within {timeout} s")
                if not self._thread.is_alive():
                    raise FleetError(
                        FleetFailure.NODE_EXITED, f"{self.spec.host}: listen exited {self.proc.poll()}"
                    )
                self._changed.wait(min(left, 0.5))

    def wait_count(self, peer_id: str, count: int, timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.wait(
            lambda s: sum(1 for m in s.messages if m.peer_id == peer_id) >= count,
            timeout,
            f"{count} messages from {peer_id[:8]}",
        )

    def stop(self) -> int | None:
        """SIGTERM (listen must exit 0); returns its exit code."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            procs.kill_child(self.proc)
        self._thread.join(10)
        return self.proc.returncode


@dataclass
class Fleet:
    """Nodes in ``lab``'s hosts, their files under ``root``."""

    lab: Lab
    root: Path
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)

    def plan(self, host: str, address: str | None = None) -> NodeSpec:
        """A node for ``host`` (at ``address``, default the host's own): its identity made now."""
        from node.security.keystore import load_or_create  # noqa: PLC0415 (key handling: only here)

        workdir = self.root / host
        workdir.mkdir(parents=True, exist_ok=True)
        spec = NodeSpec(host, address or str(self.lab.host(host).address), "", workdir)
        identity, _ = load_or_create(spec.state_dir)
        spec = NodeSpec(spec.host, spec.address, identity.peer_id, workdir)
        self.nodes[host] = spec
        return spec

    def start(
        self, spec: NodeSpec, static: Sequence[str], extra_config: str = "", stun: Sequence[str] = ()
    ) -> None:
        """Run the node; returns once it answers ``status`` (and, with ``stun``, once its NAT
        discovery has a result: the coordinator's prior depends on the NAT type)."""
        config = spec.workdir / "node.toml"
        config.write_text(config_text(static, extra_config, stun))
        with spec.stderr_path.open("w") as stderr:
            proc = self.lab.popen(
                spec.host,
                [*NODE, "--log-level", NODE_LOG_LEVEL, "run", "--config", str(config),
                 "--state-dir", str(spec.state_dir), "--runtime-dir", str(spec.runtime_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )  # fmt: skip
        self.procs[spec.host] = proc
        first = _first_line(proc, START_TIMEOUT_S)
        if first.split()[:1] != [f"peer_id={spec.peer_id}"]:
            raise FleetError(FleetFailure.NOT_READY, f"{spec.host}: {first!r}; {self.stderr_tail(spec)}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready(spec, discovered=bool(stun)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise FleetError(FleetFailure.NOT_READY, f"{spec.host}: {self.stderr_tail(spec)}")
            time.sleep(0.1)

    def _ready(self, spec: NodeSpec, *, discovered: bool) -> bool:
        done = self.cli(spec, "status", "--json")
        if done.returncode != 0:
            return False
        return not discovered or json.loads(done.stdout)["nat"]["result"] is not None

    def stderr_tail(self, spec: NodeSpec, chars: int = 2000) -> str:
        try:
            return spec.stderr_path.read_text(errors="replace")[-chars:] or "(empty stderr)"
        except OSError as exc:
            return f"(no stderr: {exc.strerror})"

    def command(self, spec: NodeSpec, *args: str) -> list[str]:
        """The CLI command line for ``spec`` (its runtime directory appended)."""
        return [*NODE, *args, "--runtime-dir", str(spec.runtime_dir)]

    def cli(
        self, spec: NodeSpec, *args: str, timeout: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[bytes]:
        return self.lab.run(spec.host, self.command(spec, *args), timeout=timeout)

    def cli_json(self, spec: NodeSpec, *args: str, timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        """Run a command with ``--json``; its document. FleetError unless it exits 0."""
        done = self.cli(spec, *args, "--json", timeout=timeout)
        return parse_result(spec, args, done)

    def connect(
        self, spec: NodeSpec, peer: NodeSpec, uris: Sequence[str] = (), timeout: float = 30.0
    ) -> dict[str, Any]:
        return self.cli_json(spec, "connect", peer.peer_id, *uris, "--timeout", str(timeout))

    def send(self, spec: NodeSpec, peer: NodeSpec, count: int, size: int, *extra: str) -> dict[str, Any]:
        return self.cli_json(spec, "send", peer.peer_id, "--count", str(count), "--size", str(size), *extra)

    def send_popen(
        self, spec: NodeSpec, peer: NodeSpec, count: int, size: int, *extra: str
    ) -> subprocess.Popen[bytes]:
        """``send --count --size --json`` started, not waited for (:func:`finish`)."""
        argv = self.command(
            spec, "send", peer.peer_id, "--count", str(count), "--size", str(size), "--json", *extra
        )
        return self.lab.popen(
            spec.host, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def peers(self, spec: NodeSpec) -> dict[str, Any]:
        return self.cli_json(spec, "peers")

    def listen(self, spec: NodeSpec) -> Listener:
        stderr_path = spec.workdir / "listen.stderr"
        with stderr_path.open("a") as stderr:
            proc = self.lab.popen(
                spec.host,
                self.command(spec, "listen", "--json"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        listener = Listener(proc, spec)
        self.listeners.append(listener)
        return listener

    def pid(self, spec: NodeSpec) -> int:
        """The node's pid (``ip netns exec`` execs the node in place)."""
        return self.procs[spec.host].pid

    def rss_kib(self, spec: NodeSpec) -> int:
        for line in Path(f"/proc/{self.pid(spec)}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise FleetError(FleetFailure.BAD_OUTPUT, f"{spec.host}: no VmRSS in /proc/{self.pid(spec)}/status")

    def assert_running(self) -> None:
        for host, proc in self.procs.items():
            if proc.poll() is not None:
                raise FleetError(
                    FleetFailure.NODE_EXITED,
                    f"{host} exited {proc.returncode}: {self.stderr_tail(self.nodes[host])}",
                )

    def stop(self) -> dict[str, int | None]:
        """Stop listeners and nodes (SIGTERM, SIGKILL after the grace); their exit codes."""
        codes: dict[str, int | None] = {}
        for listener in self.listeners:
            codes[f"listen {listener.spec.host}"] = listener.stop()
        self.listeners.clear()
        for host, proc in self.procs.items():
            procs.stop_child(proc)
            if proc.stdout is not None:
                proc.stdout.close()
            codes[host] = proc.returncode
        self.procs.clear()
        return codes

    @classmethod
    @contextlib.contextmanager
    def running(cls, lab: Lab, root: Path) -> Iterator[Fleet]:
        fleet = cls(lab, root)
        try:
            yield fleet
        finally:
            fleet.stop()


def finish(
    spec: NodeSpec, proc: subprocess.Popen[bytes], timeout: float = COMMAND_TIMEOUT_S
) -> dict[str, Any]:
    """Wait for a :meth:`Fleet.send_popen` and return its JSON (FleetError unless it exits 0)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.kill_child(proc)
        raise FleetError(FleetFailure.TIMEOUT, f"{spec.host}: {proc.args!r} ran over {timeout} s") from None
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return parse_result(spec, ("send",), done)


def parse_result(
    spec: NodeSpec, args: Sequence[str], done: subprocess.CompletedProcess[bytes]
) -> dict[str, Any]:
    if done.returncode != 0:
        raise FleetError(
            FleetFailure.COMMAND_FAILED,
            f"{spec.host}: {' '.join(args)} exited {done.returncode}: {done.stderr.decode(errors='replace')}",
        )
    try:
        document = json.loads(done.stdout)
    except ValueError as exc:
        raise FleetError(FleetFailure.BAD_OUTPUT, f"{spec.host}: {' '.join(args)}: {exc}") from exc
    if not isinstance(document, dict):
        raise FleetError(FleetFailure.BAD_OUTPUT, f"{spec.host}: {' '.join(args)}: not an object")
    return document


def _first_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    stream: IO[bytes] | None = proc.stdout
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise FleetError(FleetFailure.NOT_READY, f"no first line within {timeout} s")
    return stream.readline().decode(errors="replace")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a receiver got of an expected sequence of message indices."""

    expected: int
    received: int
    lost: int
    duplicated: int
    in_order: bool

    @property
    def exactly_once(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.received == self.expected


def delivery(messages: Sequence[Received], expected: Sequence[int]) -> Delivery:
    """Compare ``messages`` (as received) with ``expected`` indices: lost ones, duplicates (by
    message id, and by index beyond what was expected) and whether the first copies came in the
    expected order."""
    seen: set[str] = set()
    first_copies: list[int] = []
    for message in messages:
        if message.message_id not in seen:
            seen.add(message.message_id)
            first_copies.append(message.index)
    want = collections.Counter(expected)
    got = collections.Counter(m.index for m in messages)
    id_duplicates = len(messages) - len(seen)
    index_duplicates = sum((got - want).values())
    return Delivery(
        expected=len(expected),
        received=len(messages),
        lost=sum((want - got).values()),
        duplicated=max(id_duplicates, index_duplicates),
        in_order=first_copies == list(expected),
    )


@dataclass(frozen=True, slots=True)
class Failover:
    """How traffic came back after a fault, as the receiver saw it."""

    seconds: float  # from the fault to the first message on the next path (or after the stall)
    old: str
    new: str
    by_path: bool  # False: no new path was seen, ``seconds`` ends the longest stall instead


def effective_paths(messages: Sequence[Received], events: Sequence[PeerEvent]) -> list[str]:
    """Each message's path: its kind from ``listen`` plus the newest path that came up for its
    peer before it arrived (``listen`` names a message's path by kind only, so a move between two
    paths of one kind, e.g. two uplinks or two relays, shows as a new path's "connected")."""
    connected = sorted((e.at, e.path) for e in events if e.state == "connected")
    out: list[str] = []
    newest, i = "", 0
    for message in messages:
        while i < len(connected) and connected[i][0] <= message.at:
            newest = connected[i][1]
            i += 1
        out.append(f"{message.path} {newest}")
    return out


def first_on_next_path(
    messages: Sequence[Received], events: Sequence[PeerEvent], fault_at: float
) -> Failover | None:
    """The failover a receiver saw: from ``fault_at`` to the first message over another path than
    the last one used before it; when no other path shows (a session following its peer's new
    address keeps its path), to the message ending the longest stall after the fault. None when
    nothing arrived before or after the fault."""
    paths = effective_paths(messages, [e for e in events if messages and e.peer_id == messages[0].peer_id])
    before = [i for i, m in enumerate(messages) if m.at <= fault_at]
    after = [i for i, m in enumerate(messages) if m.at > fault_at]
    if not before or not after:
        return None
    old = paths[before[-1]]
    for i in after:
        if paths[i] != old:
            return Failover(messages[i].at - fault_at, old, paths[i], True)
    previous, stall_end, longest = fault_at, after[0], 0.0
    for i in after:
        if messages[i].at - previous > longest:
            stall_end, longest = i, messages[i].at - previous
        previous = messages[i].at
    return Failover(messages[stall_end].at - fault_at, old, old, False)


@dataclass(frozen=True, slots=True)
class FaultRun:
    """One stream of generated messages with a fault injected part way."""

    delivery: Delivery
    failover: Failover | None
    sent: dict[str, Any]  # send's JSON
    fault_at: float


LATE_DUPLICATE_GRACE_S = 0.5
ARRIVAL_TIMEOUT_S = 30.0  # after the last expected message, how long late copies are awaited


def stream_through_fault(
    fleet: Fleet,
    sender: NodeSpec,
    receiver: NodeSpec,
    listener: Listener,
    fire: Callable[[], float],
    *,
    count: int,
    size: int,
    trigger_at: int,
) -> FaultRun:
    """``send --count`` from ``sender`` to ``receiver``; once ``listener`` (the receiver's) has
    ``trigger_at`` of them, ``fire()`` the fault (it returns the monotonic time it took effect);
    then wait for send to finish and every message to arrive."""
    base = len(listener.from_peer(sender.peer_id))
    proc = fleet.send_popen(sender, receiver, count, size)
    try:
        listener.wait_count(sender.peer_id, base + trigger_at)
    except FleetError:
        procs.stop_child(proc)
        raise
    fault_at = fire()
    sent = finish(sender, proc)
    # Every message was acknowledged, so each is in the receiver's inbox: a short wait; one
    # that never shows is counted lost below rather than raised here.
    with contextlib.suppress(FleetError):
        listener.wait_count(sender.peer_id, base + count, timeout=ARRIVAL_TIMEOUT_S)
    time.sleep(LATE_DUPLICATE_GRACE_S)
    messages = listener.from_peer(sender.peer_id)[base:]
    return FaultRun(
        delivery(messages, range(count)),
        first_on_next_path(messages, listener.events_of(sender.peer_id), fault_at),
        sent,
        fault_at,
    )


@dataclass(slots=True)
class Load:
    """What :func:`load_pairs` sent: ``send`` commands per (sender host, receiver host) and the
    messages acknowledged per path kind."""

    rounds: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    paths: collections.Counter[str] = field(default_factory=collections.Counter)


def load_pairs(
    fleet: Fleet,
    pairs: Sequence[tuple[NodeSpec, NodeSpec]],
    load: Load,
    *,
    until: float | None,
    count: int,
    size: int,
    workers: int = 4,
) -> None:
    """``send --count count --size size`` for every (sender, receiver) pair, round after round
    on ``workers`` threads, until ``until`` (``time.monotonic()``; None: one round); counted into
    ``load``. The first failure is raised once every thread stopped."""
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(mine: Sequence[tuple[NodeSpec, NodeSpec]]) -> None:
        try:
            while True:
                for a, b in mine:
                    sent = fleet.send(a, b, count, size)
                    with lock:
                        load.rounds[a.host, b.host] += 1
                        load.paths.update({k: int(v) for k, v in sent["paths"].items()})
                if until is None or time.monotonic() > until:
                    return
        except BaseException as exc:  # reported by the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(pairs[w::workers],), daemon=True) for w in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
