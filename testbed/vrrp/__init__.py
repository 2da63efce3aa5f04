"""keepalived-style failover: VRRP v2/v3 codec, state machine, daemon, keepalived.conf.

The pure parts, importable without root or sockets:

* ``packet``: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) over IPv4, byte-compatible with
  keepalived 2.2.7; decoding returns an ``Advert`` or a named ``DropReason``, never raises.
* ``state``: the Initialize/Backup/Master/Fault machine and sync groups, driven by an
  injected clock and emitting actions (send advert, add/remove VIPs, GARP, notify).
* ``config``: the common subset of keepalived.conf, parsed into dataclasses and rendered back.

The daemon (sockets, VIPs, GARP, notify scripts) sits on top of these and is the only part
that needs root.
"""
