"""Two StreamLink cores wired back to back, in memory and virtual time."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.proto.link.frames import HEADER, FrameErrorReason, FrameKind, encode
from node.proto.link.stream_link import (
    LARGE_PIECE,
    TRANSITIONS,
    Accepted,
    CloseReason,
    DataReceived,
    Decision,
    HelloReceived,
    LinkClosed,
    LinkEvent,
    LinkInput,
    LinkState,
    LinkTiming,
    LinkUsageError,
    PongReceived,
    ProofReceived,
    Role,
    StreamLink,
    proof_message,
)
from node.proto.vocabulary import Frame, Priority

NS, NC, PK, SIG = b"s" * 32, b"c" * 32, b"k" * 32, b"g" * 64


def events(link: StreamLink) -> list[LinkEvent]:
    out = []
    while (e := link.next_event()) is not None:
        out.append(e)
    return out


def pump(a: StreamLink, b: StreamLink, now: float = 0.0) -> None:
    while True:
        ab, ba = a.data_to_send(), b.data_to_send()
        if not ab and not ba:
            return
        if ab:
            b.receive_data(ab, now)
        if ba:
            a.receive_data(ba, now)


def to_verifying(max_message: int = 1024, timing: LinkTiming | None = None) -> tuple[StreamLink, StreamLink]:
    """A client and a server up to the server holding the client's proof."""
    timing = timing or LinkTiming()
    client = StreamLink(Role.CLIENT, max_message, 0.0, timing)
    server = StreamLink(Role.SERVER, max_message, 0.0, timing)
    server.send_hello(NS)
    pump(client, server)
    assert events(client) == [HelloReceived(NS)]
    client.send_proof(NC, PK, SIG)
    pump(client, server)
    assert events(server) == [ProofReceived(NC, PK, SIG, b"")]
    assert server.state is LinkState.VERIFYING
    return client, server


def handshake(max_message: int = 1024, timing: LinkTiming | None = None) -> tuple[StreamLink, StreamLink]:
    client, server = to_verifying(max_message, timing)
    server.accept()
    pump(client, server)
    assert events(client) == [Accepted()]
    assert client.state is server.state is LinkState.OPEN
    return client, server


def test_handshake_then_data_both_ways() -> None:
    client, server = handshake()
    client.send_data(1, 2, b"to server")
    server.send_data(5, 0, b"to client")
    pump(client, server)
    assert events(server) == [DataReceived([Frame(1, b"to server", Priority.HIGH)])]
    assert events(client) == [DataReceived([Frame(5, b"to client", Priority.BULK)])]


def test_the_data_frames_of_one_read_are_one_event() -> None:
    client, server = handshake()
    for i in range(50):
        client.send_data(i, 1, b"m%d" % i)
    server.receive_data(client.data_to_send(), 0.0)
    assert events(server) == [DataReceived([Frame(i, b"m%d" % i) for i in range(50)])]


def test_control_frames_split_the_data_of_a_read_in_order() -> None:
    _client, server = handshake()
    wire = (
        encode(FrameKind.DATA, b"a", 1)
        + encode(FrameKind.DATA, b"b", 2)
        + encode(FrameKind.PING, b"", 77)
        + encode(FrameKind.DATA, b"c", 3)
    )
    server.receive_data(wire, 0.0)
    assert events(server) == [
        DataReceived([Frame(1, b"a", Priority.BULK), Frame(2, b"b", Priority.BULK)]),
        DataReceived([Frame(3, b"c", Priority.BULK)]),
    ]
    assert server.data_to_send() == encode(FrameKind.PONG, b"", 77)


def test_data_after_a_close_in_the_same_read_is_not_delivered() -> None:
    _, server = handshake()
    wire = (
        encode(FrameKind.DATA, b"a", 1)
        + encode(FrameKind.CLOSE, bytes([CloseReason.CLOSED]))
        + encode(FrameKind.DATA, b"late", 2)
    )
    server.receive_data(wire, 0.0)
    assert events(server) == [
        DataReceived([Frame(1, b"a", Priority.BULK)]),
        LinkClosed(CloseReason.CLOSED, by_peer=True),
    ]


def test_data_in_the_read_that_opens_the_link_is_delivered_after_accepted() -> None:
    client, server = to_verifying()
    server.accept()
    server.send_data(9, 0, b"first")
    wire = server.data_to_send()
    client.receive_data(wire, 0.0)  # ACCEPT and DATA in one read
    assert events(client) == [Accepted(), DataReceived([Frame(9, b"first", Priority.BULK)])]


def test_data_before_open_in_a_read_of_data_alone_is_a_protocol_error() -> None:
    client = StreamLink(Role.CLIENT, 1024, 0.0)
    client.receive_data(encode(FrameKind.DATA, b"a", 1) + encode(FrameKind.DATA, b"b", 2), 0.0)
    assert events(client) == [LinkClosed(CloseReason.PROTOCOL_ERROR, by_peer=False)]


def test_refusal_reaches_the_client_with_its_reason() -> None:
    client = StreamLink(Role.CLIENT, 1024, 0.0)
    server = StreamLink(Role.SERVER, 1024, 0.0)
    server.refuse(CloseReason.TOO_MANY_CONNECTIONS)
    pump(client, server)
    assert events(server) == [LinkClosed(CloseReason.TOO_MANY_CONNECTIONS, by_peer=False)]
    assert events(client) == [LinkClosed(CloseReason.TOO_MANY_CONNECTIONS, by_peer=True)]
    assert client.closed and server.closed


def test_refused_proof() -> None:
    client, server = to_verifying()
    server.refuse(CloseReason.NOT_TRUSTED)
    pump(client, server)
    assert events(client)[-1] == LinkClosed(CloseReason.NOT_TRUSTED, by_peer=True)


def test_data_before_the_proof_is_accepted_is_a_protocol_error() -> None:
    server = StreamLink(Role.SERVER, 1024, 0.0)
    server.send_hello(NS)
    server.data_to_send()
    server.receive_data(encode(FrameKind.DATA, b"early", 1), 0.0)
    assert events(server) == [LinkClosed(CloseReason.PROTOCOL_ERROR, by_peer=False)]
    assert server.data_to_send() == encode(FrameKind.CLOSE, bytes([CloseReason.PROTOCOL_ERROR]))


def test_an_oversized_frame_closes_the_link_with_message_too_large() -> None:
    client, server = handshake(max_message=1024)
    server.receive_data(HEADER.pack(2 << 20, FrameKind.DATA, 0, 1), 0.0)
    assert events(server) == [LinkClosed(CloseReason.MESSAGE_TOO_LARGE, False, FrameErrorReason.TOO_LARGE)]
    pump(client, server)
    assert events(client) == [LinkClosed(CloseReason.MESSAGE_TOO_LARGE, by_peer=True)]
    with pytest.raises(LinkUsageError):
        client.send_data(2, 0, b"late")


def test_sending_too_large_is_refused_locally() -> None:
    client, _ = handshake(max_message=10)
    with pytest.raises(LinkUsageError):
        client.send_data(1, 0, b"x" * 11)


def test_malformed_handshake_payloads() -> None:
    client = StreamLink(Role.CLIENT, 1024, 0.0)
    client.receive_data(encode(FrameKind.HELLO, b"\x02" + NS), 0.0)  # unknown version
    assert events(client) == [LinkClosed(CloseReason.PROTOCOL_ERROR, by_peer=False)]
    server = StreamLink(Role.SERVER, 1024, 0.0)
    server.send_hello(NS)
    server.receive_data(encode(FrameKind.PROOF, b"short"), 0.0)
    assert events(server) == [LinkClosed(CloseReason.PROTOCOL_ERROR, by_peer=False)]


def test_unknown_close_reason_is_kept_typed() -> None:
    client, _ = handshake()
    client.receive_data(encode(FrameKind.CLOSE, b"\x99"), 0.0)
    assert events(client) == [LinkClosed(CloseReason.UNKNOWN, by_peer=True)]


def test_ping_pong_measures_rtt_in_virtual_time() -> None:
    client, server = handshake()
    token = client.send_ping(10.0)
    server.receive_data(client.data_to_send(), 10.1)
    client.receive_data(server.data_to_send(), 10.25)
    [pong] = events(client)
    assert isinstance(pong, PongReceived)
    assert pong.token == token
    assert pong.rtt == pytest.approx(0.25)


def test_keepalive_then_timeout_when_the_peer_goes_silent() -> None:
    timing = LinkTiming(handshake_timeout=5, keepalive=60, dead_after=120)
    client, _ = handshake(timing=timing)
    assert client.get_timer() == 60
    client.handle_timer(60)
    assert client.data_to_send().startswith(HEADER.pack(0, FrameKind.PING, 0, 1))
    assert client.get_timer() == 120
    client.handle_timer(120)
    assert events(client) == [LinkClosed(CloseReason.TIMEOUT, by_peer=False)]
    assert client.get_timer() is None


def test_answered_keepalive_keeps_the_link() -> None:
    client, server = handshake(timing=LinkTiming(5, 60, 120))
    client.handle_timer(60)
    pump(client, server, now=61)
    events(client)
    client.handle_timer(120)
    assert client.state is LinkState.OPEN
    assert client.get_timer() == 61 + 60


def test_handshake_timeout() -> None:
    server = StreamLink(Role.SERVER, 1024, 0.0, LinkTiming(handshake_timeout=5))
    server.send_hello(NS)
    assert server.get_timer() == 5
    server.handle_timer(4.9)
    assert server.state is LinkState.AWAIT_PROOF
    server.handle_timer(5)
    assert events(server) == [LinkClosed(CloseReason.TIMEOUT, by_peer=False)]


def test_local_misuse_raises_and_leaves_the_state() -> None:
    client = StreamLink(Role.CLIENT, 1024, 0.0)
    with pytest.raises(LinkUsageError):
        client.send_proof(NC, PK, SIG)
    with pytest.raises(LinkUsageError):
        client.refuse(CloseReason.NOT_TRUSTED)
    with pytest.raises(LinkUsageError):
        client.send_ping(0)
    assert client.state is LinkState.AWAIT_HELLO


def test_close_is_idempotent_and_receive_after_close_is_ignored() -> None:
    client, _ = handshake()
    client.close()
    client.close()
    client.receive_data(encode(FrameKind.DATA, b"x"), 0.0)
    assert events(client) == [LinkClosed(CloseReason.CLOSED, by_peer=False)]


def test_proof_message_binds_certificate_and_both_nonces() -> None:
    base = proof_message(b"cert", NS, NC)
    assert base != proof_message(b"other cert", NS, NC)
    assert base != proof_message(b"cert", NC, NS)


def test_every_received_frame_in_every_state_is_handled_without_raising() -> None:
    """Walk (state, received frame) over the whole table: allowed or a typed close, never a crash."""
    payloads = {
        FrameKind.HELLO: b"\x01" + NS,
        FrameKind.PROOF: NC + PK + SIG + b"cert",
        FrameKind.REFUSE: b"\x02",
        FrameKind.CLOSE: b"\x01",
    }
    reached = {s: 0 for s in LinkState}
    for state, kind in itertools.product(LinkState, FrameKind):
        link = StreamLink(Role.SERVER, 1024, 0.0)
        link.state = state
        link.receive_data(encode(kind, payloads.get(kind, b"")), 0.0)
        reached[state] += 1
        received = LinkInput("recv_" + kind.name.lower())
        if state is LinkState.CLOSED:
            assert link.state is LinkState.CLOSED
        elif (state, received) in TRANSITIONS:
            assert link.state is TRANSITIONS[(state, received)]
        else:
            assert events(link)[-1] == LinkClosed(CloseReason.PROTOCOL_ERROR, by_peer=False)
    assert all(reached.values())


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes_never_crash_a_server(chunks: list[bytes]) -> None:
    server = StreamLink(Role.SERVER, 1024, 0.0)
    server.send_hello(NS)
    for chunk in chunks:
        server.receive_data(chunk, 0.0)
    seen = events(server)
    assert all(not isinstance(e, LinkClosed) for e in seen[:-1])


def test_chunks_to_send_joins_small_frames_and_leaves_large_payloads_alone() -> None:
    client, _ = handshake(max_message=1 << 20)
    big = b"b" * 20_000
    client.send_data(1, 0, b"small")
    client.send_data(2, 0, big)
    client.send_data(3, 0, b"tail")
    chunks = client.chunks_to_send()
    assert len(chunks) == 3
    assert chunks[1] is big  # not copied
    assert b"".join(chunks) == (
        encode(FrameKind.DATA, b"small", 1)
        + encode(FrameKind.DATA, big, 2)
        + encode(FrameKind.DATA, b"tail", 3)
    )
    assert client.pending_bytes == 0
    # Small frames alone (the large one went out above): one piece.
    client.send_data(4, 0, b"a" * (LARGE_PIECE - 1))
    client.send_ping(0.0)
    client.send_data(5, 0, b"z")
    chunks = client.chunks_to_send()
    assert len(chunks) == 1
    assert chunks[0].startswith(encode(FrameKind.DATA, b"a" * (LARGE_PIECE - 1), 4))
    assert chunks[0].endswith(encode(FrameKind.DATA, b"z", 5))
    assert client.chunks_to_send() == []


@pytest.mark.parametrize(
    "behind",
    [
        encode(FrameKind.PING, b"", 1),
        encode(FrameKind.DATA, b"x", 1),
        encode(FrameKind.PROOF, NC + PK + SIG),
        encode(FrameKind.CLOSE, b"\x01"),
        b"\xff" * 20,  # garbage: a framing error
    ],
)
@pytest.mark.parametrize("decide", ["accept", "refuse"])
def test_a_decision_after_the_peer_closed_the_link_is_a_typed_no_op(behind: bytes, decide: str) -> None:
    """The remote crash of wave 2: a frame pipelined behind PROOF closes the core while the
    driver checks the proof; its decision then must not raise (it used to: LinkUsageError)."""
    client = StreamLink(Role.CLIENT, 1024, 0.0)
    server = StreamLink(Role.SERVER, 1024, 0.0)
    server.send_hello(NS)
    pump(client, server)
    client.send_proof(NC, PK, SIG)
    server.receive_data(client.data_to_send() + behind, 0.0)
    got = events(server)
    # The proof reaches the driver, unless the read's framing is broken (then nothing of it does).
    assert got[:-1] in ([ProofReceived(NC, PK, SIG, b"")], [])
    assert isinstance(got[-1], LinkClosed) and server.closed
    sent = server.data_to_send()
    if decide == "accept":
        assert server.accept() is Decision.LINK_CLOSED
    else:
        assert server.refuse(CloseReason.NOT_TRUSTED) is Decision.LINK_CLOSED
    assert server.data_to_send() == b""  # no ACCEPT/REFUSE after the CLOSE already queued
    assert events(server) == []
    assert sent == b"" or FrameKind(HEADER.unpack_from(sent)[1]) is FrameKind.CLOSE


def test_decisions_on_a_live_link_are_taken() -> None:
    _, server = to_verifying()
    assert server.accept() is Decision.TAKEN
    _, server = to_verifying()
    assert server.refuse(CloseReason.NOT_PINNED) is Decision.TAKEN
    with pytest.raises(LinkUsageError):  # a driver bug stays a bug: refuse on an open link
        handshake()[1].refuse(CloseReason.NOT_TRUSTED)
