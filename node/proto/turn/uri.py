"""TURN server URIs (RFC 7065): ``turn:host[:port][?transport=udp|tcp]`` and
``turns:host[:port][?transport=tcp]`` (TLS). IPv6 hosts are bracketed."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

DEFAULT_PORT = 3478  # RFC 8656 §4: TURN over UDP and TCP
DEFAULT_TLS_PORT = 5349  # RFC 8656 §4: TURN over TLS


class TurnTransport(enum.Enum):
    """How the client reaches the server (RFC 8656 §3.1); the relay itself is always UDP."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class TurnServerAddress:
    host: str
    port: int
    transport: TurnTransport

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "turns" if self.transport is TurnTransport.TLS else "turn"
        query = "" if self.transport is TurnTransport.TLS else f"?transport={self.transport.value}"
        return f"{scheme}:{host}:{self.port}{query}"


def parse_turn_uri(text: str) -> TurnServerAddress | None:
    """The server a RFC 7065 URI names, or None when it is malformed."""
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in ("turn", "turns") or not rest:
        return None
    rest, _, query = rest.partition("?")
    tls = scheme == "turns"
    transport = TurnTransport.TLS if tls else TurnTransport.UDP
    if query:
        key, eq, value = query.partition("=")
        if key != "transport" or not eq or value not in ("udp", "tcp") or (tls and value == "udp"):
            return None
        if not tls:
            transport = TurnTransport(value)
    host, port = _host_port(rest, DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    if host is None:
        return None
    return TurnServerAddress(host, port, transport)


def _host_port(text: str, default: int) -> tuple[str | None, int]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None, 0
        host, after = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None, 0
    else:
        host, colon, port_text = text.partition(":")
        after = colon + port_text
        if not host or "[" in host or "]" in host:
            return None, 0
    if not after:
        return host, default
    if not after.startswith(":") or not after[1:].isdigit() or not 0 < int(after[1:]) < 65536:
        return None, 0
    return host, int(after[1:])
