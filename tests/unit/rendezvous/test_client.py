"""The client: round trip and fire time in virtual time, timeouts, bounds, misuse; and an
in-memory exchange A <-> introducer <-> B over encoded frames with one-way link delays."""

from __future__ import annotations

import heapq
import itertools

import pytest

from node.proto.rendezvous import (
    Accept,
    Accepted,
    ClientDrop,
    ClientLimits,
    Event,
    Fire,
    Introduce,
    Introduced,
    Introducer,
    IntroduceRefused,
    Message,
    PunchAsA,
    PunchAsB,
    Refusal,
    Refused,
    Register,
    Registered,
    RegistrationRefused,
    RendezvousClient,
    RendezvousMisuse,
    RendezvousUsageError,
    Sync,
    Synced,
    decode,
    encode,
)
from tests.unit.rendezvous.harness import CONE, HOST_A, HOST_B, SYMMETRIC, TOKEN, A, B, token


def test_accepted_gives_rtt_and_fire_at_half_an_rtt_later() -> None:
    client = RendezvousClient()
    request, introduce = client.introduce(B, HOST_A, CONE, TOKEN, now=10.0)
    assert introduce == Introduce(request, B, TOKEN, HOST_A, CONE)
    # Times exact in binary: rtt 0.5, fired 0.25 after Accepted.
    [event] = client.receive(Accepted(request, TOKEN, HOST_B, SYMMETRIC), now=10.5)
    assert event == PunchAsA(request, B, TOKEN, HOST_B, SYMMETRIC, 10.75, Sync(TOKEN), 0.5)
    assert client.get_timer() is None
    assert client.receive(Accepted(request, TOKEN, HOST_B, SYMMETRIC), now=10.6) == []  # once only


def test_answers_to_no_request_of_ours_are_dropped() -> None:
    client = RendezvousClient()
    request, _ = client.introduce(B, HOST_A, CONE, TOKEN, now=0.0)
    assert client.receive(Accepted(request, token(9), HOST_B, CONE), now=0.1) == []  # wrong token
    assert client.receive(Accepted(request + 1, TOKEN, HOST_B, CONE), now=0.1) == []
    assert client.receive(Refused(request + 1, Refusal.DECLINED), now=0.1) == []
    assert client.receive(Synced(TOKEN), now=0.1) == []  # not a B-side token
    assert client.receive(Register((), CONE), now=0.1) == []
    assert dict(client.stats().drops) == {
        ClientDrop.UNKNOWN_REQUEST: 3,
        ClientDrop.UNKNOWN_TOKEN: 1,
        ClientDrop.NOT_FROM_INTRODUCER: 1,
    }
    assert client.stats().outstanding == 1


def test_refused_and_registration_refused() -> None:
    client = RendezvousClient()
    request, _ = client.introduce(B, HOST_A, CONE, TOKEN, now=0.0)
    assert client.receive(Refused(request, Refusal.UNKNOWN_PEER), 0.1) == [
        IntroduceRefused(request, B, Refusal.UNKNOWN_PEER)
    ]
    assert client.receive(Refused(0, Refusal.TOO_MANY_REGISTRATIONS), 0.1) == [
        RegistrationRefused(Refusal.TOO_MANY_REGISTRATIONS)
    ]
    assert client.receive(Registered(5), 0.1) == []
    assert client.stats().registered_peers == 5


def test_an_unanswered_introduce_times_out() -> None:
    client = RendezvousClient()
    request, _ = client.introduce(B, HOST_A, CONE, TOKEN, now=2.0)
    assert client.get_timer() == 7.0
    assert client.handle_timer(6.9) == []
    assert client.handle_timer(7.0) == [IntroduceRefused(request, B, Refusal.TIMED_OUT)]
    assert client.receive(Accepted(request, TOKEN, HOST_B, CONE), 7.1) == []  # late: dropped


def test_b_side_accepts_with_its_registration_and_fires_on_synced() -> None:
    client = RendezvousClient()
    client.register(HOST_B, SYMMETRIC)
    [event] = client.receive(Introduced(A, TOKEN, HOST_A, CONE), now=1.0)
    assert event == PunchAsB(A, TOKEN, HOST_A, CONE, Accept(TOKEN, HOST_B, SYMMETRIC))
    assert client.receive(Introduced(A, TOKEN, HOST_A, CONE), now=1.0) == []  # duplicate
    assert client.receive(Synced(TOKEN), now=1.3) == [Fire(TOKEN, 1.3, A)]
    assert client.receive(Synced(TOKEN), now=1.4) == []


def test_b_side_without_sync_is_forgotten() -> None:
    client = RendezvousClient()
    client.receive(Introduced(A, TOKEN, HOST_A, CONE), now=1.0)
    assert client.get_timer() == 6.0
    assert client.handle_timer(6.0) == []
    assert client.stats().awaiting_sync == 0
    assert client.receive(Synced(TOKEN), now=6.1) == []


def test_b_side_may_decline_instead() -> None:
    client = RendezvousClient()
    client.receive(Introduced(A, TOKEN, HOST_A, CONE), now=1.0)
    assert client.decline(TOKEN).reason is Refusal.DECLINED
    with pytest.raises(RendezvousUsageError) as caught:
        client.decline(TOKEN)
    assert caught.value.reason is RendezvousMisuse.UNKNOWN_TOKEN


def test_outstanding_requests_are_bounded() -> None:
    client = RendezvousClient(ClientLimits(max_outstanding=3))
    requests = {client.introduce(B, (), CONE, token(n), 0.0)[0] for n in range(3)}
    assert len(requests) == 3
    assert 0 not in requests
    with pytest.raises(RendezvousUsageError) as caught:
        client.introduce(B, (), CONE, token(3), 0.0)
    assert caught.value.reason is RendezvousMisuse.TOO_MANY_OUTSTANDING
    # B side: introductions beyond the bound are left unanswered (counted).
    for n in range(4):
        client.receive(Introduced(A, token(10 + n), (), CONE), 0.0)
    assert dict(client.stats().drops) == {ClientDrop.TOO_MANY_PENDING: 1}


def test_introduce_misuse() -> None:
    client = RendezvousClient()
    client.introduce(B, (), CONE, TOKEN, 0.0)
    for tok, reason in ((TOKEN, RendezvousMisuse.DUPLICATE_TOKEN), (b"short", RendezvousMisuse.BAD_TOKEN)):
        with pytest.raises(RendezvousUsageError) as caught:
            client.introduce(B, (), CONE, tok, 0.0)
        assert caught.value.reason is reason
    with pytest.raises(RendezvousUsageError):
        client.register(HOST_A * 17, CONE)
    with pytest.raises(RendezvousUsageError):
        ClientLimits(answer_timeout_s=0.0)


# -- end to end ------------------------------------------------------------------------------


class Net:
    """Client A, client B and an introducer; every link carries encoded frames with a one-way
    delay per client, in virtual time."""

    def __init__(self, delay_a: float, delay_b: float) -> None:
        self.introducer = Introducer()
        self.clients = {A: RendezvousClient(), B: RendezvousClient()}
        self.delay = {A: delay_a, B: delay_b}
        self.queue: list[tuple[float, int, str, str, bytes]] = []  # (at, seq, to, from, frame)
        self.seq = itertools.count()
        self.events: list[tuple[str, Event]] = []

    def to_introducer(self, sender: str, message: Message, now: float) -> None:
        item = (now + self.delay[sender], next(self.seq), "introducer", sender, encode(message))
        heapq.heappush(self.queue, item)

    def run(self) -> None:
        while self.queue:
            now, _, to, sender, frame = heapq.heappop(self.queue)
            message = decode(frame)
            if to == "introducer":
                for peer, out in self.introducer.handle(sender, message, now):
                    heapq.heappush(
                        self.queue, (now + self.delay[peer], next(self.seq), peer, "", encode(out))
                    )
                continue
            for event in self.clients[to].receive(message, now):
                self.events.append((to, event))
                if isinstance(event, PunchAsA):
                    self.to_introducer(to, event.sync, now)
                elif isinstance(event, PunchAsB):
                    self.to_introducer(to, event.accept, now)


@pytest.mark.parametrize(("delay_a", "delay_b"), [(0.05, 0.05), (0.01, 0.2), (0.3, 0.02)])
def test_end_to_end_both_sides_fire_within_the_one_way_delay(delay_a: float, delay_b: float) -> None:
    net = Net(delay_a, delay_b)
    for peer, hosts, nat in ((A, HOST_A, CONE), (B, HOST_B, SYMMETRIC)):
        net.to_introducer(peer, net.clients[peer].register(hosts, nat), 0.0)
    net.run()
    _, introduce = net.clients[A].introduce(B, HOST_A, CONE, TOKEN, now=1.0)
    net.to_introducer(A, introduce, 1.0)
    net.run()
    events = {type(event): event for _, event in net.events}
    a, b, fire = events[PunchAsA], events[PunchAsB], events[Fire]
    assert isinstance(a, PunchAsA)
    assert isinstance(b, PunchAsB)
    assert isinstance(fire, Fire)
    assert (a.peer, a.candidates, a.nat) == (B, HOST_B, SYMMETRIC)
    assert (b.peer, b.candidates, b.nat) == (A, HOST_A, CONE)
    assert a.token == b.token == fire.token == TOKEN
    assert a.rtt == pytest.approx(2 * (delay_a + delay_b))
    # A fires half a round trip after Accepted; B when Sync arrives, a one-way trip A -> I -> B.
    assert abs(a.fire_at - fire.at) <= max(delay_a, delay_b) + 1e-9
    if delay_a == delay_b:
        assert a.fire_at == pytest.approx(fire.at)
    assert net.introducer.stats().pending == 0
    assert net.clients[A].get_timer() is None
    assert net.clients[B].get_timer() is None
