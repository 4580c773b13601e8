"""The source address the kernel picks for a remote, found without sending anything."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from node.proto.vocabulary import IpEndpoint
from node.transports.source_address import source_address


def test_loopback_is_reached_from_loopback() -> None:
    assert source_address(IpEndpoint(ipaddress.ip_address("127.0.0.1"), 47474)) == "127.0.0.1"
    assert source_address(IpEndpoint(ipaddress.ip_address("127.0.0.1"), 0)) == "127.0.0.1"


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured here")
    assert source_address(IpEndpoint(ipaddress.ip_address("::1"), 47474)) == "::1"
