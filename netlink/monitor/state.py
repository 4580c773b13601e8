"""The kernel's network state as the monitor knows it (sans-IO: no socket, no clock).

Fed the datagrams of a ``NETLINK_ROUTE`` socket, it keeps the interfaces, their addresses and
the default routes, asks for dumps (``requests_to_send``) and reports typed events only for real
changes. Events are derived by comparing, for every key a batch touched, the value before the
batch with the value after it, so:

- a burst read together is reported as its net change (a link that went down and up again
  within one read is no event) while nothing waits on a timer: the first change is reported as
  soon as its datagram is read;
- a re-dump after an overrun (ENOBUFS: the kernel dropped notifications) reports exactly the
  differences between the state before and the dump, the same way.

Subscribe first, then dump (STYLE.md): notifications that arrive while a dump is running are
applied in order, and an entry a notification touched during a dump is not removed for being
absent from it. The first full dump is the baseline and reports nothing.

The kernel flushes IPv4 routes without notifying when an interface goes administratively down
or loses addresses (fib_disable_ip / fib_sync_down_dev in net/ipv4/fib_frontend.c send no
RTM_DELROUTE), so those changes schedule a route re-dump.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from netlink.monitor import wire
from netlink.monitor.errors import LinkMonitorError, MonitorFailure
from netlink.monitor.model import (
    AddressAdded,
    AddressRemoved,
    DefaultRoute,
    DefaultRouteChanged,
    Family,
    Interface,
    IPAddress,
    IPInterface,
    LinkDown,
    LinkEvent,
    LinkUp,
    MonitorStats,
    NetworkState,
    OperState,
)
from netlink.monitor.wire import DumpKind

ALL_DUMPS = (DumpKind.LINKS, DumpKind.ADDRESSES, DumpKind.ROUTES)
MAX_DUMP_ERRORS = 3  # consecutive error replies to our dumps before the socket is given up


@dataclass(frozen=True, slots=True)
class _Route:
    """One next hop of a default route, as the kernel keys it (family, metric, hop)."""

    family: Family
    metric: int
    index: int
    gateway: IPAddress | None


_AddrKey = tuple[int, IPInterface]
_RoutePredicate = Callable[[_Route], bool]


@dataclass(frozen=True, slots=True)
class _LinkChange:
    index: int


@dataclass(frozen=True, slots=True)
class _AddressChange:
    index: int
    address: IPInterface


@dataclass(frozen=True, slots=True)
class _RouteChange:
    family: Family


_Change = _LinkChange | _AddressChange | _RouteChange


@dataclass(slots=True)
class _Dump:
    kind: DumpKind
    seq: int
    seen_links: set[int]
    seen_addresses: set[_AddrKey]
    seen_routes: set[_Route]
    interrupted: bool = False


class KernelView:
    """Interfaces, addresses and default routes of one network namespace; see the module doc."""

    def __init__(self, portid: int = 0) -> None:
        self._portid = portid
        self._links: dict[int, Interface] = {}
        self._addresses: dict[int, dict[IPInterface, None]] = {}
        self._routes: dict[_Route, None] = {}
        self._names: dict[int, str] = {}  # last name of every index seen (for removal events)
        self._loaded = False
        self._pending: deque[DumpKind] = deque()
        self._dump: _Dump | None = None
        self._seq = 0
        self._dump_errors = 0
        self._failure: LinkMonitorError | None = None
        # Value of each key before the current batch: link index -> up, (index, address) ->
        # present, family -> default routes.
        self._before_links: dict[int, bool] = {}
        self._before_addresses: dict[_AddrKey, bool] = {}
        self._before_routes: dict[Family, tuple[_Route, ...]] = {}
        self._order: dict[_Change, None] = {}  # keys touched by the batch, first touch first
        self._events = 0
        self._overruns = 0
        self._malformed = 0
        self._unknown = 0
        self._resyncs = 0
        self.resync()

    # -- driving ---------------------------------------------------------------------------
    def attach(self, portid: int) -> None:
        """A new socket (port ``portid``) replaces the old one: dump everything again and report
        what changed meanwhile."""
        self._portid = portid
        self._dump = None
        self.resync()

    def resync(self, kinds: Iterable[DumpKind] = ALL_DUMPS) -> None:
        """Queue dumps of ``kinds`` (each at most once)."""
        for kind in kinds:
            if kind not in self._pending:
                self._pending.append(kind)

    def overrun(self) -> None:
        """The kernel reported ENOBUFS: notifications were lost, so dump everything again."""
        self._overruns += 1
        self.resync()

    def requests_to_send(self) -> list[bytes]:
        """The next dump request, when none is running (the kernel runs one dump per socket)."""
        if self._dump is not None or not self._pending:
            return []
        kind = self._pending.popleft()
        self._seq = self._seq % 0x7FFFFFFF + 1
        self._dump = _Dump(kind, self._seq, set(), set(), set())
        self._resyncs += kind == DumpKind.LINKS
        return [wire.dump_request(kind, self._seq)]

    @property
    def dumping(self) -> bool:
        return self._dump is not None or bool(self._pending)

    @property
    def loaded(self) -> bool:
        """The first full dump is in: the state is complete and changes are reported."""
        return self._loaded

    def receive(self, data: bytes) -> None:
        """Apply one datagram from the socket."""
        for record in wire.parse(data):
            self._apply(record)

    def truncated(self) -> None:
        """A datagram was longer than the read buffer (the socket cut it): counted, skipped."""
        self._malformed += 1

    def take_failure(self) -> LinkMonitorError | None:
        """A failure that needs a new socket (the kernel keeps refusing our dumps), once."""
        failure, self._failure = self._failure, None
        return failure

    def events(self) -> tuple[LinkEvent, ...]:
        """The net changes since the last call, in the order they were first seen."""
        found: list[LinkEvent] = []
        if self._loaded:
            for key in self._order:
                event = self._event(key)
                if event is not None:
                    found.append(event)
        self._forget_batch()
        self._events += len(found)
        return tuple(found)

    def _forget_batch(self) -> None:
        self._before_links.clear()
        self._before_addresses.clear()
        self._before_routes.clear()
        self._order.clear()

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> NetworkState:
        interfaces = tuple(
            replace(link, addresses=tuple(self._addresses.get(index, ())))
            for index, link in sorted(self._links.items())
        )
        routes = tuple(
            self._render(r)
            for r in sorted(self._routes, key=lambda r: (r.family, r.metric, r.index, str(r.gateway)))
        )
        return NetworkState(interfaces, routes)

    def has_address(self, address: IPAddress) -> bool:
        return any(a.ip == address for addrs in self._addresses.values() for a in addrs)

    def stats(self) -> MonitorStats:
        return MonitorStats(
            events=self._events,
            overruns=self._overruns,
            malformed=self._malformed,
            unknown=self._unknown,
            resyncs=self._resyncs,
        )

    # -- applying records --------------------------------------------------------------------
    def _apply(self, record: wire.Record) -> None:
        match record:
            case wire.Malformed():
                self._malformed += 1
            case wire.Unknown():
                self._unknown += 1
            case wire.Ignored():
                pass
            case wire.Done(header=header):
                if self._is_dump_reply(header):
                    self._finish_dump()
            case wire.ErrorReply(header=header, errno=code):
                if self._is_dump_reply(header):
                    self._dump_failed(code)
            case wire.LinkRecord():
                self._note_interrupt(record.header)
                self._link(record)
            case wire.AddressRecord():
                self._note_interrupt(record.header)
                self._address(record)
            case wire.RouteRecord():
                self._note_interrupt(record.header)
                self._route(record)

    def _is_dump_reply(self, header: wire.Header) -> bool:
        dump = self._dump
        return dump is not None and header.seq == dump.seq and header.pid == self._portid

    def _note_interrupt(self, header: wire.Header) -> None:
        if self._dump is not None and header.flags & wire.NLM_F_DUMP_INTR and self._is_dump_reply(header):
            self._dump.interrupted = True

    def _link(self, record: wire.LinkRecord) -> None:
        index = record.index
        self._touch_link(index)
        if self._dump is not None:
            self._dump.seen_links.add(index)
        if record.deleted:
            self._remove_link(index)
            return
        old = self._links.get(index)
        self._names[index] = record.name
        self._links[index] = Interface(index, record.name, record.state, record.carrier, record.admin_up)
        if old is not None and old.admin_up and not record.admin_up:
            self._drop_routes(lambda r: r.index == index)
            self.resync((DumpKind.ROUTES,))

    def _remove_link(self, index: int) -> None:
        self._links.pop(index, None)
        for address in list(self._addresses.get(index, ())):
            self._touch_address((index, address))
        self._addresses.pop(index, None)
        self._drop_routes(lambda r: r.index == index)

    def _address(self, record: wire.AddressRecord) -> None:
        key = (record.index, record.address)
        self._touch_address(key)
        if self._dump is not None:
            self._dump.seen_addresses.add(key)
        if record.deleted:
            self._addresses.get(record.index, {}).pop(record.address, None)
            self.resync((DumpKind.ROUTES,))
        else:
            self._addresses.setdefault(record.index, {})[record.address] = None

    def _route(self, record: wire.RouteRecord) -> None:
        routes = [_Route(record.family, record.metric, index, gw) for index, gw in record.hops]
        self._touch_routes(record.family)
        if self._dump is not None:
            self._dump.seen_routes.update(routes)
        if record.deleted:
            # A delete names the route (family, metric); the kernel removes all its next hops.
            self._drop_routes(lambda r: r.family == record.family and r.metric == record.metric)
            return
        if record.header.flags & wire.NLM_F_REPLACE:
            self._drop_routes(lambda r: r.family == record.family and r.metric == record.metric)
        for route in routes:
            self._routes[route] = None

    def _drop_routes(self, doomed: _RoutePredicate) -> None:
        for route in [r for r in self._routes if doomed(r)]:
            self._touch_routes(route.family)
            del self._routes[route]

    # -- dumps -------------------------------------------------------------------------------
    def _finish_dump(self) -> None:
        dump = self._dump
        assert dump is not None  # checked by _is_dump_reply
        self._dump = None
        self._dump_errors = 0
        if dump.interrupted:
            self._pending.appendleft(dump.kind)
            return
        if dump.kind == DumpKind.LINKS:
            for index in [i for i in self._links if i not in dump.seen_links]:
                self._touch_link(index)
                self._remove_link(index)
        elif dump.kind == DumpKind.ADDRESSES:
            for index, addresses in self._addresses.items():
                for address in [a for a in addresses if (index, a) not in dump.seen_addresses]:
                    self._touch_address((index, address))
                    del addresses[address]
        else:
            self._drop_routes(lambda r: r not in dump.seen_routes)
        if not self._pending and not self._loaded:
            self._loaded = True  # the baseline: what it took to get here is not a change
            self._forget_batch()

    def _dump_failed(self, code: int) -> None:
        dump = self._dump
        assert dump is not None  # checked by _is_dump_reply
        self._dump = None
        self._dump_errors += 1
        if self._dump_errors >= MAX_DUMP_ERRORS:
            self._dump_errors = 0
            self._failure = LinkMonitorError(
                MonitorFailure.SOCKET_READ, f"the kernel refused {MAX_DUMP_ERRORS} dumps, last errno {code}"
            )
        self._pending.appendleft(dump.kind)

    # -- change tracking ---------------------------------------------------------------------
    def _touch_link(self, index: int) -> None:
        if index not in self._before_links:
            link = self._links.get(index)
            self._before_links[index] = link is not None and link.up
            self._order[_LinkChange(index)] = None

    def _touch_address(self, key: _AddrKey) -> None:
        if key not in self._before_addresses:
            self._before_addresses[key] = key[1] in self._addresses.get(key[0], {})
            self._order[_AddressChange(*key)] = None

    def _touch_routes(self, family: Family) -> None:
        if family not in self._before_routes:
            self._before_routes[family] = self._family_routes(family)
            self._order[_RouteChange(family)] = None

    def _family_routes(self, family: Family) -> tuple[_Route, ...]:
        return tuple(
            sorted(
                (r for r in self._routes if r.family == family),
                key=lambda r: (r.metric, r.index, str(r.gateway)),
            )
        )

    def _event(self, key: _Change) -> LinkEvent | None:
        match key:
            case _LinkChange(index=index):
                link = self._links.get(index)
                up = link is not None and link.up
                if up == self._before_links[index]:
                    return None
                name = self._names.get(index, str(index))
                if link is None:
                    return LinkDown(index, name, OperState.NOTPRESENT)
                return LinkUp(index, name, link.state) if up else LinkDown(index, name, link.state)
            case _AddressChange(index=index, address=address):
                present = address in self._addresses.get(index, {})
                if present == self._before_addresses[(index, address)]:
                    return None
                name = self._names.get(index, str(index))
                return (AddressAdded if present else AddressRemoved)(index, name, address)
            case _RouteChange(family=family):
                previous, current = self._before_routes[family], self._family_routes(family)
                if previous == current:
                    return None
                return DefaultRouteChanged(
                    family, tuple(map(self._render, previous)), tuple(map(self._render, current))
                )

    def _render(self, route: _Route) -> DefaultRoute:
        return DefaultRoute(
            route.family,
            route.index,
            self._names.get(route.index, str(route.index)),
            route.gateway,
            route.metric,
        )
