"""What a running lab looks like to a person: namespaces, addresses, behaviours, coturn.

A :class:`LabSummary` is printed by ``lab up``/``lab status`` (as text or JSON) and stored in the
lab's record, so ``lab status`` can show it from another process. ``to_json`` gives a JSON-able
dict and ``from_json`` reads one back; a malformed one raises :class:`SummaryFormatError`, which
the state module reports as a corrupt state file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from netlink.lab.nat import NatBehaviour

IPv4 = ipaddress.IPv4Address
T = TypeVar("T")


class SummaryFormatError(ValueError):
    """A stored summary is not what :meth:`LabSummary.to_json` writes."""


def _field(raw: Mapping[str, Any], key: str, kind: type[T]) -> T:
    value = raw[key]
    if not isinstance(value, kind):
        raise SummaryFormatError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _object(raw: Any, key: str) -> Mapping[str, Any]:
    value = raw[key] if key else raw
    if not isinstance(value, dict):
        raise SummaryFormatError(f"{key or 'summary'}: expected an object")
    return value


def _endpoint(text: str) -> tuple[IPv4, int]:
    address, sep, port = text.rpartition(":")
    if not sep:
        raise SummaryFormatError(f"{text!r}: expected ADDRESS:PORT")
    return IPv4(address), int(port)


@dataclass(frozen=True, slots=True)
class ServerSummary:
    netns: str
    primary: IPv4
    secondary: IPv4
    stranger: IPv4

    def to_json(self) -> dict[str, Any]:
        return {
            "netns": self.netns,
            "primary": str(self.primary),
            "secondary": str(self.secondary),
            "stranger": str(self.stranger),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ServerSummary:
        return cls(
            _field(raw, "netns", str),
            IPv4(_field(raw, "primary", str)),
            IPv4(_field(raw, "secondary", str)),
            IPv4(_field(raw, "stranger", str)),
        )


@dataclass(frozen=True, slots=True)
class RouterSummary:
    name: str
    netns: str
    nat: NatBehaviour
    wan: IPv4
    lan: ipaddress.IPv4Network

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "netns": self.netns,
            "nat": self.nat.value,
            "wan": str(self.wan),
            "lan": str(self.lan),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RouterSummary:
        return cls(
            _field(raw, "name", str),
            _field(raw, "netns", str),
            NatBehaviour(_field(raw, "nat", str)),
            IPv4(_field(raw, "wan", str)),
            ipaddress.IPv4Network(_field(raw, "lan", str)),
        )


@dataclass(frozen=True, slots=True)
class HostSummary:
    name: str
    netns: str
    address: IPv4
    router: str | None  # None: an open host on the public segment

    @property
    def enter(self) -> str:
        """The shell command that enters the host."""
        return f"ip netns exec {self.netns} bash"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "netns": self.netns,
            "address": str(self.address),
            "router": self.router,
            "enter": self.enter,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HostSummary:
        router = raw["router"]
        if router is not None and not isinstance(router, str):
            raise SummaryFormatError("router: expected a name or null")
        return cls(
            _field(raw, "name", str), _field(raw, "netns", str), IPv4(_field(raw, "address", str)), router
        )


@dataclass(frozen=True, slots=True)
class CoturnSummary:
    primary: IPv4
    secondary: IPv4
    port: int
    alt_port: int
    tls_port: int
    username: str
    password: str
    realm: str
    log: str

    def to_json(self) -> dict[str, Any]:
        return {
            "udp_tcp": f"{self.primary}:{self.port}",
            "alternate": f"{self.secondary}:{self.alt_port}",
            "tls": f"{self.primary}:{self.tls_port}",
            "username": self.username,
            "password": self.password,
            "realm": self.realm,
            "log": self.log,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CoturnSummary:
        primary, port = _endpoint(_field(raw, "udp_tcp", str))
        secondary, alt_port = _endpoint(_field(raw, "alternate", str))
        _, tls_port = _endpoint(_field(raw, "tls", str))
        return cls(
            primary,
            secondary,
            port,
            alt_port,
            tls_port,
            _field(raw, "username", str),
            _field(raw, "password", str),
            _field(raw, "realm", str),
            _field(raw, "log", str),
        )


@dataclass(frozen=True, slots=True)
class LabSummary:
    """A lab as a person sees it; ``coturn`` is None for a lab without coturn."""

    prefix: str
    bridge_netns: str
    server: ServerSummary
    routers: tuple[RouterSummary, ...]
    hosts: tuple[HostSummary, ...]
    coturn: CoturnSummary | None
    workdir: str

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "bridge": {"netns": self.bridge_netns},
            "server": self.server.to_json(),
            "routers": [r.to_json() for r in self.routers],
            "hosts": [h.to_json() for h in self.hosts],
            "coturn": None if self.coturn is None else self.coturn.to_json(),
            "workdir": self.workdir,
        }

    @classmethod
    def from_json(cls, raw: Any) -> LabSummary:
        """Read what :meth:`to_json` wrote. Raises SummaryFormatError."""
        try:
            top = _object(raw, "")
            routers = _field(top, "routers", list)
            hosts = _field(top, "hosts", list)
            turn = top["coturn"]
            return cls(
                prefix=_field(top, "prefix", str),
                bridge_netns=_field(_object(top, "bridge"), "netns", str),
                server=ServerSummary.from_json(_object(top, "server")),
                routers=tuple(RouterSummary.from_json(_object(r, "")) for r in routers),
                hosts=tuple(HostSummary.from_json(_object(h, "")) for h in hosts),
                coturn=None if turn is None else CoturnSummary.from_json(_object(top, "coturn")),
                workdir=_field(top, "workdir", str),
            )
        except SummaryFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SummaryFormatError(f"{type(exc).__name__}: {exc}") from exc
