"""TCP-TLS: frames a stranger sends after TLS, in any order and cut anywhere, never stop the node."""

from __future__ import annotations

import pytest

from node.proto.link.frames import FrameKind, encode
from node.proto.link.stream_link import CloseReason
from node.security.keystore import load_or_create
from tests.adversarial.probes import NodeUnderAttack
from tests.adversarial.tls_client import RawTlsClient, frame_kinds

pytestmark = pytest.mark.process


@pytest.mark.parametrize("valid_proof", [True, False])
@pytest.mark.parametrize("second", [FrameKind.PING, FrameKind.CLOSE, FrameKind.DATA, FrameKind.PROOF])
def test_proof_and_a_second_frame_in_one_write(
    attacked: NodeUnderAttack, valid_proof: bool, second: FrameKind
) -> None:
    """The wave-2 remote crash: PROOF plus any frame in the same write closed the core while the
    proof was being verified, and the decision taken afterwards escaped into the TaskGroup."""
    stranger, _ = load_or_create(attacked.tmp_path / "stranger")
    client = RawTlsClient.connect(attacked.node.tls_port or 0)
    behind = encode(second, bytes([CloseReason.CLOSED]) if second is FrameKind.CLOSE else b"")
    client.send(client.proof(stranger, valid_proof) + behind)
    answer = frame_kinds(client.drain())
    client.close()
    # Never ACCEPT: the extra frame broke the protocol before the proof was judged. The node says
    # so with a typed CLOSE, except to a client that closed first (nothing left to tell it).
    if second is FrameKind.CLOSE:
        assert answer == []
    else:
        assert answer == [(FrameKind.CLOSE, bytes([CloseReason.PROTOCOL_ERROR]))]
    attacked.assert_alive()
    assert attacked.legitimate_ping()["peer_id"] == attacked.node.peer_id
