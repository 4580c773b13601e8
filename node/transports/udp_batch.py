"""Writing a batch of datagrams to one destination on a UDP socket with few system calls.

Runs of equal-sized datagrams go out in one ``sendmsg`` with UDP generic segmentation offload
(``UDP_SEGMENT``, Linux 4.18+): the kernel cuts the buffer into one datagram per segment, so the
wire carries exactly what one ``send`` per datagram would, but the socket, routing and netfilter
work is done once per run. The socket is connected (TURN's) or each batch names its destination
(the node's port: a batch per peer address). Where GSO is refused (no kernel support, a device
without checksum offload: EIO) the writer falls back to one ``send`` per datagram for good.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

SOL_UDP: Final = 17  # IPPROTO_UDP
UDP_SEGMENT: Final = 103  # linux/udp.h
MAX_SEGMENTS: Final = 64  # UDP_MAX_SEGMENTS on older kernels (newer ones allow 128)
MAX_GSO_BYTES: Final = 60_000  # below a UDP datagram's 65,507-byte IPv4 payload limit
_SEGMENT_SIZE = struct.Struct("=H")
_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})


class BatchWriter:
    """Writes batches on one UDP socket; ``on_error`` gets each failed write's error and the
    number of datagrams not written (the batch's last ones)."""

    def __init__(self, sock: socket.socket, on_error: Callable[[OSError, int], None]) -> None:
        self._sock = sock
        self._on_error = on_error
        self.gso = True
        self.gso_writes = 0  # sendmsg calls that carried more than one datagram

    def write(self, batch: Sequence[bytes], destination: Any = None) -> None:
        """Write ``batch`` in order, to ``destination`` (an address as ``sendto`` takes it) or,
        without one, to where the socket is connected."""
        sock = self._sock
        count = len(batch)
        i = 0
        while i < count:
            size = len(batch[i])
            limit = min(count, i + MAX_SEGMENTS, i + max(1, MAX_GSO_BYTES // max(size, 1)))
            j = i + 1
            while j < limit and len(batch[j]) == size:
                j += 1
            if j < limit and len(batch[j]) < size:
                j += 1  # the last segment may be shorter
            if j - i > 1 and self.gso:
                try:
                    options = [(SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(size))]
                    # The datagrams as the message's buffers (scatter-gather): the kernel reads
                    # them in one copy, none joined here first. GSO cuts segments from the whole.
                    if destination is None:
                        sock.sendmsg(batch[i:j], options)
                    else:
                        sock.sendmsg(batch[i:j], options, 0, destination)
                    self.gso_writes += 1
                except OSError as exc:
                    if exc.errno not in _REFUSED:
                        self._on_error(exc, count - i)
                        return
                    self.gso = False
                    continue  # the same run again, one datagram at a time
            else:
                for k in range(i, j):
                    try:
                        if destination is None:
                            sock.send(batch[k])
                        else:
                            sock.sendto(batch[k], destination)
                    except OSError as exc:
                        self._on_error(exc, count - k)
                        return
            i = j
