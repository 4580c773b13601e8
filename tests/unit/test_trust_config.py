"""One ``[trust]`` section for every transport; the trust keys once in ``[tcp_tls]`` still apply
(one deprecation warning), a key given in both with different values is refused, and ``config
show`` prints them under ``[trust]`` only."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node import config as c
from node.proto.session.trust import PeerVerificationError, VerifyFailure
from node.security import certs, keystore
from node.security.trust import TrustConfigError, TrustMode
from node.services.tcp_tls import build_transport
from node.services.trust import session_verifier, trust_policy
from tests.unit.session_harness import make_identity
from tests.unit.test_config_bounds import config_error

PEER = "a" * 52
OTHER = "b" * 52
TRUST_KEYS = ("ca_file", "cert_file", "pinned_peer_ids", "allow_development")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "node.config" and r.levelno == logging.WARNING
    ]


def _fleet(tmp_path: Path, name: str = "ca") -> tuple[Path, Path]:
    ca = certs.init_ca_dir(tmp_path / name)
    node_cert = tmp_path / f"{name}-node.crt"
    node_cert.write_bytes(certs.cert_pem(certs.issue(ca, make_identity(1).public_key)))
    return tmp_path / name / certs.CA_CERT_FILE, node_cert


def test_trust_section_is_shown_and_tcp_tls_no_longer_shows_trust_keys() -> None:
    shown = c.to_toml(c.Config())
    trust = shown[shown.index("[trust]\n") : shown.index("[tcp_tls]\n")]
    tcp_tls = shown[shown.index("[tcp_tls]\n") :]
    for key in TRUST_KEYS:
        assert f"\n{key} = " in trust
        assert f"\n{key} = " not in tcp_tls
    as_dict = c.to_dict(c.Config())
    assert set(as_dict["trust"]) == set(TRUST_KEYS)
    assert not set(as_dict["tcp_tls"]) & set(TRUST_KEYS)


def test_trust_keys_make_the_policy_of_every_transport(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alice, mallory = make_identity(2), make_identity(3)
    cfg = c.parse(f'[trust]\npinned_peer_ids = ["{alice.peer_id}"]\nallow_development = false\n')
    assert _warnings(caplog) == []
    assert cfg.trust.pinned_peer_ids == (alice.peer_id,)
    assert trust_policy(cfg).mode is TrustMode.PINNED
    # The datagram session's verifier: the same pins decide.
    verifier = session_verifier(cfg)
    assert verifier.verify(alice.public_key, b"", None) == alice.peer_id
    with pytest.raises(PeerVerificationError) as refused:
        verifier.verify(mallory.public_key, b"", None)
    assert refused.value.reason is VerifyFailure.NOT_TRUSTED
    # And the TCP-TLS transport.
    ident, _ = keystore.load_or_create(tmp_path)
    transport = build_transport(cfg, ident, tmp_path / keystore.KEY_FILE_NAME, listen=False)
    assert transport.creds.policy.pinned == frozenset({alice.peer_id})


def test_trust_without_any_way_to_trust_refuses_to_build_a_policy() -> None:
    cfg = c.Config(trust=c.TrustSection(allow_development=False))  # as no file could say
    with pytest.raises(TrustConfigError):
        trust_policy(cfg)


def test_a_fleet_ca_in_trust_passes_and_reaches_the_policy(tmp_path: Path) -> None:
    ca_file, cert_file = _fleet(tmp_path)
    cfg = c.parse(f'[trust]\nca_file = "{ca_file}"\ncert_file = "{cert_file}"\n')
    assert (cfg.trust.ca_file, cfg.trust.cert_file) == (str(ca_file), str(cert_file))
    assert trust_policy(cfg).mode is TrustMode.FLEET_CA


def test_old_tcp_tls_keys_apply_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    cfg = c.parse(f'[tcp_tls]\nport = 0\npinned_peer_ids = ["{PEER}"]\nallow_development = false\n')
    assert cfg.trust == c.TrustSection(pinned_peer_ids=(PEER,), allow_development=False)
    assert trust_policy(cfg).pinned == frozenset({PEER})
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "tcp_tls.pinned_peer_ids, tcp_tls.allow_development: deprecated" in warnings[0]
    assert "[trust]" in warnings[0]
    # Shown under [trust] only, and what is shown reads back to the same config, without a warning.
    shown = c.to_toml(cfg)
    assert f'pinned_peer_ids = ["{PEER}"]' in shown[shown.index("[trust]") : shown.index("[tcp_tls]")]
    assert "pinned_peer_ids" not in shown[shown.index("[tcp_tls]") :]
    caplog.clear()
    assert c.parse(shown) == cfg
    assert _warnings(caplog) == []


def test_old_fleet_files_are_checked_and_applied(tmp_path: Path) -> None:
    ca_file, cert_file = _fleet(tmp_path)
    cfg = c.parse(f'[tcp_tls]\nca_file = "{ca_file}"\ncert_file = "{cert_file}"\n')
    assert cfg.trust.cert_file == str(cert_file)
    assert trust_policy(cfg).mode is TrustMode.FLEET_CA


@pytest.mark.parametrize(
    ("key", "ours", "theirs"),
    [
        ("ca_file", '"/a/ca.crt"', '"/b/ca.crt"'),
        ("cert_file", '"/a/node.crt"', '"/b/node.crt"'),
        ("pinned_peer_ids", f'["{PEER}"]', f'["{OTHER}"]'),
        ("allow_development", "true", "false"),
    ],
)
def test_a_key_in_both_sections_with_different_values_is_refused_naming_both(
    key: str, ours: str, theirs: str
) -> None:
    err = config_error(f"[trust]\n{key} = {ours}\n[tcp_tls]\n{key} = {theirs}\n")
    assert err.key == f"trust.{key}" and err.problem is c.ConfigProblem.CONFLICT
    assert f"tcp_tls.{key}" in str(err) and str(err).startswith(f"trust.{key}: ")


def test_a_key_in_both_sections_with_the_same_value_applies(caplog: pytest.LogCaptureFixture) -> None:
    both = f'pinned_peer_ids = ["{PEER}"]\n'
    cfg = c.parse(f"[trust]\n{both}[tcp_tls]\n{both}")
    assert cfg.trust.pinned_peer_ids == cfg.tcp_tls.pinned_peer_ids == (PEER,)
    assert len(_warnings(caplog)) == 1


def test_keys_from_both_sections_combine(tmp_path: Path) -> None:
    ca_file, cert_file = _fleet(tmp_path)
    cfg = c.parse(f'[trust]\nca_file = "{ca_file}"\n[tcp_tls]\ncert_file = "{cert_file}"\n')
    assert (cfg.trust.ca_file, cfg.trust.cert_file) == (str(ca_file), str(cert_file))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[trust]\npinned_peer_ids = ["short"]', "trust.pinned_peer_ids[0]"),
        ('[trust]\nca_file = "/ca.crt"', "trust.cert_file"),
        ('[trust]\ncert_file = "/node.crt"', "trust.ca_file"),
        ("[trust]\nallow_development = false", "trust.allow_development"),
        ("[trust]\nca_file = 1", "trust.ca_file"),
        ("[trust]\ncolour = 1", "trust.colour"),
        # A key missing next to an old one is named in the section the operator used...
        ('[tcp_tls]\nca_file = "/ca.crt"', "tcp_tls.cert_file"),
        # ...and in [trust] once any trust key is there.
        ('[trust]\nallow_development = true\n[tcp_tls]\nca_file = "/ca.crt"', "trust.cert_file"),
        # A bad old value is named where it was written.
        (
            '[trust]\nallow_development = false\n[tcp_tls]\npinned_peer_ids = ["x"]',
            "tcp_tls.pinned_peer_ids[0]",
        ),
    ],
)
def test_invalid_trust_settings_name_the_key_where_written(
    text: str, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert config_error(text).key == key
    assert _warnings(caplog) == []  # a refused config is one line: the error, no warning


def test_a_node_certificate_from_another_ca_names_the_key_where_written(tmp_path: Path) -> None:
    ca_file, _ = _fleet(tmp_path, "ours")
    _, theirs = _fleet(tmp_path, "theirs")
    err = config_error(f'[trust]\nca_file = "{ca_file}"\n[tcp_tls]\ncert_file = "{theirs}"\n')
    assert err.key == "tcp_tls.cert_file" and "not signed by the CA" in str(err)
    err = config_error(f'[trust]\nca_file = "{ca_file}"\ncert_file = "{theirs}"\n')
    assert err.key == "trust.cert_file"


def test_the_same_pinned_ids_in_another_order_are_the_same_setting() -> None:
    a, b = "a" * 52, "b" * 52
    cfg = c.parse(f'[trust]\npinned_peer_ids = ["{a}", "{b}"]\n[tcp_tls]\npinned_peer_ids = ["{b}", "{a}"]\n')
    assert set(cfg.trust.pinned_peer_ids) == {a, b}
