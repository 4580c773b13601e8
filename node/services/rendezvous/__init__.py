"""Rendezvous by peer id (issue 16): introducer links and registration, the introducer itself
(``[rendezvous] serve``), and each introduced peer's traversal (relay first, then the punch).

service.py runs it; candidates.py gathers what the node offers; traversal.py is one peer's relay
path and punch; outbox.py queues frames for the TCP-TLS links; view.py is ``status``'s
``rendezvous``; errors.py says why an introduction did not happen.
"""

from node.services.rendezvous.errors import RendezvousProblem, RendezvousUnavailable
from node.services.rendezvous.service import RendezvousService
from node.services.rendezvous.view import IntroducerView, LinkState, RendezvousView

__all__ = [
    "IntroducerView",
    "LinkState",
    "RendezvousProblem",
    "RendezvousService",
    "RendezvousUnavailable",
    "RendezvousView",
]
