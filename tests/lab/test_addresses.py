"""Addresses: only 198.18.0.0/15 and the TEST-NETs; no route leads out of the lab."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable

import pytest

from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import ALLOWED_NETS, is_allowed, plan

pytestmark = pytest.mark.lab

FORBIDDEN = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


def test_plan_uses_only_benchmarking_and_test_nets() -> None:
    topo = plan([(chr(ord("A") + i), NatBehaviour.SYMMETRIC) for i in range(26)], hosts_per_router=3,
                open_hosts=5)  # fmt: skip
    addresses = list(topo.addresses())
    assert len(addresses) == len(set(addresses))
    assert all(is_allowed(a) for a in addresses)
    assert not any(a in net for a in addresses for net in FORBIDDEN)
    assert all(len(ns) <= 15 for ns in topo.namespaces)  # fits an ifname too, if ever needed


def _json(lab: Lab, ns: str, argv: list[str]) -> list[dict[str, object]]:
    done = lab.run(ns, argv)
    assert done.returncode == 0, done.stderr
    parsed: list[dict[str, object]] = json.loads(done.stdout or b"[]")
    return parsed


def test_every_address_and_route_in_the_lab_stays_inside(nat_lab: Lab) -> None:
    topo = nat_lab.topology
    gateways = {h.netns: h.gateway for h in topo.hosts}
    for ns in topo.namespaces:
        for link in _json(nat_lab, ns, ["ip", "-j", "addr"]):
            for info in link.get("addr_info", []):  # type: ignore[attr-defined]
                assert info["family"] == "inet", (ns, info)  # IPv6 is off in the lab
                address = ipaddress.ip_address(info["local"])
                assert address.is_loopback or is_allowed(address), (ns, address)
        for route in _json(nat_lab, ns, ["ip", "-j", "-4", "route"]):
            dst = str(route["dst"])
            if dst == "default":  # only hosts behind a router, via that router
                assert str(route["gateway"]) == str(gateways.get(ns)), (ns, route)
                continue
            assert any(ipaddress.ip_network(dst).subnet_of(n) for n in ALLOWED_NETS), (ns, route)
            if "gateway" in route:
                assert is_allowed(ipaddress.ip_address(str(route["gateway"]))), (ns, route)
    # Routers, the server and the bridge have no default route: nothing can leave the lab.
    for ns in (topo.bridge_netns, topo.server.netns, *(r.netns for r in topo.routers)):
        routes = _json(nat_lab, ns, ["ip", "-j", "-4", "route"])
        assert all(r["dst"] != "default" for r in routes), ns


def test_lab_leaves_the_root_namespace_alone(lab_factory: Callable[..., Lab]) -> None:
    def root_state() -> tuple[str, str, str]:
        def out(*argv: str) -> str:
            return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

        return out("ip", "-o", "link"), out("ip", "-o", "addr"), out("ip", "route")

    before = root_state()
    lab_factory(with_coturn=False)
    assert root_state() == before
