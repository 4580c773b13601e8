"""An RFC 4787-style probe of a router's mapping and filtering, run from a host behind it.

Echo servers in the server namespace listen on the primary and secondary addresses with two UDP
ports each, and on the stranger address. The mapped endpoint is what a server socket sees as the
source of the host's packet; nothing is taken from the host's own view.

- filtering: the host sends from a fresh socket to primary:port1 only; then primary:port2, the
  secondary address, the stranger and finally primary:port1 itself send to the mapped endpoint;
  the host reports which of them arrived. The last one (from the very endpoint the host
  contacted) passes every behaviour that passes UDP, so it is the barrier: the host waits up to
  ANSWER_S for it, then only SILENCE_S more for the others, which were sent before it on the
  same path.
- mapping: a second fresh socket sends to primary:port1, primary:port2, secondary:port1 and
  secondary:port2; the four mapped endpoints give endpoint-independent vs dependent mapping and,
  for sequential allocators, the stride between consecutive new mappings.
- TCP: the host connects to a TCP listener on primary:port1.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netlink.lab.nat import Mapping

if TYPE_CHECKING:
    from netlink.lab.builder import Lab

PORT_1 = 4000
PORT_2 = 4001
SILENCE_S = 0.25  # how long a packet that should not arrive is waited for
ANSWER_S = 3.0  # how long a packet that should arrive may take (generous: loaded CI runners)

UNSOLICITED = frozenset({b"other-port", b"other-address", b"stranger", b"same"})

Endpoint = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe observed."""

    local: Endpoint  # the filtering socket
    filter_mapped: Endpoint | None  # its mapping, as primary:port1 saw it
    mapping_local: Endpoint  # the mapping socket
    mapped: tuple[Endpoint, ...]  # towards p1, p1:port2, secondary:port1, secondary:port2
    from_same_endpoint: bool
    from_other_port: bool
    from_other_address: bool
    from_stranger: bool
    udp: bool
    tcp: bool

    @property
    def mapping(self) -> Mapping:
        if not self.mapped:
            return Mapping.NONE
        if len(set(self.mapped)) == 1:
            return Mapping.ENDPOINT_INDEPENDENT
        return Mapping.ADDRESS_AND_PORT_DEPENDENT

    @property
    def strides(self) -> tuple[int, ...]:
        """Differences between consecutive mapped ports."""
        ports = [port for _, port in self.mapped]
        return tuple(b - a for a, b in itertools.pairwise(ports))


class EchoServers:
    """UDP sockets on primary/secondary x port1/port2 plus the stranger, and a TCP listener."""

    def __init__(self, lab: Lab) -> None:
        server = lab.topology.server
        self.primary = str(server.primary)
        self.secondary = str(server.secondary)
        self.stranger_address = str(server.stranger)
        self.udp: dict[Endpoint, socket.socket] = {}
        for address in (self.primary, self.secondary):
            for port in (PORT_1, PORT_2):
                self.udp[(address, port)] = lab.socket("srv", bind=(address, port), timeout=ANSWER_S)
        self.stranger = lab.socket("srv", bind=(self.stranger_address, PORT_1), timeout=ANSWER_S)
        self.tcp = lab.socket("srv", socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((self.primary, PORT_1))
        self.tcp.listen(8)
        self.tcp.settimeout(ANSWER_S)

    def drain(self) -> None:
        for sock in (*self.udp.values(), self.stranger):
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv(2048)
            sock.settimeout(ANSWER_S)

    def close(self) -> None:
        for sock in (*self.udp.values(), self.stranger, self.tcp):
            sock.close()


def _observe(server: socket.socket, timeout: float) -> Endpoint | None:
    if timeout > 0:
        server.settimeout(timeout)
    else:
        server.setblocking(False)
    try:
        _, source = server.recvfrom(2048)
    except (TimeoutError, BlockingIOError):
        return None
    return (str(source[0]), int(source[1]))


def _heard(sock: socket.socket, payloads: frozenset[bytes], barrier: bytes) -> set[bytes]:
    """Which of ``payloads`` arrive at ``sock``: up to ANSWER_S for ``barrier`` (sent last, it
    should arrive), then SILENCE_S for the rest; done early once all have arrived."""
    got: set[bytes] = set()
    deadline = time.monotonic() + ANSWER_S
    while got != payloads and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(2048)
        except TimeoutError:
            break
        if data in payloads:
            if data == barrier:
                deadline = time.monotonic() + SILENCE_S
            got.add(data)
    return got


def probe(lab: Lab, host: str, servers: EchoServers) -> ProbeResult:
    """Probe the router in front of ``host`` (see the module docstring)."""
    address = str(lab.host(host).address)
    servers.drain()
    p1 = (servers.primary, PORT_1)
    p2 = (servers.primary, PORT_2)
    s1 = (servers.secondary, PORT_1)
    s2 = (servers.secondary, PORT_2)

    # Filtering.
    hf = lab.socket(host, bind=(address, 0))
    try:
        local = hf.getsockname()
        hf.sendto(b"open", p1)
        mapped = _observe(servers.udp[p1], ANSWER_S)
        heard: set[bytes] = set()
        if mapped is not None:
            servers.udp[p2].sendto(b"other-port", mapped)
            servers.udp[s1].sendto(b"other-address", mapped)
            servers.stranger.sendto(b"stranger", mapped)
            servers.udp[p1].sendto(b"same", mapped)
            heard = _heard(hf, UNSOLICITED, barrier=b"same")
    finally:
        hf.close()

    # Mapping.
    seen: list[Endpoint] = []
    hm = lab.socket(host, bind=(address, 0))
    mapping_local = hm.getsockname()
    try:
        for i, dest in enumerate((p1, p2, s1, s2)):
            hm.sendto(b"map", dest)
            # One observation at a time, so consecutive mappings are allocated in this order.
            # Without UDP (nothing mapped above) the silence is waited out only once.
            timeout = ANSWER_S if mapped is not None else (SILENCE_S if i == 0 else 0.0)
            got = _observe(servers.udp[dest], timeout)
            if got is not None:
                seen.append(got)
    finally:
        hm.close()

    # TCP.
    tcp_ok = False
    ht = lab.socket(host, socket.SOCK_STREAM, timeout=ANSWER_S)
    try:
        ht.connect(p1)
        conn, _ = servers.tcp.accept()
        conn.close()
        tcp_ok = True
    except OSError:
        tcp_ok = False
    finally:
        ht.close()

    return ProbeResult(
        local=(str(local[0]), int(local[1])),
        filter_mapped=mapped,
        mapping_local=(str(mapping_local[0]), int(mapping_local[1])),
        mapped=tuple(seen),
        from_same_endpoint=b"same" in heard,
        from_other_port=b"other-port" in heard,
        from_other_address=b"other-address" in heard,
        from_stranger=b"stranger" in heard,
        udp=mapped is not None,
        tcp=tcp_ok,
    )
