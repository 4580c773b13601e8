"""One peer's sending half: its delivery ``PeerSender`` on a ``CoreTimer``, the callers waiting for
an acknowledgement or for room in the window, the path each message in flight left on, and the
ACKs due to the peer.

Window room is granted in arrival order: a caller that finds the window full, or others already
waiting, queues; the head of the queue is woken when an acknowledgement frees room, offers its
message, and wakes the next if room is left. So concurrent callers' messages enter the window in
the order they called (the order the receiver releases them in, per class).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from node.proto.coordinator import PathKey
from node.proto.delivery.ids import MessageId
from node.proto.delivery.sender import PeerSender
from node.proto.delivery.settings import DeliverySettings
from node.proto.vocabulary import PeerId, TransportKind
from node.services.coordinator.stall import StallWatch
from node.transports.timer import CoreTimer


class _RoomWaiter:
    __slots__ = ("future", "size")

    def __init__(self, size: int, future: asyncio.Future[None]) -> None:
        self.size = size
        self.future = future


class PeerOutbound:
    __slots__ = (
        "acks",
        "failed_path",
        "held_on",
        "peer",
        "replies",
        "room",
        "sender",
        "sent_on",
        "task",
        "timer",
        "wake",
        "watch",
    )

    def __init__(
        self,
        peer: PeerId,
        settings: DeliverySettings,
        loop: asyncio.AbstractEventLoop,
        on_timer: Callable[[PeerOutbound], None],
    ) -> None:
        self.peer = peer
        self.sender = PeerSender(settings)
        self.timer = CoreTimer(loop, self.sender.get_timer, self.sender.handle_timer, lambda: on_timer(self))
        # Reliable messages a caller awaits; the result is the kind of path the ACK answered.
        self.acks: dict[MessageId, asyncio.Future[TransportKind | None]] = {}
        self.sent_on: dict[MessageId, PathKey] = {}  # reliable messages in flight: their last path
        # Reliable messages the peer holds but has not acknowledged (selectively acknowledged):
        # the path they came on, whose outcome was recorded when the peer said it had them.
        self.held_on: dict[MessageId, PathKey] = {}
        self.room: deque[_RoomWaiter] = deque()
        self.failed_path = False  # a send met a dead path: resend what is in flight, once
        # ACKs due to this peer, the latest per class (a newer one says all an older one did):
        # bounded however long its path is backed up.
        self.replies: dict[int, bytes] = {}
        # The peer's own sending task (node.services.coordinator.sending): the only one that
        # writes to it, so frames leave in the order the sender made them, and a peer whose
        # path is backed up holds up nobody else. None while idle.
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.watch: StallWatch | None = None  # while the task sends: notices a stuck send

    def close(self) -> None:
        self.timer.close()
        for waiter in self.room:
            if not waiter.future.done():
                waiter.future.cancel()
        self.room.clear()

    async def wait_for_room(self, size: int) -> None:
        """Return when a message of ``size`` may be offered (its turn, and room in the window)."""
        if not self.room and self.sender.can_offer(size):
            return
        waiter = _RoomWaiter(size, asyncio.get_running_loop().create_future())
        self.room.append(waiter)
        try:
            self.grant()
            await waiter.future
        except BaseException:
            if waiter in self.room:
                self.room.remove(waiter)
            self.grant()  # a turn we were given passes on
            raise
        self.room.remove(waiter)  # the caller offers now, before anything else runs

    def grant(self) -> None:
        """Wake the head of the queue if its message fits (after an ack, or a turn was used)."""
        if self.room:
            head = self.room[0]
            if not head.future.done() and self.sender.can_offer(head.size):
                head.future.set_result(None)
