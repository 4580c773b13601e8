"""The [turn] section: RFC 7065 server URIs, credentials or a REST shared secret, a CA file."""

from __future__ import annotations

from pathlib import Path

import pytest

from node import config as c
from node.proto.turn.credentials import rest_credentials
from node.security import certs


def test_servers_and_credentials_parse() -> None:
    cfg = c.parse(
        '[turn]\nservers = ["turn:203.0.113.10:3478?transport=tcp", "turns:relay.example"]\n'
        'username = "u"\npassword = "p"\n'
    )
    assert cfg.turn.servers == ("turn:203.0.113.10:3478?transport=tcp", "turns:relay.example")
    assert c.parse(c.to_toml(cfg)) == cfg


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('servers = ["stun:x"]\nusername = "u"\npassword = "p"', "turn.servers[0]"),
        ('servers = ["turn:x"]\nusername = "u"', "turn.password"),
        ('servers = ["turn:x"]\npassword = "p"', "turn.username"),
        ('password = "p"\nshared_secret = "s"', "turn.password"),
        ('ca_file = "/nonexistent/ca.pem"', "turn.ca_file"),
        ("credential_ttl_s = 1", "turn.credential_ttl_s"),
    ],
)
def test_bad_turn_settings_name_their_key(text: str, key: str) -> None:
    with pytest.raises(c.ConfigError) as err:
        c.parse("[turn]\n" + text + "\n")
    assert err.value.key == key


def test_a_shared_secret_replaces_the_password(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certs.cert_pem(certs.make_ca().certificate))
    cfg = c.parse(f'[turn]\nservers = ["turn:x"]\nshared_secret = "s"\nca_file = "{ca}"\n')
    assert cfg.turn.shared_secret == "s"


def test_rest_credentials_follow_the_turn_rest_api() -> None:
    # draft-uberti-behave-turn-rest-00 §2.2, as coturn's --use-auth-secret checks them:
    # base64(HMAC-SHA1("north", "1700000000:alice")), computed independently with openssl.
    creds = rest_credentials("north", "alice", 1_700_000_000)
    assert creds.username == "1700000000:alice"
    assert creds.password == EXPECTED
    assert rest_credentials("north", "", 5).username == "5"
    assert "alice" in repr(creds) and creds.password not in repr(creds)


EXPECTED = "Cd/49soE35ICqcJF/bCTn8Z4OyE="


def test_printing_redacts_set_credentials_only() -> None:
    cfg = c.parse('[turn]\nservers = ["turn:203.0.113.10"]\nusername = "u"\npassword = "hunter2"\n')
    shown = c.to_toml(cfg, redact=True)
    assert "hunter2" not in shown
    assert f'password = "{c.REDACTED}"' in shown
    assert 'shared_secret = ""' in shown  # unset: nothing to hide, and '' says so
    as_dict = c.to_dict(cfg, redact=True)
    assert as_dict["turn"]["password"] == c.REDACTED
    assert as_dict["turn"]["username"] == "u"
    assert c.to_dict(cfg)["turn"]["password"] == "hunter2"
