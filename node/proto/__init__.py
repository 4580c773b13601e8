"""Sans-IO protocol cores: bytes and ``now`` in, events and datagrams out.

Nothing in this package imports asyncio or socket, or reads a clock.
"""
