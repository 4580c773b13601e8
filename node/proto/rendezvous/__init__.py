"""Rendezvous through an introducer, sans-IO (libp2p DCUtR's exchange and timing): the messages
(``messages``) and their frames on the introducer link (``wire``), the introducer's registrations
and introductions (``introducer``) and a peer's requests and answers (``client``). Decoded messages
and ``now`` in; messages to send and events out. The punch itself is node.proto.punch's.
"""

from node.proto.rendezvous.client import ClientLimits, ClientStats, RendezvousClient
from node.proto.rendezvous.errors import (
    ClientDrop,
    IntroducerDrop,
    Refusal,
    RendezvousError,
    RendezvousMisuse,
    RendezvousUsageError,
    RendezvousWireError,
    WireProblem,
)
from node.proto.rendezvous.events import (
    Event,
    Fire,
    IntroduceRefused,
    PunchAsA,
    PunchAsB,
    RegistrationRefused,
)
from node.proto.rendezvous.introducer import Introducer, IntroducerLimits, IntroducerStats, Outgoing
from node.proto.rendezvous.messages import (
    REGISTER_REQUEST,
    Accept,
    Accepted,
    Decline,
    Introduce,
    Introduced,
    Message,
    Refused,
    Register,
    Registered,
    Sync,
    Synced,
)
from node.proto.rendezvous.wire import MAX_CANDIDATES, MAX_MESSAGE, TYPE_RENDEZVOUS, decode, encode

__all__ = [
    "MAX_CANDIDATES",
    "MAX_MESSAGE",
    "REGISTER_REQUEST",
    "TYPE_RENDEZVOUS",
    "Accept",
    "Accepted",
    "ClientDrop",
    "ClientLimits",
    "ClientStats",
    "Decline",
    "Event",
    "Fire",
    "Introduce",
    "IntroduceRefused",
    "Introduced",
    "Introducer",
    "IntroducerDrop",
    "IntroducerLimits",
    "IntroducerStats",
    "Message",
    "Outgoing",
    "PunchAsA",
    "PunchAsB",
    "Refusal",
    "Refused",
    "Register",
    "Registered",
    "RegistrationRefused",
    "RendezvousClient",
    "RendezvousError",
    "RendezvousMisuse",
    "RendezvousUsageError",
    "RendezvousWireError",
    "Sync",
    "Synced",
    "WireProblem",
    "decode",
    "encode",
]
