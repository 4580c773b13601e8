"""The [stun] discovery keys: typed, ranged, and turned into the probe's timing."""

from __future__ import annotations

import pytest

from node import config
from node.services.nat import probe_timing


def test_discovery_keys_reach_the_probe_timing() -> None:
    cfg = config.parse(
        "[stun]\nservers = ['203.0.113.10:3478']\ndiscovery_timeout_s = 3\nsilence_rtts = 6\n"
        "silence_floor_s = 0.5\nsilence_max_s = 2\ntcp_after_s = 0.3\ndiscover_at_start = false\n"
    )
    timing = probe_timing(cfg.stun, hairpin=True)
    assert (timing.deadline, timing.silence_rtts, timing.silence_floor, timing.silence_max) == (3, 6, 0.5, 2)
    assert timing.tcp_after == 0.3 and timing.hairpin and not cfg.stun.discover_at_start
    assert (
        timing.silence(0.001) == 0.5 and timing.silence(0.2) == pytest.approx(1.2) and timing.silence(10) == 2
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[stun]\nsilence_floor_s = 2\nsilence_max_s = 1\n", "stun.silence_max_s"),
        ("[stun]\nsilence_rtts = 0\n", "stun.silence_rtts"),
        ("[stun]\ndiscovery_timeout_s = 0\n", "stun.discovery_timeout_s"),
        ("[stun]\ndiscover_at_start = 1\n", "stun.discover_at_start"),
    ],
)
def test_bad_discovery_keys_are_named(text: str, key: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text)
    assert caught.value.key == key
