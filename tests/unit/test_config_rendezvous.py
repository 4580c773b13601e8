"""``[rendezvous]``: introducer addresses are parsed and checked when the config is read."""

from __future__ import annotations

import pytest

from node.config import ConfigError, ConfigProblem, parse
from node.proto.vocabulary import TransportKind

PEER = "a" * 52


def test_defaults_serve_nothing_and_know_no_introducer() -> None:
    section = parse("").rendezvous
    assert (section.serve, section.introducers, section.punch) == (False, (), True)


def test_introducers_parse_with_and_without_a_pinned_id() -> None:
    text = f'[rendezvous]\nserve = true\nintroducers = ["tls://198.51.100.7:9443", "{PEER}@tls://[::1]:9"]'
    plain, pinned = parse(text).rendezvous.introducer_uris
    assert (plain.peer_id, plain.uri.kind, plain.uri.host, plain.uri.port) == (
        None,
        TransportKind.TCP_TLS,
        "198.51.100.7",
        9443,
    )
    assert (pinned.peer_id, pinned.uri.host, str(pinned)) == (PEER, "::1", f"{PEER}@tls://[::1]:9")


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("udp://198.51.100.7:9", "over tls://"),
        ("tls://198.51.100.7", "host:port"),
        ("notanid@tls://198.51.100.7:9", "base32"),
        ("198.51.100.7:9", "must start with"),
    ],
)
def test_a_bad_introducer_is_refused_by_its_index(entry: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f'[rendezvous]\nintroducers = ["tls://192.0.2.1:1", "{entry}"]')
    assert caught.value.key == "rendezvous.introducers[1]"
    assert caught.value.problem is ConfigProblem.INVALID
    assert words in str(caught.value)


def test_an_introducer_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f'[rendezvous]\nintroducers = ["tls://192.0.2.1:1", "{PEER}@tls://192.0.2.1:1"]')
    assert "listed twice" in str(caught.value)
