"""BatchWriter: a batch written with UDP segmentation offload arrives as the same datagrams, in
order, as one send each would give; refused offload falls back; errors count what was lost."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest

from node.transports.udp_batch import MAX_SEGMENTS, BatchWriter


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


def _receive(receiver: socket.socket, count: int) -> list[bytes]:
    return [receiver.recv(65535) for _ in range(count)]


def test_runs_of_sizes_arrive_as_the_same_datagrams_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    errors: list[tuple[OSError, int]] = []
    writer = BatchWriter(sender, lambda exc, n: errors.append((exc, n)))
    batch = [bytes([i % 251]) * 204 for i in range(MAX_SEGMENTS + 10)]  # more than one GSO write
    batch += [b"short", b"x" * 300, b"x" * 300, b"y" * 17, b"z"]  # a shorter last segment, odd ones
    writer.write(batch)
    assert _receive(receiver, len(batch)) == batch
    assert not errors
    assert writer.gso_writes >= 2 or not writer.gso  # offload used, or refused by this kernel


def test_a_batch_to_a_destination_on_an_unconnected_socket_arrives_there_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, receiver = pair
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:  # as the node's port: no peer
        sender.bind(("127.0.0.1", 0))
        writer = BatchWriter(sender, lambda exc, n: pytest.fail(f"{exc} {n}"))
        batch = [bytes([i]) * 1054 for i in range(40)] + [b"last, shorter"]
        writer.write(batch, receiver.getsockname())
        assert _receive(receiver, len(batch)) == batch
        assert writer.gso_writes == 1 or not writer.gso


class _FakeSocket:
    def __init__(self, sendmsg_errno: int | None, send_errno: int | None = None) -> None:
        self.sendmsg_errno = sendmsg_errno
        self.send_errno = send_errno
        self.sent: list[bytes] = []

    def sendmsg(self, buffers: list[bytes], ancillary: object) -> int:
        if self.sendmsg_errno is not None:
            raise OSError(self.sendmsg_errno, "refused")
        self.sent.append(b"".join(buffers))
        return len(self.sent[-1])

    def send(self, data: bytes) -> int:
        if self.send_errno is not None:
            raise OSError(self.send_errno, "full")
        self.sent.append(data)
        return len(data)


def test_refused_offload_falls_back_to_one_send_each_for_good() -> None:
    fake = _FakeSocket(errno.EIO)
    writer = BatchWriter(fake, lambda exc, n: pytest.fail(f"{exc} {n}"))  # type: ignore[arg-type]
    batch = [b"a" * 8] * 5
    writer.write(batch)
    assert fake.sent == batch and not writer.gso
    fake.sendmsg_errno = None
    writer.write(batch)  # never tried again
    assert fake.sent == batch * 2 and writer.gso_writes == 0


@pytest.mark.parametrize("gso", [True, False])
def test_a_full_send_buffer_reports_every_datagram_not_written(gso: bool) -> None:
    fake = _FakeSocket(errno.EAGAIN if gso else errno.EIO, send_errno=errno.EAGAIN)
    errors: list[tuple[OSError, int]] = []
    writer = BatchWriter(fake, lambda exc, n: errors.append((exc, n)))  # type: ignore[arg-type]
    writer.write([b"a" * 8] * 4)
    ((exc, lost),) = errors
    assert exc.errno == errno.EAGAIN and lost == 4
    assert fake.sent == []
