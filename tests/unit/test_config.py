import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import config as c


def test_defaults_are_the_seed_design_numbers() -> None:
    cfg = c.Config()
    t = cfg.transport
    assert (t.max_connections, t.pool_size, t.connect_timeout_s) == (100, 20, 30.0)
    assert (t.health_check_interval_s, t.failover_timeout_s, t.keepalive_s) == (10.0, 5.0, 60.0)
    assert (t.max_message_bytes, t.retries, t.performance_samples) == (1 << 20, 3, 100)
    assert (cfg.breaker.failure_threshold, cfg.breaker.recovery_timeout_s) == (5, 30.0)


def test_empty_file_gives_defaults() -> None:
    assert c.parse("") == c.Config()


def test_shown_config_parses_back_to_itself() -> None:
    cfg = c.parse('[node]\nudp_port = 0\nsoftware = "x\\"y"\n[stun]\nservers = ["198.51.100.1:3478"]\n')
    assert c.parse(c.to_toml(cfg)) == cfg
    assert cfg.node.udp_port == 0 and cfg.stun.servers == ("198.51.100.1:3478",)


def test_integer_accepted_where_a_float_is_expected() -> None:
    assert c.parse("[transport]\nconnect_timeout_s = 7").transport.connect_timeout_s == 7.0


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[transport]\nmax_connections = "many"', "transport.max_connections", c.ConfigProblem.WRONG_TYPE),
        ("[transport]\nmax_connections = true", "transport.max_connections", c.ConfigProblem.WRONG_TYPE),
        ("[transport]\nmax_connections = 0", "transport.max_connections", c.ConfigProblem.OUT_OF_RANGE),
        ("[transport]\nretries = 2.5", "transport.retries", c.ConfigProblem.WRONG_TYPE),
        ("[transport]\ncolour = 1", "transport.colour", c.ConfigProblem.UNKNOWN_KEY),
        ("[bogus]\nx = 1", "bogus", c.ConfigProblem.UNKNOWN_KEY),
        ("node = 1", "node", c.ConfigProblem.WRONG_TYPE),
        ("[node]\nudp_port = 65536", "node.udp_port", c.ConfigProblem.OUT_OF_RANGE),
        ('[node]\nlisten_address = "example"', "node.listen_address", c.ConfigProblem.INVALID),
        ('[stun]\nservers = ["nohost"]', "stun.servers[0]", c.ConfigProblem.INVALID),
        ("[stun]\nservers = [1]", "stun.servers[0]", c.ConfigProblem.WRONG_TYPE),
        ("[stun]\nservers = 1", "stun.servers", c.ConfigProblem.WRONG_TYPE),
        ("[node\n", "", c.ConfigProblem.SYNTAX),
        ("[transport]\nconnect_timeout_s = nan", "transport.connect_timeout_s", c.ConfigProblem.OUT_OF_RANGE),
        ("[transport]\nkeepalive_s = inf", "transport.keepalive_s", c.ConfigProblem.OUT_OF_RANGE),
        ('[node]\nsoftware = "' + "x" * 128 + '"', "node.software", c.ConfigProblem.OUT_OF_RANGE),
        ('[stun]\nservers = ["::1:3478"]', "stun.servers[0]", c.ConfigProblem.INVALID),
        ('[stun]\nservers = ["[nope]:3478"]', "stun.servers[0]", c.ConfigProblem.INVALID),
        ('[stun]\nservers = ["h:0"]', "stun.servers[0]", c.ConfigProblem.INVALID),
    ],
)
def test_invalid_values_name_their_key(text: str, key: str, problem: c.ConfigProblem) -> None:
    with pytest.raises(c.ConfigError) as info:
        c.parse(text)
    assert info.value.key == key
    assert info.value.problem is problem
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(key)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(c.ConfigError) as info:
        c.load(tmp_path / "missing.toml")
    assert info.value.problem is c.ConfigProblem.UNREADABLE
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(c.ConfigError):
        c.load(tmp_path / "bin.toml")


@given(st.text(max_size=200))
def test_arbitrary_text_never_escapes_as_anything_but_config_error(text: str) -> None:
    with contextlib.suppress(c.ConfigError):
        c.parse(text)


def test_every_key_is_documented_in_show() -> None:
    shown = c.to_toml(c.Config())
    for section, values in c.to_dict(c.Config()).items():
        assert f"[{section}]" in shown
        for key in values:
            assert f"\n{key} = " in shown


def test_stun_servers_accept_names_v4_and_bracketed_v6() -> None:
    cfg = c.parse('[stun]\nservers = ["stun.example:3478", "198.51.100.1:3478", "[2001:db8::1]:3478"]')
    assert [c.parse_host_port(s) for s in cfg.stun.servers] == [
        ("stun.example", 3478),
        ("198.51.100.1", 3478),
        ("2001:db8::1", 3478),
    ]
