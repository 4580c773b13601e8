"""A PeerSender and a Receiver wired back to back over a simulated channel, in virtual time.

The channel drops, duplicates and delays (so reorders) every frame by the draws of a
``random.Random`` that the test gives (hypothesis supplies it): DATA from the sender, ACKs back.
A multipath Transmit goes out as two independent copies (two paths). The application offers
messages whenever the window lets it and consumes the inbox (unless told to stop).
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

from node.proto.delivery.events import Acknowledged, Delivered, Failed, Transmit
from node.proto.delivery.ids import MessageId
from node.proto.delivery.receiver import Receiver
from node.proto.delivery.sender import PeerSender
from node.proto.delivery.settings import DeliverySettings
from node.proto.delivery.wire import AckFrame, DataFrame, decode
from node.proto.vocabulary import Priority

PEER = "peer-a"


def epochs(start: int = 1) -> itertools.count[int]:
    return itertools.count(start)


@dataclass
class Channel:
    rng: random.Random
    loss: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.01
    jitter: float = 0.0

    def fates(self) -> list[float]:
        """The delays of the copies that arrive (none when lost)."""
        if self.rng.random() < self.loss:
            return []
        copies = 2 if self.rng.random() < self.duplicate else 1
        return [self.delay + self.rng.random() * self.jitter for _ in range(copies)]


@dataclass
class Sim:
    channel: Channel
    settings: DeliverySettings = field(default_factory=DeliverySettings)
    now: float = 0.0
    consume: bool = True
    sender: PeerSender = field(init=False)
    receiver: Receiver = field(init=False)
    delivered: list[Delivered] = field(default_factory=list)
    acknowledged: list[MessageId] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    sent: list[Transmit] = field(default_factory=list)
    acks_seen: list[AckFrame] = field(default_factory=list)
    _queue: list[tuple[float, int, str, bytes]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.sender = PeerSender(self.settings, epoch_source=epochs().__next__)
        self.receiver = Receiver(self.settings)

    def _put(self, direction: str, data: bytes, copies: int = 1) -> None:
        for _ in range(copies):
            for delay in self.channel.fates():
                heapq.heappush(self._queue, (self.now + delay, next(self._order), direction, data))

    def pump(self) -> None:
        for transmit in self.sender.datagrams_to_send():
            self.sent.append(transmit)
            self._put("data", transmit.data, 2 if transmit.multipath else 1)
        for _, data in self.receiver.datagrams_to_send(self.now):
            self._put("ack", data)
        while (event := self.sender.next_event()) is not None:
            if isinstance(event, Acknowledged):
                self.acknowledged.append(event.message_id)
            else:
                self.failed.append(event)
        while (delivered := self.receiver.next_event()) is not None:
            self.delivered.append(delivered)
            if self.consume:
                self.receiver.consumed(len(delivered.payload), self.now)

    def next_time(self) -> float | None:
        times = [t for t in (self.sender.get_timer(), self.receiver.get_timer()) if t is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times, default=None)

    def step(self) -> bool:
        """Advance to the next thing that happens; False when nothing is left to happen."""
        self.pump()
        when = self.next_time()
        if when is None:
            return False
        self.now = max(self.now, when)
        while self._queue and self._queue[0][0] <= self.now:
            _, _, direction, data = heapq.heappop(self._queue)
            frame = decode(data, self.settings.max_message_bytes)
            if direction == "data":
                assert isinstance(frame, DataFrame)
                self.receiver.receive(PEER, frame, self.now)
            else:
                assert isinstance(frame, AckFrame)
                self.acks_seen.append(frame)
                self.sender.on_ack(frame, self.now)
        self.sender.handle_timer(self.now)
        self.pump()
        return True

    def run_until(self, until: float) -> None:
        while self.now < until:
            when = self.next_time()
            if when is None or when > until:
                self.now = until
                return
            self.step()

    def send_all(self, messages: list[tuple[Priority, bytes]], limit: float = 3600.0) -> None:
        """Offer every message in turn, waiting while the window is full; run until quiet."""
        pending = list(messages)
        while pending and self.now < limit:
            priority, payload = pending[0]
            if self.sender.offer(payload, priority, self.now) is not None:
                pending.pop(0)
                continue
            assert self.step(), "window full but nothing left to happen"
        while self.now < limit and self.step():
            pass
        assert not pending
