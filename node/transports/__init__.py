"""asyncio drivers behind the one Transport interface (``node.transports.base``)."""
