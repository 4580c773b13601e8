"""NAT discovery over real sockets: the asyncio driver of ``node.proto.natprobe``."""
