"""Build, switch and tear down the NAT lab with pyroute2 (netlink) and ``nft -f -``.

All netlink work runs on one :class:`~netlink.lab.netns.NamespaceThread`: a namespace is created
by that thread (``unshare``), an ``IPRoute`` made there talks to that namespace for good, and a
child process it spawns while inside a namespace inherits it. No ``ip`` subprocess per command.

Teardown (:mod:`netlink.lab.teardown`) is strict and also runs when building fails; processes
are stopped by pid (:mod:`netlink.lab.procs`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from netlink.lab import coturn, netns, procs, state, teardown
from netlink.lab.errors import (
    LabBuildError,
    LabPrerequisiteError,
    LabTopologyError,
    NamespaceError,
    NamespaceOp,
    NftError,
    NftFailure,
    Prerequisite,
    ProcessStopError,
)
from netlink.lab.nat import LAN_IF, WAN_IF, NatBehaviour, ruleset
from netlink.lab.summary import CoturnSummary, HostSummary, LabSummary, RouterSummary, ServerSummary
from netlink.lab.topology import LAN_PREFIXLEN, PUBLIC_PREFIXLEN, Host, Router, Topology

log = logging.getLogger(__name__)
T = TypeVar("T")

BRIDGE_IF = "br0"
HOST_IF = "eth0"
NFT_TIMEOUT_S = 10.0  # for all routers' nft together
NFT_ARGV = ("nft", "-f", "-")
CONNTRACK_FLUSH_ARGV = ("conntrack", "-F")


def missing_prerequisites(*, need_coturn: bool = True) -> tuple[Prerequisite, ...]:
    """What this machine lacks for the lab (empty when it can build one)."""
    missing: list[Prerequisite] = []
    if os.geteuid() != 0:
        missing.append(Prerequisite.ROOT)
    tools = [(Prerequisite.NFT, "nft"), (Prerequisite.CONNTRACK, "conntrack"), (Prerequisite.IP, "ip")]
    if need_coturn:
        tools.append((Prerequisite.TURNSERVER, coturn.TURNSERVER))
    missing.extend(p for p, tool in tools if shutil.which(tool) is None)
    return tuple(missing)


def _sysctl(path: str, value: str) -> None:
    """Write a sysctl of the calling thread's namespace (call on the namespace worker)."""
    try:
        with open(f"/proc/sys/{path}", "w") as fh:
            fh.write(value)
    except OSError as exc:
        raise NamespaceError(NamespaceOp.SYSCTL, path, exc.errno or 0, str(exc)) from exc


def _bridge_nf_off() -> None:
    for proto in ("iptables", "ip6tables", "arptables"):
        path = f"net/bridge/bridge-nf-call-{proto}"
        if os.path.exists(f"/proc/sys/{path}"):  # only with br_netfilter loaded
            _sysctl(path, "0")


class Lab:
    """A running lab. Use :meth:`up` (or ``with Lab.up(...) as lab``) and :meth:`down`."""

    def __init__(self, topology: Topology, workdir: Path) -> None:
        self.topology = topology
        self.workdir = workdir
        self.coturn_config: coturn.CoturnConfig | None = None
        self._runner = netns.NamespaceThread(f"lab-{topology.prefix}")
        self._ipr: dict[str, Any] = {}
        self._bridges: dict[tuple[str, str], int] = {}
        self._created: list[str] = []
        self._procs: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        self._sockets: list[socket.socket] = []
        self._extra_hosts: dict[str, str] = {}  # hosts added after bring-up (netlink.lab.failover)
        self._down = False
        self._released = False

    # -- bring-up ------------------------------------------------------------------------------
    @classmethod
    def up(
        cls,
        topology: Topology,
        *,
        with_coturn: bool = True,
        workdir: Path | None = None,
    ) -> Lab:
        """Build ``topology`` (and start coturn); on any failure everything is torn down."""
        missing = missing_prerequisites(need_coturn=with_coturn)
        if missing:
            raise LabPrerequisiteError(missing)
        check_topology(topology)
        try:
            if workdir is None:
                workdir = Path(tempfile.mkdtemp(prefix=topology.prefix))
            else:
                workdir.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise state.os_error(exc, workdir or tempfile.gettempdir()) from exc
        lab = cls(topology, workdir)
        # A program that forgets down() still cleans up when the interpreter exits normally;
        # a killed one leaves its lab in the registry for teardown.reap_stale().
        atexit.register(lab.down)
        try:
            lab._build(with_coturn)
        except BaseException:
            lab.down()
            raise
        return lab

    def _step(self, ns: str, what: str, fn: Callable[[], T]) -> T:
        try:
            return self._runner.run(ns, fn)
        except (LabBuildError, NamespaceError, NftError):
            raise
        except Exception as exc:
            raise LabBuildError(ns, what, exc) from exc

    def _new_netns(self, name: str, *, forward: bool = False, bridge: bool = False) -> Any:
        self._runner.create(name)
        self._created.append(name)

        # pyroute2 costs ~130 ms to import: only building needs it (not status or down).
        from pyroute2 import IPRoute  # noqa: PLC0415

        def setup() -> Any:
            _sysctl("net/ipv6/conf/all/disable_ipv6", "1")
            _sysctl("net/ipv6/conf/default/disable_ipv6", "1")
            if forward:
                _sysctl("net/ipv4/ip_forward", "1")
            if bridge:
                _bridge_nf_off()
            ipr = IPRoute()
            ipr.link("set", index=1, state="up")  # lo
            return ipr

        ipr = self._step(name, "namespace setup", setup)
        self._ipr[name] = ipr
        return ipr

    def _call(self, ns: str, what: str, fn: Callable[[Any], T]) -> T:
        ipr = self._ipr[ns]
        return self._step(ns, what, lambda: fn(ipr))

    def _veth(self, outer_ns: str, outer: str, inner_ns: str, inner: str, master: str) -> None:
        """A veth pair: ``outer`` up on bridge ``master`` in ``outer_ns``, ``inner`` in ``inner_ns``.

        One netlink request: the kernel creates the peer directly in its namespace and applies
        master and flags to the new link.
        """
        master_idx = self._bridges[(outer_ns, master)]

        def add(ipr: Any) -> None:
            fd = os.open(netns.netns_path(inner_ns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link(
                    "add",
                    ifname=outer,
                    kind="veth",
                    master=master_idx,
                    state="up",
                    peer={"ifname": inner, "net_ns_fd": fd},
                )
            finally:
                os.close(fd)

        self._call(outer_ns, f"veth {outer}", add)

    def _address(
        self, ns: str, ifname: str, addresses: Sequence[tuple[str, int]], routes: Sequence[tuple[str, str]]
    ) -> None:
        def conf(ipr: Any) -> None:
            (idx,) = ipr.link_lookup(ifname=ifname)
            for address, prefixlen in addresses:
                ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
            for dst, gateway in routes:
                ipr.route("add", dst=dst, gateway=gateway)

        self._call(ns, f"address {ifname}", conf)

    def _bridge(self, ns: str, name: str) -> None:
        def add(ipr: Any) -> int:
            ipr.link("add", ifname=name, kind="bridge", state="up")
            (idx,) = ipr.link_lookup(ifname=name)
            return int(idx)

        self._bridges[(ns, name)] = self._call(ns, f"bridge {name}", add)

    def _lan_routes(self, exclude: Router | None = None) -> list[tuple[str, str]]:
        """Routes to every router's LAN via its WAN (so ``open`` routers route, unNATed)."""
        return [(str(r.lan), str(r.wan)) for r in self.topology.routers if r is not exclude]

    def _build(self, with_coturn: bool) -> None:
        topo = self.topology
        # Registered before anything exists, with every planned namespace, so that a lab whose
        # owner is killed mid-build is still found and reaped (see teardown.reap_stale).
        state.register(self.record(planned=True))
        pub = topo.bridge_netns
        self._new_netns(pub, bridge=True)
        self._bridge(pub, BRIDGE_IF)

        srv = topo.server
        self._new_netns(srv.netns)
        self._veth(pub, "srv", srv.netns, HOST_IF, BRIDGE_IF)
        self._address(
            srv.netns,
            HOST_IF,
            [(str(a), PUBLIC_PREFIXLEN) for a in srv.addresses],
            self._lan_routes(),
        )
        turn: subprocess.Popen[bytes] | None = None
        if with_coturn:
            self.coturn_config = coturn.new_config(srv.primary, srv.secondary)
            turn = coturn.start(self._runner, srv.netns, self.coturn_config, self.workdir)
            self._track(turn, "turnserver")
            state.register(self.record(planned=True))

        for router in topo.routers:
            self._new_netns(router.netns, forward=True, bridge=True)
            self._veth(pub, f"r{router.name}", router.netns, WAN_IF, BRIDGE_IF)
            self._address(
                router.netns, WAN_IF, [(str(router.wan), PUBLIC_PREFIXLEN)], self._lan_routes(router)
            )
            self._bridge(router.netns, LAN_IF)
            self._address(router.netns, LAN_IF, [(str(router.lan_address), LAN_PREFIXLEN)], [])
            for host in router.hosts:
                self._new_netns(host.netns)
                self._veth(router.netns, f"h{host.name}", host.netns, HOST_IF, LAN_IF)
                self._address(
                    host.netns,
                    HOST_IF,
                    [(str(host.address), host.prefixlen)],
                    [("default", str(host.gateway))],
                )
        for host in topo.open_hosts:
            self._new_netns(host.netns)
            self._veth(pub, f"o{host.name}", host.netns, HOST_IF, BRIDGE_IF)
            self._address(host.netns, HOST_IF, [(str(host.address), host.prefixlen)], self._lan_routes())
        self._load_rulesets(topo.routers, flush_conntrack=False)
        if turn is not None and self.coturn_config is not None:
            waited = coturn.wait_ready(
                self._runner, srv.netns, config=self.coturn_config, proc=turn, workdir=self.workdir
            )
            log.debug("coturn answered after %.3f s", waited)
        state.register(self.record())

    # -- NAT behaviour -------------------------------------------------------------------------
    def _load_rulesets(self, routers: Sequence[Router], *, flush_conntrack: bool) -> None:
        """``nft -f -`` in each router (concurrently), then ``conntrack -F`` if asked.

        All nft processes share one deadline; when it passes (or anything else goes wrong),
        every nft still running is killed and reaped before the error propagates.
        """
        running: list[tuple[Router, subprocess.Popen[bytes]]] = []
        errors: list[NftError] = []
        try:
            for router in routers:
                proc = self._runner.run(
                    router.netns,
                    lambda: subprocess.Popen(
                        NFT_ARGV,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    ),
                )
                running.append((router, proc))
            deadline = time.monotonic() + NFT_TIMEOUT_S
            for router, proc in running:
                text = ruleset(router.behaviour, router.wan).encode()
                try:
                    _, err = proc.communicate(text, timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise NftError(router.netns, None, "", NftFailure.TIMEOUT) from None
                if proc.returncode != 0:
                    errors.append(NftError(router.netns, proc.returncode, err.decode(errors="replace")))
        finally:
            _kill_all([proc for _, proc in running])
        if errors:
            raise errors[0]
        if flush_conntrack:
            for router in routers:
                self._flush_conntrack(router)

    def _flush_conntrack(self, router: Router) -> None:
        def flush() -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                CONNTRACK_FLUSH_ARGV, capture_output=True, timeout=NFT_TIMEOUT_S, check=False
            )

        try:
            done = self._runner.run(router.netns, flush)
        except subprocess.TimeoutExpired:  # subprocess.run has killed and reaped it
            raise NftError(router.netns, None, "conntrack -F", NftFailure.TIMEOUT) from None
        if done.returncode != 0:
            raise NftError(router.netns, done.returncode, done.stderr.decode(errors="replace"))

    def set_nat(self, router: str, behaviour: NatBehaviour) -> None:
        """Switch ``router`` to ``behaviour``: its rule set is replaced and conntrack flushed."""
        topo = self.topology.with_behaviour(router, behaviour)
        self.topology = topo
        self._load_rulesets([topo.router(router)], flush_conntrack=True)
        state.register(self.record())

    # -- coturn --------------------------------------------------------------------------------
    def stop_coturn(self) -> None:
        """Kill coturn (SIGKILL: its clients get no goodbye); its addresses stay."""
        self.kill_process("turnserver")

    def kill_process(self, name: str) -> None:
        """SIGKILL every process the lab tracks as ``name`` (coturn is ``turnserver``)."""
        for pid, (proc, tracked) in list(self._procs.items()):
            if tracked == name:
                procs.kill_child(proc)
                del self._procs[pid]
        state.register(self.record())

    def start_turnserver(self, name: str, config: coturn.CoturnConfig, workdir: Path) -> None:
        """Another coturn in ``srv`` (netlink.lab.turn_pair), on addresses ``srv`` already has,
        its files in ``workdir`` (inside the lab's own, so teardown finds it by the lab's prefix),
        tracked as ``name`` for :meth:`kill_process`; returns once it answers."""
        srv = self.topology.server.netns
        turn = coturn.start(self._runner, srv, config, workdir)
        self._track(turn, name)
        state.register(self.record())
        coturn.wait_ready(self._runner, srv, config=config, proc=turn, workdir=workdir)

    def start_coturn(self, config: coturn.CoturnConfig | None = None) -> None:
        """(Re)start coturn on the same addresses, with ``config`` (e.g. short lifetimes) or the
        current one; returns once it answers. Allocations of a killed coturn are gone."""
        self.stop_coturn()
        srv = self.topology.server
        turn_config = config or self.coturn_config or coturn.new_config(srv.primary, srv.secondary)
        self.coturn_config = turn_config
        turn = coturn.start(self._runner, srv.netns, turn_config, self.workdir)
        self._track(turn, "turnserver")
        state.register(self.record())
        coturn.wait_ready(self._runner, srv.netns, config=turn_config, proc=turn, workdir=self.workdir)

    # -- using the lab ------------------------------------------------------------------------
    def netns_of(self, name: str) -> str:
        """The namespace of a host (``A1``, ``O1``), router (``A``), ``srv``, ``pub`` or a netns."""
        topo = self.topology
        if name in topo.namespaces or name in self._extra_hosts.values():
            return name
        if name in self._extra_hosts:
            return self._extra_hosts[name]
        if name == "srv":
            return topo.server.netns
        if name == "pub":
            return topo.bridge_netns
        if len(name) == 1:
            return topo.router(name).netns
        return topo.host(name).netns

    def host(self, name: str) -> Host:
        return self.topology.host(name)

    # -- failover (netlink.lab.failover builds on these) ------------------------------------------
    def add_host_namespace(self, name: str) -> str:
        """A new empty host namespace ``<prefix>h<name>`` (lo up), torn down with the lab."""
        ns = f"{self.topology.prefix}h{name}"
        self._new_netns(ns)
        self._extra_hosts[name] = ns
        state.register(self.record())
        return ns

    def plug(self, host: str, ifname: str, router: str, peer: str) -> None:
        """A veth from ``host``'s ``ifname`` to ``router``'s LAN bridge (named ``peer`` there)."""
        self._veth(self.topology.router(router).netns, peer, self.netns_of(host), ifname, LAN_IF)

    def netlink(self, name: str, fn: Callable[[Any], T]) -> T:
        """``fn(ipr)`` with the lab's pyroute2 ``IPRoute`` of ``name``'s namespace."""
        return self._call(self.netns_of(name), "netlink", fn)

    def run_in(self, name: str, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in-process inside the namespace of ``name`` (on the lab's worker)."""
        return self._runner.run(self.netns_of(name), fn)

    def socket(
        self,
        name: str,
        type: int = socket.SOCK_DGRAM,
        *,
        bind: tuple[str, int] | None = None,
        timeout: float | None = None,
    ) -> socket.socket:
        """A socket living in ``name``'s namespace; closed at :meth:`down` if still open."""
        sock = self._runner.socket(self.netns_of(name), socket.AF_INET, type)
        self._sockets.append(sock)
        if timeout is not None:
            sock.settimeout(timeout)
        if bind is not None:
            sock.bind(bind)
        return sock

    def command(self, name: str, argv: Sequence[str]) -> list[str]:
        """The ``ip netns exec`` command line that runs ``argv`` in ``name``."""
        return ["ip", "netns", "exec", self.netns_of(name), *argv]

    def popen(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``name`` through ``ip netns exec``; stopped at :meth:`down`."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(self.command(name, argv), **kwargs)
        self._track(proc, argv[0])
        return proc

    def run(
        self, name: str, argv: Sequence[str], *, timeout: float = 30.0, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` inside ``name`` to completion (output captured)."""
        proc = self.popen(
            name,
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        finally:
            procs.stop_child(proc)
            self._procs.pop(proc.pid, None)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def _track(self, proc: subprocess.Popen[bytes], name: str) -> None:
        self._procs[proc.pid] = (proc, name)

    # -- description ---------------------------------------------------------------------------
    def summary(self) -> LabSummary:
        """Namespaces, addresses, behaviours, coturn and how to enter each host."""
        topo = self.topology
        turn = self.coturn_config
        server = topo.server
        return LabSummary(
            prefix=topo.prefix,
            bridge_netns=topo.bridge_netns,
            server=ServerSummary(server.netns, server.primary, server.secondary, server.stranger),
            routers=tuple(RouterSummary(r.name, r.netns, r.behaviour, r.wan, r.lan) for r in topo.routers),
            hosts=tuple(HostSummary(h.name, h.netns, h.address, h.router) for h in topo.hosts),
            coturn=None
            if turn is None
            else CoturnSummary(
                primary=turn.primary,
                secondary=turn.secondary,
                port=turn.port,
                alt_port=turn.alt_port,
                tls_port=turn.tls_port,
                username=turn.username,
                password=turn.password,
                realm=turn.realm,
                log=str(self.workdir / "turn.log"),
            ),
            workdir=str(self.workdir),
        )

    def record(self, *, planned: bool = False) -> state.LabRecord:
        """What the lab owns: the namespaces made so far (or, ``planned``, all it will make)."""
        return state.LabRecord(
            prefix=self.topology.prefix,
            namespaces=self.topology.namespaces if planned else tuple(self._created),
            processes=tuple(
                state.ProcessRecord(pid, name, self.topology.prefix)
                if name != "turnserver"
                else state.ProcessRecord(pid, name, str(self.workdir))
                for pid, (_, name) in self._procs.items()
            ),
            workdir=str(self.workdir),
            # A detached lab belongs to nobody once released; while building it is ours.
            owner_pid=None if self._released else os.getpid(),
            summary=self.summary(),
        )

    # -- teardown ------------------------------------------------------------------------------
    def release(self) -> state.LabRecord:
        """Let go of the lab without tearing it down (the CLI's detached ``up``)."""
        atexit.unregister(self.down)
        self._released = True
        record = self.record()
        self._close_handles()
        self._procs.clear()
        self._down = True
        state.register(record)
        return record

    def _close_handles(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        iprs = list(self._ipr.values())
        self._ipr.clear()

        def close_all() -> None:
            for ipr in iprs:
                with contextlib.suppress(Exception):
                    ipr.close()

        with contextlib.suppress(Exception):
            self._runner.run(None, close_all)
        self._runner.close()

    def down(self) -> None:
        """Stop every process (by pid), delete every namespace, remove the lab directory."""
        if self._down:
            return
        self._down = True
        atexit.unregister(self.down)
        errors: list[BaseException] = []
        for proc, _ in self._procs.values():
            try:
                procs.stop_child(proc)
            except Exception as exc:  # keep tearing down; report the first problem
                errors.append(exc)
        self._procs.clear()
        self._close_handles()
        try:
            teardown.remove(self.record())
        except Exception as exc:
            errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def _kill_all(children: Sequence[subprocess.Popen[bytes]]) -> None:
    """Kill and reap every child still running; then raise the first that would not die."""
    stuck: ProcessStopError | None = None
    for proc in children:
        try:
            procs.kill_child(proc)
        except ProcessStopError as exc:
            stuck = stuck or exc
        for pipe in (proc.stdin, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
    if stuck is not None:
        raise stuck


def check_topology(topology: Topology) -> None:
    """Refuse a lab whose namespace names collide with existing ones."""
    for name in topology.namespaces:
        if netns.exists(name):
            raise LabTopologyError("prefix", f"namespace {name} already exists")
