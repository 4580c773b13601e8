"""No config file can make the node spend without limit: its size, nesting, every string and
every list are bounded, and a value over a bound is one line naming the key."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from node import config as c

PEER = "a" * 52


def config_error(text: str) -> c.ConfigError:
    """The error ``text`` raises, checked to be one line."""
    with pytest.raises(c.ConfigError) as info:
        c.parse(text)
    assert "\n" not in str(info.value)
    return info.value


def _servers(n: int) -> str:
    return "[" + ", ".join(f'"s{i}.invalid:3478"' for i in range(n)) + "]"


def _turn(n: int) -> str:
    return "[" + ", ".join(f'"turn:t{i}.invalid"' for i in range(n)) + "]"


@pytest.mark.parametrize(
    ("section", "key", "value_of", "most"),
    [
        ("stun", "servers", _servers, c.MAX_SERVERS),
        ("turn", "servers", _turn, c.MAX_SERVERS),
        ("tcp_tls", "pinned_peer_ids", lambda n: "[" + ", ".join([f'"{PEER}"'] * n) + "]", 1024),
    ],
)
def test_every_list_has_a_maximum(section: str, key: str, value_of: object, most: int) -> None:
    assert callable(value_of)
    extra = 'username = "u"\npassword = "p"\n' if section == "turn" else ""
    assert (
        len(getattr(getattr(c.parse(f"[{section}]\n{extra}{key} = {value_of(most)}"), section), key)) == most
    )
    err = config_error(f"[{section}]\n{extra}{key} = {value_of(most + 1)}")
    assert err.key == f"{section}.{key}" and err.problem is c.ConfigProblem.OUT_OF_RANGE
    assert f"at most {most} entries, got {most + 1}" in str(err)


def test_every_list_key_says_its_maximum_in_show() -> None:
    cfg = c.Config()
    for section in fields(cfg):
        for f in fields(getattr(cfg, section.name)):
            rule = f.metadata["rule"]
            if isinstance(f.default, tuple):
                assert rule.max_items is not None, f"{section.name}.{f.name} has no maximum"
                assert f"at most {rule.max_items}" in rule.doc
    assert f"at most {c.MAX_SERVERS}" in c.to_toml(c.Config())


def test_200_000_stun_servers_are_refused_by_count_not_resolved() -> None:
    err = config_error(f"[stun]\nservers = {_servers(200_000)}")
    assert err.key == "stun.servers"
    assert len(str(err)) < 200  # the error does not repeat the list


def test_strings_are_bounded() -> None:
    ok = "x" * c.MAX_STRING_CHARS
    assert c.parse(f'[turn]\nusername = "{ok}"').turn.username == ok
    err = config_error(f'[turn]\nusername = "{ok}x"')
    assert err.key == "turn.username" and err.problem is c.ConfigProblem.OUT_OF_RANGE
    err = config_error(f'[stun]\nservers = ["{ok}x"]')
    assert err.key == "stun.servers[0]"
    assert len(str(err)) < 200


@pytest.mark.parametrize("opener", ["[", "{a="])
def test_deep_nesting_is_a_syntax_error(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    err = config_error("x = " + opener * 100_000 + closer * 100_000)
    assert err.key == "" and err.problem is c.ConfigProblem.SYNTAX
    assert "nested too deeply" in str(err)


def test_a_wrong_value_is_shown_short() -> None:
    deep = "[" * 50 + "]" * 50
    for text in (f"[stun]\nservers = [{deep}]", f"[node]\nsoftware = {_servers(10_000)}"):
        assert len(str(config_error(text))) < 200


def test_a_file_over_the_size_limit_is_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * c.MAX_CONFIG_BYTES + b"\n")
    with pytest.raises(c.ConfigError) as info:
        c.load(big)
    assert info.value.problem is c.ConfigProblem.OUT_OF_RANGE
    assert "larger than 1 MiB" in str(info.value)
    (tmp_path / "ok.toml").write_bytes(b"# " + b"x" * (c.MAX_CONFIG_BYTES - 3) + b"\n")
    assert c.load(tmp_path / "ok.toml") == c.Config()
