from pathlib import Path

import pytest

from node import config
from node.security import keystore
from node.services.tcp_tls import build_transport

PEER = "a" * 52


def test_defaults() -> None:
    section = config.Config().tcp_tls
    assert section.enabled and section.port == 47475 and section.allow_development
    assert (section.max_pending, section.max_pending_per_address) == (32, 8)
    assert "[tcp_tls]" in config.to_toml(config.Config())


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[tcp_tls]\npinned_peer_ids = ["short"]', "tcp_tls.pinned_peer_ids[0]"),
        (f'[tcp_tls]\npinned_peer_ids = ["{PEER.upper()}"]', "tcp_tls.pinned_peer_ids[0]"),
        ('[tcp_tls]\nca_file = "/ca.crt"', "tcp_tls.cert_file"),
        ('[tcp_tls]\ncert_file = "/node.crt"', "tcp_tls.ca_file"),
        ("[tcp_tls]\nallow_development = false", "tcp_tls.allow_development"),
        ("[tcp_tls]\nport = 70000", "tcp_tls.port"),
        ('[tcp_tls]\nenabled = "yes"', "tcp_tls.enabled"),
        ("[tcp_tls]\nmax_pending = 0", "tcp_tls.max_pending"),
        ("[tcp_tls]\nmax_pending = 1.5", "tcp_tls.max_pending"),
        ("[tcp_tls]\nmax_pending_per_address = 0", "tcp_tls.max_pending_per_address"),
        ('[tcp_tls]\nmax_pending_per_address = "8"', "tcp_tls.max_pending_per_address"),
    ],
)
def test_invalid_settings_name_the_key(text: str, key: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse(text)
    assert err.value.key == key


def test_valid_trust_settings() -> None:
    cfg = config.parse(f'[tcp_tls]\npinned_peer_ids = ["{PEER}"]\nallow_development = false\nport = 0')
    assert cfg.tcp_tls.pinned_peer_ids == (PEER,)


def test_pending_limits_reach_the_transport(tmp_path: Path) -> None:
    cfg = config.parse("[tcp_tls]\nmax_pending = 5\nmax_pending_per_address = 2")
    ident, _ = keystore.load_or_create(tmp_path)
    transport = build_transport(cfg, ident, tmp_path / keystore.KEY_FILE_NAME, listen=False)
    limits = transport.slots.limits
    assert (limits.max_pending, limits.max_pending_per_address) == (5, 2)
    assert "max_pending_per_address = 2" in config.to_toml(cfg)
