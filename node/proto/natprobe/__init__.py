"""NAT behaviour discovery, sans-IO: RFC 5780 tests and multi-server comparison (``probe``), the
classification (``classify``) and its report types (``types``).
"""
