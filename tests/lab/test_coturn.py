"""coturn in the lab, spoken to with the project's own STUN codec from behind each NAT."""

from __future__ import annotations

import socket
import ssl
import struct

import pytest

from netlink.lab.builder import Lab
from netlink.lab.nat import NatBehaviour
from node.proto import stun

pytestmark = pytest.mark.lab

TIMEOUT_S = 2.0


def _udp_request(
    lab: Lab,
    host: str,
    msg: stun.Message,
    *,
    key: bytes | None = None,
    sock: socket.socket | None = None,
) -> stun.Message:
    """One request/answer over UDP; pass ``sock`` to keep the 5-tuple (coturn binds nonces to it)."""
    turn = lab.coturn_config
    assert turn is not None
    own = sock is None
    sock = lab.socket(host, timeout=TIMEOUT_S) if sock is None else sock
    try:
        sock.sendto(stun.encode(msg, key=key), (str(turn.primary), turn.port))
        return stun.decode(sock.recv(4096))
    finally:
        if own:
            sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def _stream_request(sock: socket.socket, msg: stun.Message) -> stun.Message:
    sock.sendall(stun.encode(msg))
    head = _recv_exact(sock, 20)
    (length,) = struct.unpack_from("!H", head, 2)
    return stun.decode(head + _recv_exact(sock, length))


def _binding() -> stun.Message:
    return stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, stun.new_transaction_id())


@pytest.mark.parametrize("behaviour", list(NatBehaviour), ids=lambda b: b.value)
def test_binding_from_behind_each_nat_reports_the_wan_address(nat_lab: Lab, behaviour: NatBehaviour) -> None:
    nat_lab.set_nat("A", behaviour)
    turn = nat_lab.coturn_config
    assert turn is not None
    request = _binding()
    if behaviour is NatBehaviour.UDP_BLOCKED:  # STUN over TCP still gets through
        sock = nat_lab.socket("A1", socket.SOCK_STREAM, timeout=TIMEOUT_S)
        sock.connect((str(turn.primary), turn.port))
        answer = _stream_request(sock, request)
        sock.close()
    else:
        answer = _udp_request(nat_lab, "A1", request)
    assert answer.transaction_id == request.transaction_id
    assert answer.message_class is stun.MessageClass.SUCCESS
    mapped = answer.find(stun.XorMappedAddress)
    assert mapped is not None
    expected = (
        nat_lab.host("A1").address if behaviour is NatBehaviour.OPEN else nat_lab.topology.router("A").wan
    )
    assert mapped.ip == expected


def test_binding_carries_rfc5780_other_address(nat_lab: Lab) -> None:
    turn = nat_lab.coturn_config
    assert turn is not None
    answer = _udp_request(nat_lab, "B1", _binding())
    other = answer.find(stun.OtherAddress)
    assert other is not None
    assert (other.ip, other.port) == (turn.secondary, turn.alt_port)
    assert answer.find(stun.XorMappedAddress) is not None


def test_binding_over_tls_with_the_generated_certificate(nat_lab: Lab) -> None:
    turn = nat_lab.coturn_config
    assert turn is not None
    ctx = ssl.create_default_context(cafile=str(nat_lab.workdir / "turn-cert.pem"))
    raw = nat_lab.socket("B1", socket.SOCK_STREAM, timeout=TIMEOUT_S)
    raw.connect((str(turn.primary), turn.tls_port))
    with ctx.wrap_socket(raw, server_hostname=str(turn.primary)) as tls:
        answer = _stream_request(tls, _binding())
    mapped = answer.find(stun.XorMappedAddress)
    assert mapped is not None and mapped.ip == nat_lab.topology.router("B").wan


def _allocate(*attrs: stun.Attribute) -> stun.Message:
    return stun.Message(
        stun.Method.ALLOCATE,
        stun.MessageClass.REQUEST,
        stun.new_transaction_id(),
        attributes=(stun.RequestedTransport(protocol=17), *attrs),
    )


def _challenge(lab: Lab, host: str, sock: socket.socket) -> tuple[str, str]:
    answer = _udp_request(lab, host, _allocate(), sock=sock)
    assert answer.message_class is stun.MessageClass.ERROR
    error = answer.find(stun.ErrorCodeAttr)
    realm = answer.find(stun.Realm)
    nonce = answer.find(stun.Nonce)
    assert error is not None and error.code == 401
    assert realm is not None and nonce is not None
    return realm.value, nonce.value


def test_turn_allocate_with_wrong_credentials_is_refused(nat_lab: Lab) -> None:
    nat_lab.set_nat("A", NatBehaviour.PORT_RESTRICTED)
    turn = nat_lab.coturn_config
    assert turn is not None
    sock = nat_lab.socket("A1", timeout=TIMEOUT_S)
    realm, nonce = _challenge(nat_lab, "A1", sock)
    assert realm == turn.realm
    key = stun.long_term_key(turn.username, realm, turn.password + "-wrong")
    creds = (stun.Username(turn.username), stun.Realm(realm), stun.Nonce(nonce))
    answer = _udp_request(nat_lab, "A1", _allocate(*creds), key=key, sock=sock)
    sock.close()
    assert answer.message_class is stun.MessageClass.ERROR
    error = answer.find(stun.ErrorCodeAttr)
    assert error is not None and error.code == 401
    assert answer.find(stun.XorRelayedAddress) is None


def test_turn_allocate_with_right_credentials_is_granted(nat_lab: Lab) -> None:
    """The control for the refusal above: the same request with the right password works."""
    turn = nat_lab.coturn_config
    assert turn is not None
    sock = nat_lab.socket("B1", timeout=TIMEOUT_S)
    realm, nonce = _challenge(nat_lab, "B1", sock)
    key = stun.long_term_key(turn.username, realm, turn.password)
    creds = (stun.Username(turn.username), stun.Realm(realm), stun.Nonce(nonce))
    answer = _udp_request(nat_lab, "B1", _allocate(*creds), key=key, sock=sock)
    sock.close()
    assert answer.message_class is stun.MessageClass.SUCCESS, answer
    relayed = answer.find(stun.XorRelayedAddress)
    assert relayed is not None and relayed.ip == turn.primary
