"""The TURN relay transport: one allocation's connection (``connection``), the allocation kept up across
servers (``allocator``), the relay behind the Transport interface (``relay``).
"""
