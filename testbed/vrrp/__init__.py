"""keepalived-style failover: VRRP v2/v3 codec, state machine and daemon.

The pure parts, importable without root or sockets:

* ``packet``: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) over IPv4, byte-compatible with
  keepalived 2.2.7; decoding returns an ``Advert`` or a named ``DropReason``, never raises.
* ``state``: the Initialize/Backup/Master/Fault machine and sync groups, driven by an
  injected clock and emitting actions (send advert, add/remove VIPs, GARP, notify).

The configuration it runs from is `testbed.keepalived_conf` (keepalived.conf parsed and
rendered); the NAT layouts' generated configuration is `testbed.net.daemon_configs`.

On top of them, testable without root through injected hosts and clocks:

* ``daemon``: the VRRP speaker (``lvs-testbed vrrp run``): adverts, VIPs, GARPs, notify and
  track scripts, tracked interfaces, counters, a control socket.
* `testbed.check` (beside this package, as keepalived's ``check/`` beside ``vrrp/``): the
  LVS side, services on the director kept up to date by health checks, in a thread.
* ``transport``: the real host under the daemon (raw sockets, AF_PACKET, ``ip``, /sys);
  the only part that needs root.
"""
