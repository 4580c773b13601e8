"""The node's view of the kernel network stack (pyroute2) and the namespace NAT lab."""
