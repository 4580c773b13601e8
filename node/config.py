"""The node's configuration: TOML (``/etc/bitcraps/node.toml``) over embedded defaults.

Every value is validated; an unknown key, a wrong type or a value out of range is a
``ConfigError`` naming the key (``transport.max_connections``), one line, never a traceback.
The defaults are the seed design's numbers (DESIGN.md, "Numbers").

Everything is bounded, so no file can make the node spend without limit what it reads at start:
the file's size (``MAX_CONFIG_BYTES``), its nesting (tomllib recurses), every string
(``MAX_STRING_CHARS``) and every list (its key's ``max_items``, said in ``config show``).
"""

from __future__ import annotations

import ipaddress
import logging
import reprlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from node.errors import ReasonError, SettingsError
from node.os_errors import os_reason
from node.proto.addresses import parse_host_port
from node.proto.breaker import CircuitBreaker
from node.proto.peer_uri import (
    IntroducerUri,
    PeerUriError,
    StaticPeer,
    is_peer_id,
    parse_introducer,
    parse_static_peer,
)
from node.proto.turn.uri import parse_turn_uri

DEFAULT_CONFIG_PATH = Path("/etc/bitcraps/node.toml")
DEFAULT_UDP_PORT = 47474
DEFAULT_TCP_TLS_PORT = 47475
SOFTWARE_MAX_CHARS = 128
# A real config is a few KiB; the longest legitimate one (1024 pinned peer ids) is under 64 KiB.
MAX_CONFIG_BYTES = 1 << 20
# Linux's PATH_MAX (file keys); far above a host name (253, RFC 1035 §2.3.4) or a TURN URI.
MAX_STRING_CHARS = 4096

log = logging.getLogger(__name__)


class ConfigProblem(Enum):
    UNREADABLE = "unreadable"
    SYNTAX = "syntax"
    UNKNOWN_KEY = "unknown key"
    WRONG_TYPE = "wrong type"
    OUT_OF_RANGE = "out of range"
    INVALID = "invalid"
    CONFLICT = "conflict"  # one setting given twice, under its key and its deprecated alias


class ConfigError(ReasonError[ConfigProblem], SettingsError):
    """An invalid configuration. ``key`` is the dotted key at fault ("" for the whole file);
    ``reason`` (also read as ``problem``) says what is wrong with it. The message is the key and
    the detail, as ``config check`` prints it: the detail already says what is wrong."""

    def __init__(self, key: str, problem: ConfigProblem, detail: str) -> None:
        self.key = key
        super().__init__(problem, detail)

    @property
    def problem(self) -> ConfigProblem:
        return self.reason

    def describe(self) -> str:
        return f"{self.key}: {self.detail}" if self.key else self.detail


@dataclass(frozen=True, slots=True)
class Rule:
    """A key's documentation; for numbers, its inclusive range; for lists, their longest."""

    doc: str
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False  # a credential: ``config show`` prints it only when asked to
    max_items: int | None = None
    # A deprecated alias of the key of this name in that section: accepted when read (see
    # _resolve_trust), never shown; the attribute holds the effective value of the new key.
    moved_to: str | None = None


REDACTED = "<redacted>"


def _rule(
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    secret: bool = False,
    max_items: int | None = None,
    moved_to: str | None = None,
) -> dict[str, Rule]:
    # dataclasses.field(metadata=...) takes a mapping; the rule inside it is typed.
    if max_items is not None:
        doc = f"{doc}; at most {max_items}"
    return {"rule": Rule(doc, minimum, maximum, secret, max_items, moved_to)}


# One discovery asks every STUN server (one UDP socket each, RFC 5780 tests) and TURN servers are
# tried in order, each failure costing up to transport.connect_timeout_s: two or three servers
# classify a NAT or keep a relay, 16 leave room for redundancy and keep a round short.
MAX_SERVERS = 16
# Pins suit a small fleet; a larger one uses the fleet CA (ca_file), which admits any number of
# nodes without listing them.
MAX_PINNED_PEER_IDS = 1024
# Static peers are for peers without a rendezvous yet: a fleet's worth, a few addresses each.
MAX_STATIC_PEERS = 4096


@dataclass(frozen=True, slots=True)
class NodeSection:
    listen_address: str = field(
        default="0.0.0.0", metadata=_rule("address the UDP port binds to ('::' for IPv6)")
    )
    udp_port: int = field(
        default=DEFAULT_UDP_PORT,
        metadata=_rule("UDP port for peers and STUN Binding (0: any free port)", minimum=0, maximum=65535),
    )
    software: str = field(
        default="bitcraps-node",
        metadata=_rule(
            "SOFTWARE attribute in STUN responses, fewer than 128 characters ('' for none); left out of"
            " an answer it would make larger than 3x its request"
        ),
    )


@dataclass(frozen=True, slots=True)
class TransportSection:
    max_connections: int = field(
        default=100, metadata=_rule("connections per transport, at most", minimum=1, maximum=100_000)
    )
    pool_size: int = field(
        default=20, metadata=_rule("idle connections kept warm", minimum=0, maximum=10_000)
    )
    connect_timeout_s: float = field(
        default=30.0, metadata=_rule("give up connecting after this long", minimum=0.1, maximum=600)
    )
    health_check_interval_s: float = field(
        default=10.0, metadata=_rule("time between path health checks", minimum=0.1, maximum=3600)
    )
    failover_timeout_s: float = field(
        default=5.0, metadata=_rule("move traffic to another path within this", minimum=0.1, maximum=600)
    )
    keepalive_s: float = field(
        default=60.0, metadata=_rule("TCP keepalive interval", minimum=1, maximum=7200)
    )
    max_message_bytes: int = field(
        default=1 << 20, metadata=_rule("largest application message", minimum=64, maximum=64 << 20)
    )
    retries: int = field(default=3, metadata=_rule("send retries before failing over", minimum=0, maximum=20))
    retry_backoff_s: float = field(
        default=0.5, metadata=_rule("first retry delay; doubles per retry", minimum=0.001, maximum=60)
    )
    performance_samples: int = field(
        default=100, metadata=_rule("performance samples kept per transport", minimum=1, maximum=100_000)
    )


@dataclass(frozen=True, slots=True)
class BreakerSection:
    failure_threshold: int = field(
        default=5, metadata=_rule("consecutive failures that open a breaker", minimum=1, maximum=1000)
    )
    recovery_timeout_s: float = field(
        default=30.0, metadata=_rule("open breakers half-open after this", minimum=0.1, maximum=86400)
    )

    def new_breaker(self) -> CircuitBreaker:
        """A fresh breaker with these settings (one per transport, remote or server)."""
        return CircuitBreaker(self.failure_threshold, self.recovery_timeout_s)


@dataclass(frozen=True, slots=True)
class StunSection:
    servers: tuple[str, ...] = field(
        default=(),
        metadata=_rule("STUN servers as 'host:port' (other nodes serve STUN too)", max_items=MAX_SERVERS),
    )
    discover_at_start: bool = field(
        default=True, metadata=_rule("classify the NAT in front of the node when it starts")
    )
    discovery_timeout_s: float = field(
        default=5.0, metadata=_rule("one NAT discovery ends within this", minimum=0.5, maximum=120)
    )
    binding_timeout_s: float = field(
        default=2.0,
        metadata=_rule("give up on a server's first Binding after this", minimum=0.1, maximum=60),
    )
    probe_rto_s: float = field(
        default=0.1, metadata=_rule("first retransmission of a discovery Binding", minimum=0.01, maximum=5)
    )
    silence_rtts: int = field(
        default=4,
        metadata=_rule("tests answered by silence wait this many round trips", minimum=1, maximum=100),
    )
    silence_floor_s: float = field(
        default=0.25,
        metadata=_rule("...but at least this long (RFC 5780 filtering tests)", minimum=0.01, maximum=30),
    )
    silence_max_s: float = field(
        default=3.0, metadata=_rule("...and at most this long", minimum=0.01, maximum=60)
    )
    tcp_after_s: float = field(
        default=0.2,
        metadata=_rule(
            "try STUN over TCP after this much UDP silence (udp-blocked)", minimum=0.01, maximum=30
        ),
    )


@dataclass(frozen=True, slots=True)
class TurnSection:
    servers: tuple[str, ...] = field(
        default=(),
        metadata=_rule(
            "TURN servers, tried in order: RFC 7065 URIs ('turn:h:3478?transport=tcp', 'turns:h')",
            max_items=MAX_SERVERS,
        ),
    )
    username: str = field(
        default="", metadata=_rule("long-term username; with shared_secret, the user part of the REST name")
    )
    password: str = field(
        default="", metadata=_rule("long-term password ('' with shared_secret)", secret=True)
    )
    shared_secret: str = field(
        default="",
        metadata=_rule(
            "TURN REST API shared secret: ephemeral credentials instead of a password", secret=True
        ),
    )
    credential_ttl_s: int = field(
        default=86400, metadata=_rule("lifetime of REST API credentials", minimum=60, maximum=30 * 86400)
    )
    ca_file: str = field(default="", metadata=_rule("CA certificates for turns: servers ('' = the system's)"))
    server_name: str = field(
        default="", metadata=_rule("name the TLS certificate must carry ('' = each URI's host)")
    )


@dataclass(frozen=True, slots=True)
class TcpTlsSection:
    enabled: bool = field(default=True, metadata=_rule("listen for peers over TCP + TLS 1.3"))
    port: int = field(
        default=DEFAULT_TCP_TLS_PORT,
        metadata=_rule("TCP port on node.listen_address (0: any free port)", minimum=0, maximum=65535),
    )
    handshake_timeout_s: float = field(
        default=10.0,
        metadata=_rule("TLS plus identity proof must finish within this", minimum=0.1, maximum=600),
    )
    max_pending: int = field(
        default=32,
        metadata=_rule(
            "inbound connections still proving an identity, at most (a share of transport.max_connections)",
            minimum=1,
            maximum=100_000,
        ),
    )
    max_pending_per_address: int = field(
        default=8,
        metadata=_rule(
            "of those, from one IPv4 address or IPv6 /64 (proven peers are not capped per address)",
            minimum=1,
            maximum=100_000,
        ),
    )
    # Deprecated aliases of [trust] (see TrustSection): read, never shown; the effective values.
    ca_file: str = field(default="", metadata=_rule("deprecated: trust.ca_file", moved_to="trust"))
    cert_file: str = field(default="", metadata=_rule("deprecated: trust.cert_file", moved_to="trust"))
    pinned_peer_ids: tuple[str, ...] = field(
        default=(),
        metadata=_rule("deprecated: trust.pinned_peer_ids", max_items=MAX_PINNED_PEER_IDS, moved_to="trust"),
    )
    allow_development: bool = field(
        default=True, metadata=_rule("deprecated: trust.allow_development", moved_to="trust")
    )


@dataclass(frozen=True, slots=True)
class TrustSection:
    """Whom the node trusts, on every transport (TCP-TLS, UDP, TURN): one policy
    (node.security.trust). Once in [tcp_tls], whose keys are still read (_resolve_trust)."""

    ca_file: str = field(
        default="",
        metadata=_rule(
            "fleet CA certificate (PEM); set it to require certificates from it on every transport"
        ),
    )
    cert_file: str = field(
        default="", metadata=_rule("this node's certificate from the fleet CA (identity issue)")
    )
    pinned_peer_ids: tuple[str, ...] = field(
        default=(),
        metadata=_rule(
            "admit only these peer ids (with or without a fleet CA)", max_items=MAX_PINNED_PEER_IDS
        ),
    )
    allow_development: bool = field(
        default=True,
        metadata=_rule("without CA or pins, accept any peer (INSECURE, logged); false: refuse to start"),
    )


@dataclass(frozen=True, slots=True)
class UdpSection:
    # A Raspberry Pi 4 does a few hundred responder handshakes a second on one core; 100 keeps key
    # agreement for unproven sources under about a quarter of that (node.proto.session.cookie).
    handshakes_per_second: float = field(
        default=100.0,
        metadata=_rule(
            "new UDP handshakes per second before INITs from unproven sources get a cookie reply"
            " instead of a key agreement (0: always ask for a cookie)",
            minimum=0,
            maximum=1_000_000,
        ),
    )


@dataclass(frozen=True, slots=True)
class CoordinatorSection:
    """The coordinator (path choice per peer) and delivery (acknowledged messages, the inbox)."""

    max_transports_per_peer: int = field(
        default=3, metadata=_rule("paths in use per peer at once, at most", minimum=1, maximum=16)
    )
    load_balance_threshold: float = field(
        default=0.8,
        metadata=_rule(
            "above this share of a path's capacity, traffic spreads over paths of nearly equal score",
            minimum=0.05,
            maximum=1.0,
        ),
    )
    metric_update_interval_s: float = field(
        default=1.0, metadata=_rule("time between path metric updates", minimum=0.05, maximum=3600)
    )
    # 256 small game messages, or 2 MiB: at a 100 ms round trip that is 2,560 messages or 20 MiB a
    # second per peer, above what a Pi's Wi-Fi carries, so the window does not limit throughput;
    # 100 peers' full windows (200 MiB) still fit a 1 GiB board. It holds at least one largest
    # message (transport.max_message_bytes), or that message could never be sent.
    window_max_messages: int = field(
        default=256,
        metadata=_rule(
            "unacknowledged reliable messages per peer; send waits when the window is full",
            minimum=1,
            maximum=1_000_000,
        ),
    )
    window_max_bytes: int = field(
        default=2 << 20,
        metadata=_rule(
            "unacknowledged bytes per peer (at least transport.max_message_bytes)",
            minimum=64,
            maximum=1 << 30,
        ),
    )
    # The inbox is node-wide; a subscriber a few seconds behind at 1,000 messages a second fits
    # 4,096, and 16 MiB holds 16 largest messages. When it is full the node stops acknowledging,
    # so senders wait: nothing is dropped (issue 15).
    inbox_max_messages: int = field(
        default=4096,
        metadata=_rule(
            "received messages held until a subscriber takes them; when full, the node stops"
            " acknowledging so senders wait",
            minimum=1,
            maximum=10_000_000,
        ),
    )
    inbox_max_bytes: int = field(
        default=16 << 20,
        metadata=_rule(
            "received bytes held until a subscriber takes them (at least transport.max_message_bytes)",
            minimum=64,
            maximum=4 << 30,
        ),
    )


@dataclass(frozen=True, slots=True)
class PeersSection:
    static: tuple[str, ...] = field(
        default=(),
        metadata=_rule(
            "peers reached without a rendezvous, as '<peer id>@udp://HOST:PORT' or"
            " '<peer id>@tls://HOST:PORT' ('[ipv6]' in brackets); a peer once per address",
            max_items=MAX_STATIC_PEERS,
        ),
    )

    @property
    def static_peers(self) -> tuple[StaticPeer, ...]:
        """``static`` parsed (already validated when the config was read)."""
        return tuple(parse_static_peer(entry) for entry in self.static)


# A node registers with each introducer and asks them all: a few give redundancy.
MAX_INTRODUCERS = 16


@dataclass(frozen=True, slots=True)
class RendezvousSection:
    serve: bool = field(
        default=False,
        metadata=_rule(
            "serve as an introducer: peers linked to this node over TCP-TLS register their candidates"
            " and are introduced to each other by peer id (it never sees their payload)"
        ),
    )
    introducers: tuple[str, ...] = field(
        default=(),
        metadata=_rule(
            "introducers to register with and ask for peers by id, as 'tls://HOST:PORT' (the port is"
            " the introducer's tcp_tls.port) or '<peer id>@tls://HOST:PORT' to pin its identity",
            max_items=MAX_INTRODUCERS,
        ),
    )
    punch: bool = field(
        default=True,
        metadata=_rule(
            "after an introduction, punch a direct UDP path through the NATs (the relay path stays"
            " as a fallback); false: relay only"
        ),
    )

    @property
    def introducer_uris(self) -> tuple[IntroducerUri, ...]:
        """``introducers`` parsed (already validated when the config was read)."""
        return tuple(parse_introducer(entry) for entry in self.introducers)


@dataclass(frozen=True, slots=True)
class MetricsSection:
    listen: str = field(
        default="127.0.0.1:9474",
        metadata=_rule(
            "Prometheus /metrics on 'host:port' or '[ipv6]:port' ('' disables it; port 0: any free"
            " port, shown in status); loopback by default: the metrics show peers and addresses",
        ),
    )

    @property
    def address(self) -> tuple[str, int] | None:
        """``listen`` as (ip, port); None when disabled ('')."""
        return parse_listen_address(self.listen) if self.listen else None


@dataclass(frozen=True, slots=True)
class BleSection:
    enabled: bool = field(
        default=True,
        metadata=_rule(
            "carry peers over BLE through BlueZ on the system D-Bus (without a bus, bluetoothd or an"
            " adapter the node shows ble unavailable, retries, and runs everything else)"
        ),
    )
    adapter: str = field(
        default="", metadata=_rule("BlueZ adapter name, e.g. 'hci0' ('': the first powered adapter)")
    )
    max_links: int = field(
        default=5,
        metadata=_rule(
            "BLE links at once (controllers handle about 5 connections well)", minimum=1, maximum=20
        ),
    )


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeSection = field(default_factory=NodeSection)
    transport: TransportSection = field(default_factory=TransportSection)
    breaker: BreakerSection = field(default_factory=BreakerSection)
    stun: StunSection = field(default_factory=StunSection)
    turn: TurnSection = field(default_factory=TurnSection)
    trust: TrustSection = field(default_factory=TrustSection)
    tcp_tls: TcpTlsSection = field(default_factory=TcpTlsSection)
    udp: UdpSection = field(default_factory=UdpSection)
    coordinator: CoordinatorSection = field(default_factory=CoordinatorSection)
    peers: PeersSection = field(default_factory=PeersSection)
    rendezvous: RendezvousSection = field(default_factory=RendezvousSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    ble: BleSection = field(default_factory=BleSection)


def load_effective(path: Path | None) -> Config:
    """``path`` when given, else the default file when it exists, else the embedded defaults."""
    if path is not None:
        return load(path)
    if DEFAULT_CONFIG_PATH.exists():
        return load(DEFAULT_CONFIG_PATH)
    return Config()


def load(path: Path) -> Config:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)  # never more: the file may be huge, or endless
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError("", ConfigProblem.UNREADABLE, f"cannot read {path}: {reason}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            "", ConfigProblem.OUT_OF_RANGE, f"the file is larger than {MAX_CONFIG_BYTES >> 20} MiB"
        )
    return parse(text)


def parse(text: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", ConfigProblem.SYNTAX, f"not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(
            "", ConfigProblem.SYNTAX, "not valid TOML: arrays or tables nested too deeply"
        ) from exc
    return from_mapping(data)


def from_mapping(data: Mapping[str, Any]) -> Config:
    sections: dict[str, Any] = {}
    known = {f.name: f for f in fields(Config)}
    for name, value in data.items():
        if name not in known:
            raise ConfigError(name, ConfigProblem.UNKNOWN_KEY, f"unknown section (known: {', '.join(known)})")
        if not isinstance(value, dict):
            raise ConfigError(name, ConfigProblem.WRONG_TYPE, "must be a table ([" + name + "])")
        default = getattr(Config(), name)
        sections[name] = _section(name, default, value)
    trust = _resolve_trust(
        data, sections.get("trust", TrustSection()), sections.get("tcp_tls", TcpTlsSection())
    )
    sections["trust"] = trust
    # The deprecated [tcp_tls] aliases read as the effective values, so no reader sees a stale one.
    sections["tcp_tls"] = replace(
        sections.get("tcp_tls", TcpTlsSection()), **{key: getattr(trust, key) for key in TRUST_KEYS}
    )
    config = Config(**sections)
    _check_across(config)
    return config


def _check_across(config: Config) -> None:
    """Checks between sections: a bound that must hold at least one largest message."""
    largest = config.transport.max_message_bytes
    for key in ("window_max_bytes", "inbox_max_bytes"):
        if getattr(config.coordinator, key) < largest:
            raise ConfigError(
                f"coordinator.{key}",
                ConfigProblem.OUT_OF_RANGE,
                f"must be at least transport.max_message_bytes ({largest}), or the largest message"
                " could never be delivered",
            )


def _section(prefix: str, default: Any, values: Mapping[str, Any]) -> Any:
    known = {f.name: f for f in fields(default)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}"
        if key not in known:
            raise ConfigError(dotted, ConfigProblem.UNKNOWN_KEY, f"unknown key (known: {', '.join(known)})")
        f = known[key]
        changes[key] = _check(dotted, getattr(default, key), value, f.metadata["rule"])
    section = replace(default, **changes)
    _check_section(prefix, section)
    return section


def _check(key: str, default: Any, value: Any, rule: Rule) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _wrong_type(key, "true or false", value)
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(key, "an integer", value)
        return _in_range(key, value, rule)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type(key, "a number", value)
        return _in_range(key, float(value), rule)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise _wrong_type(key, "a string", value)
        return _short(key, value)
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise _wrong_type(key, "a list of strings", value)
        assert rule.max_items is not None, f"{key}: list keys carry a maximum"
        if len(value) > rule.max_items:
            raise ConfigError(
                key, ConfigProblem.OUT_OF_RANGE, f"at most {rule.max_items} entries, got {len(value)}"
            )
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _wrong_type(f"{key}[{i}]", "a string", item)
            _short(f"{key}[{i}]", item)
        return tuple(value)
    raise AssertionError(f"no validator for {key}")  # a schema bug, caught by the unit tests


def _in_range(key: str, value: float, rule: Rule) -> Any:
    lo, hi = rule.minimum, rule.maximum
    assert lo is not None and hi is not None, f"{key}: numeric keys carry a range"
    # `not lo <= value <= hi` also catches NaN, which every comparison answers False.
    if not lo <= value <= hi:
        raise ConfigError(
            key, ConfigProblem.OUT_OF_RANGE, f"must be between {lo:g} and {hi:g}, got {value!r}"
        )
    return value


def _short(key: str, value: str) -> str:
    if len(value) > MAX_STRING_CHARS:
        raise ConfigError(
            key, ConfigProblem.OUT_OF_RANGE, f"at most {MAX_STRING_CHARS} characters, got {len(value)}"
        )
    return value


# What an error shows of a bad value: enough to find it, never the whole of a huge or deep one.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 2, 4, 4, 60, 60


def _wrong_type(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(
        key, ConfigProblem.WRONG_TYPE, f"must be {expected}, got {type(value).__name__} {_SHOWN.repr(value)}"
    )


def _check_section(prefix: str, section: Any) -> None:
    """Checks that go beyond one value's type and range."""
    if isinstance(section, NodeSection):
        try:
            ipaddress.ip_address(section.listen_address)
        except ValueError as exc:
            raise ConfigError(
                f"{prefix}.listen_address",
                ConfigProblem.INVALID,
                f"not an IP address: {_SHOWN.repr(section.listen_address)}",
            ) from exc
    if isinstance(section, NodeSection) and len(section.software) >= SOFTWARE_MAX_CHARS:
        # RFC 8489 §14.14: SOFTWARE is fewer than 128 characters.
        raise ConfigError(
            f"{prefix}.software",
            ConfigProblem.OUT_OF_RANGE,
            f"must be fewer than {SOFTWARE_MAX_CHARS} characters, got {len(section.software)}",
        )
    if isinstance(section, TurnSection):
        _check_turn(prefix, section)
    if isinstance(section, PeersSection):
        _check_peers(prefix, section)
    if isinstance(section, RendezvousSection):
        _check_rendezvous(prefix, section)
    if isinstance(section, MetricsSection) and section.listen:
        _check_metrics(prefix, section)
    if isinstance(section, StunSection):
        if section.silence_max_s < section.silence_floor_s:
            raise ConfigError(
                f"{prefix}.silence_max_s",
                ConfigProblem.OUT_OF_RANGE,
                f"must be at least silence_floor_s ({section.silence_floor_s:g})",
            )
        for i, server in enumerate(section.servers):
            if parse_host_port(server) is None:
                raise ConfigError(
                    f"{prefix}.servers[{i}]",
                    ConfigProblem.INVALID,
                    f"must be 'host:port' or '[ipv6]:port', got {_SHOWN.repr(server)}",
                )


def _check_peers(prefix: str, section: PeersSection) -> None:
    seen: dict[StaticPeer, int] = {}
    for i, entry in enumerate(section.static):
        try:
            peer = parse_static_peer(entry)
        except PeerUriError as exc:
            raise ConfigError(f"{prefix}.static[{i}]", ConfigProblem.INVALID, exc.detail) from exc
        if peer in seen:
            raise ConfigError(
                f"{prefix}.static[{i}]",
                ConfigProblem.INVALID,
                f"{peer} is listed twice (also static[{seen[peer]}]): a peer is listed once per address",
            )
        seen[peer] = i


def _check_rendezvous(prefix: str, section: RendezvousSection) -> None:
    seen: dict[str, int] = {}
    for i, entry in enumerate(section.introducers):
        try:
            introducer = parse_introducer(entry)
        except PeerUriError as exc:
            raise ConfigError(f"{prefix}.introducers[{i}]", ConfigProblem.INVALID, exc.detail) from exc
        where = str(introducer.uri)
        if where in seen:
            raise ConfigError(
                f"{prefix}.introducers[{i}]",
                ConfigProblem.INVALID,
                f"{where} is listed twice (also introducers[{seen[where]}])",
            )
        seen[where] = i


def _check_metrics(prefix: str, section: MetricsSection) -> None:
    if section.address is None:
        raise ConfigError(
            f"{prefix}.listen",
            ConfigProblem.INVALID,
            "must be 'ip:port' or '[ipv6]:port' with a port from 0 (any free one) to 65535, or ''"
            f" to disable metrics, got {_SHOWN.repr(section.listen)}",
        )


def parse_listen_address(text: str) -> tuple[str, int] | None:
    """'ipv4:port' or '[ipv6]:port' with port 0 to 65535 (0: the system picks) -> (ip, port);
    None when malformed. An address to bind, so an IP literal, never a name to resolve."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return None
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return None
    if (ip.version == 6) != bracketed:
        return None  # an IPv6 address is bracketed, or its port is ambiguous; IPv4 never is
    return str(ip), int(port)


def _check_turn(prefix: str, section: TurnSection) -> None:
    for i, server in enumerate(section.servers):
        if parse_turn_uri(server) is None:
            raise ConfigError(
                f"{prefix}.servers[{i}]",
                ConfigProblem.INVALID,
                "must be a TURN URI like 'turn:host:3478?transport=udp' or 'turns:host',"
                f" got {_SHOWN.repr(server)}",
            )
    if section.shared_secret and section.password:
        raise ConfigError(
            f"{prefix}.password", ConfigProblem.INVALID, "give a password or a shared_secret, not both"
        )
    if section.servers and not section.shared_secret:
        for key in ("username", "password"):
            if not getattr(section, key):
                raise ConfigError(
                    f"{prefix}.{key}", ConfigProblem.INVALID, "needed for the TURN servers (or shared_secret)"
                )
    if section.ca_file:
        _check_ca_bundle(f"{prefix}.ca_file", Path(section.ca_file))


def _check_ca_bundle(key: str, path: Path) -> None:
    """Loaded as the TURN client loads it (OpenSSL, PEM CA certificates), so a file that passes
    here is one the node can use."""
    import ssl  # noqa: PLC0415 - only when a CA file is configured

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:  # before OSError: an SSLError is one, but its errno is OpenSSL's
        raise ConfigError(
            key, ConfigProblem.INVALID, f"{path}: no PEM CA certificate in it ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise ConfigError(key, ConfigProblem.INVALID, f"cannot read {path}: {os_reason(exc)}") from exc


TRUST_KEYS = tuple(f.name for f in fields(TrustSection))
LEGACY_TRUST_SECTION = "tcp_tls"


def _same_setting(value: object) -> object:
    """A value as compared between [trust] and its deprecated alias: a list of pinned ids is a set
    (the same ids in another order are the same setting)."""
    return frozenset(value) if isinstance(value, tuple) else value


def _resolve_trust(data: Mapping[str, Any], trust: TrustSection, tcp_tls: TcpTlsSection) -> TrustSection:
    """The effective [trust]: its own keys, then those still given in [tcp_tls] (deprecated, one
    warning); a key given in both with different values is an error naming both."""
    new, old = data.get("trust", {}), data.get(LEGACY_TRUST_SECTION, {})
    legacy = [key for key in TRUST_KEYS if key in old]
    for key in legacy:
        if key in new and _same_setting(getattr(trust, key)) != _same_setting(getattr(tcp_tls, key)):
            raise ConfigError(
                f"trust.{key}",
                ConfigProblem.CONFLICT,
                f"{_SHOWN.repr(getattr(trust, key))} differs from {LEGACY_TRUST_SECTION}.{key}"
                f" = {_SHOWN.repr(getattr(tcp_tls, key))} (deprecated): give it in [trust] only",
            )
    moved = {key: getattr(tcp_tls, key) for key in legacy if key not in new}
    # Errors name the key where the operator wrote it; a missing one, the section they used.
    used = LEGACY_TRUST_SECTION if legacy and not any(key in new for key in TRUST_KEYS) else "trust"
    where = {key: LEGACY_TRUST_SECTION if key in moved else used for key in TRUST_KEYS}
    effective = replace(trust, **moved)
    _check_trust({key: f"{where[key]}.{key}" for key in TRUST_KEYS}, effective)
    if legacy:  # only for a config that loads: a rejected one stays one line (the error)
        log.warning(
            "%s: deprecated, the trust settings of every transport are in [trust] (applied from [%s])",
            ", ".join(f"{LEGACY_TRUST_SECTION}.{key}" for key in legacy),
            LEGACY_TRUST_SECTION,
        )
    return effective


def _check_trust(name: Mapping[str, str], section: TrustSection) -> None:
    for i, peer in enumerate(section.pinned_peer_ids):
        if not is_peer_id(peer):
            raise ConfigError(
                f"{name['pinned_peer_ids']}[{i}]",
                ConfigProblem.INVALID,
                f"not a peer id (52 lowercase base32 characters): {_SHOWN.repr(peer)}",
            )
    if bool(section.ca_file) != bool(section.cert_file):
        key = "cert_file" if section.ca_file else "ca_file"
        raise ConfigError(
            name[key], ConfigProblem.INVALID, "ca_file and cert_file are set together or not at all"
        )
    if section.ca_file:
        _check_fleet_files(name, Path(section.ca_file), Path(section.cert_file))
    if not (section.ca_file or section.pinned_peer_ids or section.allow_development):
        raise ConfigError(
            name["allow_development"],
            ConfigProblem.INVALID,
            "false, but neither ca_file nor pinned_peer_ids is set: no peer could be trusted",
        )


def _check_fleet_files(name: Mapping[str, str], ca_file: Path, cert_file: Path) -> None:
    """What ``run`` checks of the fleet CA and the node certificate (node.security.trust), except that the
    certificate is for this node's key: the identity is the node's state, not its configuration."""
    from node.security import certs  # noqa: PLC0415 - cryptography, only when a fleet CA is configured

    try:
        ca = certs.load_certificate(ca_file)
    except certs.CertError as exc:
        raise ConfigError(name["ca_file"], ConfigProblem.INVALID, str(exc)) from exc
    try:
        cert, _ = certs.load_node_certificate(cert_file)
    except certs.CertError as exc:
        raise ConfigError(name["cert_file"], ConfigProblem.INVALID, str(exc)) from exc
    if not certs.signed_by(cert, ca):
        raise ConfigError(
            name["cert_file"], ConfigProblem.INVALID, f"{cert_file}: not signed by the CA in {ca_file}"
        )


def to_toml(config: Config, *, redact: bool = False) -> str:
    """The effective configuration as TOML, each key with its documentation as a comment.
    With ``redact``, a set credential reads as ``REDACTED`` (for printing, not for parsing back)."""
    lines: list[str] = []
    for section_field in fields(config):
        section = getattr(config, section_field.name)
        lines.append(f"[{section_field.name}]")
        for f in _shown_fields(section):
            lines.append(f"# {f.metadata['rule'].doc}")
            lines.append(f"{f.name} = {_toml_value(_shown(section, f.name, f.metadata['rule'], redact))}")
        lines.append("")
    return "\n".join(lines)


def to_dict(config: Config, *, redact: bool = False) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section_field in fields(config):
        section = getattr(config, section_field.name)
        out[section_field.name] = {
            f.name: (
                list(v) if isinstance(v := _shown(section, f.name, f.metadata["rule"], redact), tuple) else v
            )
            for f in _shown_fields(section)
        }
    return out


def _shown_fields(section: object) -> list[Any]:
    """A section's keys as ``config show`` prints them: without deprecated aliases."""
    return [f for f in fields(section) if f.metadata["rule"].moved_to is None]  # type: ignore[arg-type]


def _shown(section: object, name: str, rule: Rule, redact: bool) -> Any:
    value = getattr(section, name)
    return REDACTED if redact and rule.secret and value else value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_string(v) for v in value) + "]"
    raise AssertionError(f"cannot write {value!r} as TOML")


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'
