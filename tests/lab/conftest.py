"""Fixtures for the namespace NAT lab.

Lab tests carry the ``lab`` marker. Without root, nft, conntrack, ip or turnserver they are
skipped with a reason naming what is missing; with ``CI=true`` a missing piece is a failure, so
a forgotten install step cannot pass green.

Fixtures:
- ``lab_ready`` (session): the gate above; also reaps labs left by a dead test process.
- ``lab_factory`` (function): ``make(nats=..., hosts_per_router=1, open_hosts=0,
  with_coturn=True) -> Lab``; every lab it made is torn down after the test, pass or fail.
- ``nat_lab`` (module): routers A (port-restricted) and B (symmetric) with a host each, an open
  host O1, coturn; tests switch behaviours with ``nat_lab.set_nat(...)``.
- ``echo_servers`` (module): the RFC 4787 probe's echo servers in ``nat_lab``'s server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from netlink.lab import builder, probe, teardown
from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from netlink.lab.topology import plan
from tests.support.prerequisites import unavailable

LabFactory = Callable[..., Lab]


@pytest.fixture(scope="session")
def lab_ready() -> None:
    missing = builder.missing_prerequisites()
    if missing:
        what = ", ".join(p.value for p in missing)
        unavailable(f"NAT lab needs {what} (missing on this machine)")
    teardown.reap_stale()


@pytest.fixture
def lab_factory(lab_ready: None) -> Iterator[LabFactory]:
    made: list[Lab] = []

    def make(
        nats: Sequence[tuple[str, NatBehaviour]] = (
            ("A", NatBehaviour.PORT_RESTRICTED),
            ("B", NatBehaviour.SYMMETRIC),
        ),
        **kwargs: Any,
    ) -> Lab:
        with_coturn = kwargs.pop("with_coturn", True)
        lab = Lab.up(plan(nats, **kwargs), with_coturn=with_coturn)
        made.append(lab)
        return lab

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for lab in made:
            try:
                lab.down()
            except Exception as exc:  # tear the others down all the same
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="module")
def nat_lab(lab_ready: None) -> Iterator[Lab]:
    topology = plan((("A", NatBehaviour.PORT_RESTRICTED), ("B", NatBehaviour.SYMMETRIC)), open_hosts=1)
    with Lab.up(topology) as lab:
        yield lab


@pytest.fixture(scope="module")
def echo_servers(nat_lab: Lab) -> Iterator[probe.EchoServers]:
    servers = probe.EchoServers(nat_lab)
    try:
        yield servers
    finally:
        servers.close()
