"""TURN (RFC 8656), sans-IO: the allocation client (``client``), its events and errors, credentials, the
server list and TURN URIs.
"""
