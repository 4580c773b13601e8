"""Reusable in-memory models for tests: a sans-IO STUN server (``stun_server``, extended by the
TURN server model), a virtual NAT (``vnat``: RFC 4787 mapping x filtering, port allocation) and a
virtual network with virtual time (``vnet``)."""
