"""Faults without a netlink hint, for the coordinator's failover tests: traffic silently dropped on
the way, a router that lets its hosts reach nothing but the TURN servers, a NAT that "reboots".

Each fault is an nftables table of its own, loaded next to the router's NAT rule set (never in
it), so lifting it is ``delete table``. :func:`netlink.lab.builder.Lab.set_nat` flushes a router's
whole rule set, and with it any fault loaded there.

Every rule *drops*, never rejects: the sender gets no ICMP and no RST, as behind a real firewall
that eats packets, so the node can only notice the fault by missing acknowledgements.

A fault can be *armed*: :class:`PendingNft` starts ``nft -f -`` in the namespace beforehand and
:meth:`PendingNft.fire` only writes the rule set down its stdin, so the fault takes effect a pipe
write after it is fired, not a process start (~10 ms) later (bench/failover.py times from it).
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from dataclasses import dataclass

from netlink.lab import procs
from netlink.lab.builder import NFT_TIMEOUT_S, Lab
from netlink.lab.errors import NftError, NftFailure
from netlink.lab.nat import LAN_IF, WAN_IF, NatBehaviour, ruleset

IPv4 = ipaddress.IPv4Address
# A rebooted NAT maps into a port range no host port falls in (a host's ephemeral ports are
# 32768-60999), so every mapping it makes differs from the one before.
REBOOT_PORTS = (20000, 29999)
DROPPED = ("udp", "tcp")


@dataclass(frozen=True, slots=True)
class SilentDrop:
    """``protocol`` between ``a`` and ``b`` (both directions) dropped on the public bridge."""

    a: IPv4
    b: IPv4
    protocol: str

    @property
    def table(self) -> str:
        return f"bcldrop_{self.protocol}_{int(self.a)}_{int(self.b)}"

    def rules(self) -> str:
        """nft input adding the table. The bridge family filters frames on the bridge itself
        (no br_netfilter), so open hosts, routers' WAN sides and the server are all covered."""
        proto = f"ip protocol {self.protocol}"
        return (
            f"table bridge {self.table} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            f"    ip saddr {self.a} ip daddr {self.b} {proto} drop\n"
            f"    ip saddr {self.b} ip daddr {self.a} {proto} drop\n"
            "  }\n"
            "}\n"
        )

    def lift(self) -> str:
        return f"delete table bridge {self.table}\n"


def silent_drop(a: IPv4, b: IPv4, protocol: str = "udp") -> SilentDrop:
    """The fault: ``protocol`` (``udp`` or ``tcp``) between two public addresses dropped."""
    if protocol not in DROPPED:
        raise ValueError(f"protocol must be one of {DROPPED}, got {protocol!r}")
    return SilentDrop(a, b, protocol)


@dataclass(frozen=True, slots=True)
class OnlyReach:
    """Router ``router`` forwards only to and from ``allowed`` (e.g. the TURN servers)."""

    router: str
    allowed: tuple[IPv4, ...]

    TABLE = "bclonly"

    def rules(self) -> str:
        # Before the NAT rule set's forward chain (priority filter): a drop in any base chain is
        # final, so nothing that chain accepts gets past this one.
        allowed = ", ".join(str(a) for a in self.allowed)
        return (
            f"table ip {self.TABLE} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter - 10; policy accept;\n"
            f'    iifname "{LAN_IF}" ip daddr != {{ {allowed} }} drop\n'
            f'    iifname "{WAN_IF}" ip saddr != {{ {allowed} }} drop\n'
            "  }\n"
            "}\n"
        )

    def lift(self) -> str:
        return f"delete table ip {self.TABLE}\n"


def rebooted_ruleset(behaviour: NatBehaviour, wan: IPv4, ports: tuple[int, int] = REBOOT_PORTS) -> str:
    """The rule set of a router that came back from a reboot: the same behaviour, but mapping
    into ``ports``, so every host's mapping changes (conntrack is flushed with it)."""
    return ruleset(behaviour, wan, ports=ports)


class PendingNft:
    """``nft -f -`` (then ``conntrack -F`` when asked) started in ``name``'s namespace, waiting
    for its input: :meth:`fire` applies it at the cost of a pipe write."""

    def __init__(self, lab: Lab, name: str, *, flush_conntrack: bool = False) -> None:
        self._netns = lab.netns_of(name)
        script = "nft -f - && conntrack -F" if flush_conntrack else "nft -f -"
        self._proc = lab.popen(
            name,
            ["sh", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def fire(self, text: str) -> float:
        """Apply ``text``; returns ``time.monotonic()`` taken right before it was handed over.
        Raises NftError when nft (or conntrack) fails or outlasts NFT_TIMEOUT_S."""
        fired = time.monotonic()
        try:
            _, err = self._proc.communicate(text.encode(), timeout=NFT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            procs.kill_child(self._proc)
            raise NftError(self._netns, None, "nft -f -", NftFailure.TIMEOUT) from None
        if self._proc.returncode != 0:
            raise NftError(self._netns, self._proc.returncode, err.decode(errors="replace"))
        return fired

    def cancel(self) -> None:
        """Never fired: stop the waiting nft."""
        procs.kill_child(self._proc)


def apply(lab: Lab, name: str, text: str, *, flush_conntrack: bool = False) -> float:
    """Load ``text`` with nft in ``name``'s namespace now (see :class:`PendingNft`)."""
    return PendingNft(lab, name, flush_conntrack=flush_conntrack).fire(text)


def block(lab: Lab, fault: SilentDrop) -> float:
    """Start dropping (on the public bridge); returns when the rule is in force."""
    return apply(lab, "pub", fault.rules())


def unblock(lab: Lab, fault: SilentDrop) -> None:
    apply(lab, "pub", fault.lift())


def only_reach(lab: Lab, router: str, allowed: tuple[IPv4, ...]) -> OnlyReach:
    """Let ``router``'s hosts reach nothing but ``allowed`` (and be reached from nothing else);
    existing connections to anything else are cut too (the drop is checked for every packet)."""
    fault = OnlyReach(router, allowed)
    apply(lab, router, fault.rules())
    return fault


def reboot_nat(lab: Lab, router: str, ports: tuple[int, int] = REBOOT_PORTS) -> float:
    """The router "reboots": conntrack flushed, and its NAT maps into ``ports`` from now on."""
    return arm_reboot(lab, router).fire(rebooted_text(lab, router, ports))


def arm_reboot(lab: Lab, router: str) -> PendingNft:
    return PendingNft(lab, router, flush_conntrack=True)


def rebooted_text(lab: Lab, router: str, ports: tuple[int, int] = REBOOT_PORTS) -> str:
    planned = lab.topology.router(router)
    return rebooted_ruleset(planned.behaviour, planned.wan, ports)
