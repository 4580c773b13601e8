"""RFC 7065 TURN URIs."""

from __future__ import annotations

import pytest

from node.proto.turn.uri import TurnServerAddress, TurnTransport, parse_turn_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("turn:203.0.113.10", TurnServerAddress("203.0.113.10", 3478, TurnTransport.UDP)),
        ("turn:example.org:3479?transport=tcp", TurnServerAddress("example.org", 3479, TurnTransport.TCP)),
        ("turn:example.org?transport=udp", TurnServerAddress("example.org", 3478, TurnTransport.UDP)),
        ("turns:example.org", TurnServerAddress("example.org", 5349, TurnTransport.TLS)),
        ("turns:[2001:db8::1]:443?transport=tcp", TurnServerAddress("2001:db8::1", 443, TurnTransport.TLS)),
    ],
)
def test_good_uris(text: str, expected: TurnServerAddress) -> None:
    assert parse_turn_uri(text) == expected
    assert parse_turn_uri(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "stun:example.org",
        "turn:",
        "turn:example.org:0",
        "turn:example.org:70000",
        "turn:example.org:x",
        "turn:2001:db8::1",
        "turn:[2001:db8::1",
        "turn:[nothost]:3478",
        "turns:example.org?transport=udp",
        "turn:example.org?transport=sctp",
        "turn:example.org?foo=bar",
    ],
)
def test_bad_uris(text: str) -> None:
    assert parse_turn_uri(text) is None
