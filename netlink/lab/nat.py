"""NAT behaviours (RFC 4787 terms) and the nftables rule set that gives each one.

Every rule set replaces the router's whole rule set (``flush ruleset``) and always has:

- forward policy drop except established/related and LAN -> WAN;
- an input drop of new WAN connections to the router itself: without it an early punch packet
  creates a conntrack entry to the router and the host's mapping is remapped.

``full-cone`` and ``restricted-cone`` are built per mapping: after masquerade has chosen the WAN
port, a postrouting rule records ``WAN port -> host address . host port`` in a dynamic nft map
(and, for restricted-cone, ``remote address . WAN port`` in a set); a prerouting ``dnat`` sends
new inbound UDP for a recorded WAN port back to its host (restricted-cone: only from addresses
that host's mapping has sent to). Ports nobody mapped are not forwarded, and any number of hosts
may sit behind such a router.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

WAN_IF = "wan0"
LAN_IF = "lan0"
TABLE = "bcl"
# symmetric-sequential: the first port handed out and the step between new mappings.
SEQUENTIAL_BASE_PORT = 40000
SEQUENTIAL_STRIDE = 1
SEQUENTIAL_SLOTS = 256
# full/restricted-cone: how long a recorded mapping (and a contacted address) is honoured after
# the host's last outbound packet on it; conntrack forgets unreplied UDP after 30 s anyway.
CONE_TIMEOUT_S = 300


class NatBehaviour(enum.Enum):
    """A router's mapping and filtering behaviour (RFC 4787 sections 4.1 and 5)."""

    OPEN = "open"
    FULL_CONE = "full-cone"
    RESTRICTED_CONE = "restricted-cone"
    PORT_RESTRICTED = "port-restricted"
    SYMMETRIC = "symmetric"
    SYMMETRIC_SEQUENTIAL = "symmetric-sequential"
    UDP_BLOCKED = "udp-blocked"

    @property
    def is_cone(self) -> bool:
        """True for the recipes that let inbound UDP through a mapping by ``dnat``."""
        return self in (NatBehaviour.FULL_CONE, NatBehaviour.RESTRICTED_CONE)

    @property
    def promise(self) -> Promise:
        """What an RFC 4787 probe from behind this router must observe."""
        return _PROMISES[self]


class Mapping(enum.Enum):
    """RFC 4787 section 4.1 mapping behaviour."""

    NONE = "none"  # no UDP leaves (udp-blocked)
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


@dataclass(frozen=True, slots=True)
class Promise:
    """The probe table's row for one behaviour.

    The ``from_*`` fields say whether an unsolicited UDP packet reaches the host through the
    mapping it opened towards the server's primary address and port.
    """

    mapping: Mapping
    translated: bool  # the server sees the router's WAN address, not the host's
    sequential: bool  # new mappings step by a constant stride
    from_same_endpoint: bool
    from_other_port: bool
    from_other_address: bool
    from_stranger: bool
    udp: bool
    tcp: bool


_EIM = Mapping.ENDPOINT_INDEPENDENT
_APDM = Mapping.ADDRESS_AND_PORT_DEPENDENT
_PROMISES: dict[NatBehaviour, Promise] = {
    NatBehaviour.OPEN: Promise(_EIM, False, False, True, True, True, True, True, True),
    NatBehaviour.FULL_CONE: Promise(_EIM, True, False, True, True, True, True, True, True),
    NatBehaviour.RESTRICTED_CONE: Promise(_EIM, True, False, True, True, False, False, True, True),
    NatBehaviour.PORT_RESTRICTED: Promise(_EIM, True, False, True, False, False, False, True, True),
    NatBehaviour.SYMMETRIC: Promise(_APDM, True, False, True, False, False, False, True, True),
    NatBehaviour.SYMMETRIC_SEQUENTIAL: Promise(_APDM, True, True, True, False, False, False, True, True),
    NatBehaviour.UDP_BLOCKED: Promise(Mapping.NONE, True, False, False, False, False, False, False, True),
}


def ruleset(behaviour: NatBehaviour, wan: ipaddress.IPv4Address, ports: tuple[int, int] | None = None) -> str:
    """The complete ``nft -f`` input for a router with WAN address ``wan``; ``ports`` confines
    masquerade's WAN ports to that range (a rebooted router, netlink.lab.faults)."""
    restricted = behaviour is NatBehaviour.RESTRICTED_CONE
    forward = ["ct state established,related accept"]
    if behaviour is NatBehaviour.UDP_BLOCKED:
        forward.append(f'iifname "{LAN_IF}" oifname "{WAN_IF}" meta l4proto udp drop')
    forward.append(f'iifname "{LAN_IF}" accept')
    if behaviour.is_cone:
        forward.append(f'iifname "{WAN_IF}" ct status dnat accept')
    forward_policy = "accept" if behaviour is NatBehaviour.OPEN else "drop"

    body = [f"table ip {TABLE} {{"]
    if behaviour.is_cone:
        body.append(
            "  map cone { type inet_service : ipv4_addr . inet_service; "
            f"flags dynamic,timeout; timeout {CONE_TIMEOUT_S}s; }}"
        )
    if restricted:
        body.append(
            "  set contacted { type ipv4_addr . inet_service; "
            f"flags dynamic,timeout; timeout {CONE_TIMEOUT_S}s; }}"
        )
    body += [
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f'    iifname "{WAN_IF}" ct state established,related accept',
        f'    iifname "{WAN_IF}" drop',
        "  }",
        "  chain forward {",
        f"    type filter hook forward priority filter; policy {forward_policy};",
        *(f"    {rule}" for rule in forward),
        "  }",
    ]
    if behaviour.is_cone:
        only = " ip saddr . udp dport @contacted" if restricted else ""
        body += [
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            f'    iifname "{WAN_IF}" ip daddr {wan} meta l4proto udp{only} '
            "dnat ip addr . port to udp dport map @cone",
            "  }",
            # After masquerade (srcnat) the packet carries its WAN port: record the mapping.
            "  chain mappings {",
            "    type filter hook postrouting priority srcnat + 10; policy accept;",
            f'    oifname "{WAN_IF}" meta l4proto udp ct direction original '
            "update @cone { udp sport : ct original ip saddr . ct original proto-src }",
            *(
                [
                    f'    oifname "{WAN_IF}" meta l4proto udp ct direction original '
                    "update @contacted { ip daddr . udp sport }"
                ]
                if restricted
                else []
            ),
            "  }",
        ]
    if behaviour is not NatBehaviour.OPEN:
        post = []
        if behaviour is NatBehaviour.SYMMETRIC_SEQUENTIAL:
            slots = ", ".join(
                f"{i} : {SEQUENTIAL_BASE_PORT + i * SEQUENTIAL_STRIDE}" for i in range(SEQUENTIAL_SLOTS)
            )
            post.append(
                f'oifname "{WAN_IF}" meta l4proto udp snat to {wan} : '
                f"numgen inc mod {SEQUENTIAL_SLOTS} map {{ {slots} }}"
            )
        random = " fully-random" if behaviour is NatBehaviour.SYMMETRIC else ""
        if ports is not None:  # a port range needs a transport protocol match first
            post.append(
                f'oifname "{WAN_IF}" meta l4proto {{ tcp, udp }} masquerade to :{ports[0]}-{ports[1]}{random}'
            )
        post.append(f'oifname "{WAN_IF}" masquerade{random}')
        body += [
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            *(f"    {rule}" for rule in post),
            "  }",
        ]
    body.append("}")
    return "flush ruleset\n" + "\n".join(body) + "\n"
