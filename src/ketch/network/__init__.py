"""Container networking: IPAM, bridges and veths (pyroute2), nftables rules (as data, then applied), port
publishing and the embedded DNS resolver (dnspython). Knows network namespaces and endpoints, not containers."""
