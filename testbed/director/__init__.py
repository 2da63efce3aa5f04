"""The userspace IPVS: packet views and rewrites, connection table, schedulers, forwarding,
packet I/O, daemon and its ipvsadm-compatible control interface."""
