"""TURN REST API ephemeral credentials against coturn's --use-auth-secret, from the [turn]
config section through the relay transport."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.config import TurnSection
from node.proto.identity import Identity
from node.proto.turn.credentials import rest_credentials
from node.proto.turn.errors import TurnAuthError
from node.proto.turn.uri import TurnTransport
from node.security.trust import SessionVerifier, TrustMode, TrustPolicy
from node.services.turn import credentials_source, server_addresses
from node.transports.turn.relay import TurnRelayTransport
from tests.lab.conftest import LabFactory
from tests.lab.turn_helpers import LAB_TIMING, connection, coturn

pytestmark = pytest.mark.lab

SECRET = "lab-shared-secret"


async def test_rest_credentials_from_the_config_allocate(lab_factory: LabFactory) -> None:
    lab = lab_factory()
    lab.start_coturn(replace(coturn(lab), auth_secret=SECRET))
    section = TurnSection(
        servers=(f"turn:{coturn(lab).primary}:{coturn(lab).port}?transport=udp",),
        username="alice",
        shared_secret=SECRET,
    )
    async with TurnRelayTransport(
        server_addresses(section),
        credentials_source(section, time.time),
        Identity.from_private_key(Ed25519PrivateKey.generate()),
        SessionVerifier(TrustPolicy(TrustMode.DEVELOPMENT)),
        timing=LAB_TIMING,
        socket_factory=lambda _family, kind: lab.socket("A1", kind),
    ) as relay:
        assert relay.relayed is not None
        assert str(relay.relayed[0]) == str(coturn(lab).primary)


async def test_expired_rest_credentials_are_an_auth_error(lab_factory: LabFactory) -> None:
    lab = lab_factory()
    lab.start_coturn(replace(coturn(lab), auth_secret=SECRET))
    expired = rest_credentials(SECRET, "alice", int(time.time()) - 60)
    conn = connection(lab, "A1", TurnTransport.UDP, credentials=expired)
    with pytest.raises(TurnAuthError):
        async with conn:
            pass
    assert conn.counters.allocate_requests == 2
