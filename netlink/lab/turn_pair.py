"""A second coturn in the lab's server namespace, on addresses of its own, so that a node with two
TURN servers can lose one (``lab.stop_coturn()`` kills only the first) and move to the other.

It serves the same username, password and realm as the first (a node's ``[turn]`` section has
one set of credentials for all its servers) on 203.0.113.13 (primary, relayed addresses) and .14
(RFC 5780 alternate), added to ``srv``'s ``eth0``; its files live in ``<lab workdir>/turn2``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from netlink.lab.builder import HOST_IF, Lab
from netlink.lab.coturn import CoturnConfig
from netlink.lab.topology import PUBLIC_PREFIXLEN

SECOND_PRIMARY = ipaddress.IPv4Address("203.0.113.13")  # RFC 5737 TEST-NET-3, clear of .10-.12
SECOND_SECONDARY = ipaddress.IPv4Address("203.0.113.14")
SECOND_NAME = "turnserver-2"  # how the lab tracks it (Lab.kill_process)


def start_second_coturn(lab: Lab) -> CoturnConfig:
    """Start (or restart) the second coturn; returns its config once it answers STUN, TCP and TLS."""
    first = lab.coturn_config
    if first is None:
        raise ValueError("the lab has no coturn: build it with with_coturn=True")
    lab.kill_process(SECOND_NAME)

    def add_addresses(ipr: Any) -> None:
        (index,) = ipr.link_lookup(ifname=HOST_IF)
        present = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index)}
        for address in (SECOND_PRIMARY, SECOND_SECONDARY):
            if str(address) not in present:
                ipr.addr("add", index=index, address=str(address), prefixlen=PUBLIC_PREFIXLEN)

    lab.netlink("srv", add_addresses)
    config = dataclasses.replace(first, primary=SECOND_PRIMARY, secondary=SECOND_SECONDARY)
    workdir = lab.workdir / "turn2"
    workdir.mkdir(exist_ok=True)
    lab.start_turnserver(SECOND_NAME, config, workdir)
    return config


def stop_second_coturn(lab: Lab) -> None:
    """SIGKILL the second coturn (the first keeps running)."""
    lab.kill_process(SECOND_NAME)
