"""keepalived-style failover: VRRP v2/v3 codec, state machine, daemon, keepalived.conf."""
