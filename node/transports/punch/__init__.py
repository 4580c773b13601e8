"""The hole punch over real sockets: the sans-IO core (node.proto.punch) driven on the node's UDP
port and, for a birthday target, 255 extra sockets (``driver``, ``sockets``); the winning path handed
to the UDP transport's secure session (``connect``). The transport is reached through ``PunchPort``
(``port``), so this package sits beside the UDP driver, not above it."""
