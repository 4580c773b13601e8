"""The UDP transport: one socket on the node's port carrying STUN and secure sessions."""
