"""Why an introduction did not happen (``connect PEER_ID`` without addresses reports it)."""

from __future__ import annotations

import enum

from node.errors import ReasonError, RemoteError


class RendezvousProblem(enum.Enum):
    NO_INTRODUCER = "no introducer link is registered"
    REFUSED = "the introducer refused or did not answer"
    LINK_LOST = "the link to the introducer closed during the exchange"


class RendezvousUnavailable(ReasonError[RendezvousProblem], RemoteError):
    """No introducer put us in touch with the peer."""
