"""[coordinator], [peers] and [metrics]: defaults, static peers parsed into typed values, and every
bad entry one ConfigError naming its key (``run`` and ``config check`` exit 2 on it)."""

from __future__ import annotations

import pytest

from node import config as c
from node.proto.peer_uri import PeerUri, PeerUriError, PeerUriProblem, StaticPeer, parse_peer_uri
from node.proto.vocabulary import TransportKind

A = "a" * 52
B = "b" * 52


def static(*entries: str) -> c.Config:
    return c.parse("[peers]\nstatic = [" + ", ".join(f'"{e}"' for e in entries) + "]\n")


def error(text: str) -> c.ConfigError:
    with pytest.raises(c.ConfigError) as info:
        c.parse(text)
    assert "\n" not in str(info.value)
    return info.value


def test_defaults() -> None:
    cfg = c.Config()
    co = cfg.coordinator
    assert (co.max_transports_per_peer, co.load_balance_threshold, co.metric_update_interval_s) == (
        3,
        0.8,
        1.0,
    )
    assert (co.window_max_messages, co.window_max_bytes) == (256, 2 << 20)
    assert (co.inbox_max_messages, co.inbox_max_bytes) == (4096, 16 << 20)
    assert cfg.peers.static_peers == ()
    assert cfg.metrics.listen == "127.0.0.1:9474" and cfg.metrics.address == ("127.0.0.1", 9474)


def test_static_peers_parse_into_typed_values() -> None:
    cfg = static(
        f"{A}@udp://198.51.100.7:47474", f"{A}@tls://[2001:db8::1]:47475", f"{B}@udp://Peer.Example:9"
    )
    assert cfg.peers.static_peers == (
        StaticPeer(A, PeerUri(TransportKind.UDP, "198.51.100.7", 47474)),
        StaticPeer(A, PeerUri(TransportKind.TCP_TLS, "2001:db8::1", 47475)),
        StaticPeer(B, PeerUri(TransportKind.UDP, "peer.example", 9)),
    )
    assert str(cfg.peers.static_peers[1]) == f"{A}@tls://[2001:db8::1]:47475"
    assert c.parse(c.to_toml(cfg)) == cfg


def test_one_peer_on_two_schemes_or_two_peers_on_one_address_is_fine() -> None:
    cfg = static(f"{A}@udp://127.0.0.1:1", f"{A}@tls://127.0.0.1:1", f"{B}@udp://127.0.0.1:1")
    assert len(cfg.peers.static_peers) == 3


@pytest.mark.parametrize(
    ("entries", "index", "words"),
    [
        ([f"{A}@udp://127.0.0.1:1", f"{A}@udp://127.0.0.1:1"], 1, "listed twice (also static[0])"),
        # Another spelling of the same address is the same address.
        ([f"{A}@udp://[::1]:1", f"{A}@udp://[0:0::1]:1"], 1, "listed twice"),
        ([f"{A}@udp://H.example:1", f"{A}@udp://h.EXAMPLE:1"], 1, "listed twice"),
        (["udp://127.0.0.1:1"], 0, "must be '<peer id>@udp://host:port'"),
        ([f"{A[:-1]}@udp://127.0.0.1:1"], 0, "not 52 lowercase base32 characters"),
        ([f"{A.upper()}@udp://127.0.0.1:1"], 0, "not 52 lowercase base32 characters"),
        ([f"{A}@tcp://127.0.0.1:1"], 0, "must start with udp:// or tls://"),
        ([f"{A}@127.0.0.1:1"], 0, "must start with udp://"),
        ([f"{A}@udp://::1:1"], 0, "not 'host:port'"),
        ([f"{A}@udp://127.0.0.1:0"], 0, "port from 1 to 65535"),
        ([f"{A}@udp://127.0.0.1"], 0, "not 'host:port'"),
        ([f"{A}@udp://[nope]:1"], 0, "not 'host:port'"),
    ],
)
def test_bad_static_peers_name_their_entry(entries: list[str], index: int, words: str) -> None:
    exc = error("[peers]\nstatic = [" + ", ".join(f'"{e}"' for e in entries) + "]\n")
    assert exc.key == f"peers.static[{index}]"
    assert exc.problem is c.ConfigProblem.INVALID
    assert words in str(exc)


def test_peer_uri_errors_are_typed() -> None:
    with pytest.raises(PeerUriError) as info:
        parse_peer_uri("ble://x:1")
    assert info.value.reason is PeerUriProblem.BAD_SCHEME


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9474", ("::1", 9474)),
        ("", None),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_metrics_listen(listen: str, address: tuple[str, int] | None) -> None:
    assert c.parse(f'[metrics]\nlisten = "{listen}"\n').metrics.address == address


@pytest.mark.parametrize(
    "listen", ["localhost:9474", "::1:9474", "[127.0.0.1]:1", "127.0.0.1:65536", "127.0.0.1", ":1"]
)
def test_bad_metrics_listen_names_the_key(listen: str) -> None:
    exc = error(f'[metrics]\nlisten = "{listen}"\n')
    assert exc.key == "metrics.listen" and exc.problem is c.ConfigProblem.INVALID
    assert listen in str(exc)


@pytest.mark.parametrize("key", ["window_max_bytes", "inbox_max_bytes"])
def test_byte_bounds_hold_the_largest_message(key: str) -> None:
    exc = error(f"[transport]\nmax_message_bytes = 4096\n[coordinator]\n{key} = 4095\n")
    assert exc.key == f"coordinator.{key}" and exc.problem is c.ConfigProblem.OUT_OF_RANGE
    assert "transport.max_message_bytes (4096)" in str(exc)
    assert (
        getattr(
            c.parse(f"[transport]\nmax_message_bytes = 4096\n[coordinator]\n{key} = 4096\n").coordinator, key
        )
        == 4096
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[coordinator]\nmax_transports_per_peer = 0", "coordinator.max_transports_per_peer"),
        ("[coordinator]\nload_balance_threshold = 1.5", "coordinator.load_balance_threshold"),
        ("[coordinator]\nmetric_update_interval_s = 0", "coordinator.metric_update_interval_s"),
        ("[coordinator]\nwindow_max_messages = 0", "coordinator.window_max_messages"),
        ("[coordinator]\ninbox_max_messages = 0", "coordinator.inbox_max_messages"),
    ],
)
def test_coordinator_ranges(text: str, key: str) -> None:
    assert error(text).key == key


def test_new_sections_are_shown_with_their_docs() -> None:
    shown = c.to_toml(c.Config())
    for line in ("[coordinator]", "max_transports_per_peer = 3", "[peers]", "static = []", "[metrics]"):
        assert line in shown
    assert 'listen = "127.0.0.1:9474"' in shown
