"""The TCP + TLS 1.3 transport: the transport (``transport``), one connection (``link``), connection slots
(``slots``).
"""
