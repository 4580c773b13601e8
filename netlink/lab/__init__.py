"""The namespace NAT lab: real Linux NATs (nftables), hosts and coturn in network namespaces."""
