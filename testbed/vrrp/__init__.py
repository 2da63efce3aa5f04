"""keepalived-style failover: VRRP v2/v3 codec, state machine, daemon, keepalived.conf.

The pure parts, importable without root or sockets:

* ``packet``: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) over IPv4, byte-compatible with
  keepalived 2.2.7; decoding returns an ``Advert`` or a named ``DropReason``, never raises.
* ``state``: the Initialize/Backup/Master/Fault machine and sync groups, driven by an
  injected clock and emitting actions (send advert, add/remove VIPs, GARP, notify).
* ``config``: the common subset of keepalived.conf, parsed into dataclasses and rendered back.
* ``lvsconfig``: virtual_server blocks as ipvsadm command lines for the director.
* ``generate``: the NAT layouts' default keepalived.conf for d1 and d2, from the address plan.

On top of them, testable without root through injected hosts and clocks:

* ``daemon``: the VRRP speaker (``lvs-testbed vrrp run``): adverts, VIPs, GARPs, notify and
  track scripts, tracked interfaces, counters, a control socket.
* ``checker``: keepalived's LVS side: services on the director, TCP_CHECK and HTTP_GET.
* ``transport``: the real host under the daemon (raw sockets, AF_PACKET, ``ip``, /sys);
  the only part that needs root.
"""
