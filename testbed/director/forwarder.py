"""The per-frame decision of the userspace IPVS: what to do with one received frame.

For each frame read from a director port, `Forwarder.handle` decides, as ip_vs_in /
ip_vs_out / ip_vs_in_icmp would: a packet to a virtual service is scheduled or matched to its
connection and sent to the real server (DR: new MACs; NAT: new destination address and port;
TUN: IP-in-IP); a NAT real server's reply is matched to its connection and sent to the client
from the VIP; ICMP errors about a connection follow it (translated for NAT); ARP teaches the
neighbour cache. Everything else is not ours and is counted as ignored, so the director is
never an open relay. Nothing a frame contains can raise out of `handle`: malformed frames are
dropped and counted by reason.

Accounting: every frame ends in exactly one of ``forwarded``, ``queued`` (waiting for ARP,
sent later), ``ignored[reason]`` or ``dropped[reason]``, so ``rx`` equals their sum. A new
connection may be refused by the table's limit and defences (defense.py): ``table-full``,
``drop-packet``.

Pure: no sockets. Ports are objects with ``name``, ``mac``, ``ip`` and ``send(frame)``; the
daemon (daemon.py) owns the sockets, the clock and the timers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from testbed.director.conntable import (
    CLOSE,
    INPUT,
    OUTPUT,
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
    TIME_WAIT,
    Connection,
)
from testbed.director.model import Director, Fwd
from testbed.director.neighbours import Neighbours
from testbed.director.packet import (
    ETH_P_ARP,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MALFORMED,
    Drop,
    complete_l4_checksum,
    decrement_ttl,
    dnat,
    icmp_embedded_flow,
    icmp_error_dnat,
    icmp_error_snat,
    ipip_encapsulate,
    parse_arp,
    parse_icmp,
    parse_ipv4,
    parse_l3,
    parse_ports,
    snat,
)

_PORT_PROTOS = (IPPROTO_TCP, IPPROTO_UDP)
_REUSABLE_STATES = (TIME_WAIT, CLOSE)  # is_new_conn_expected() with conn_reuse_mode 1
_SYN_ONLY_MASK = TH_SYN | TH_ACK | TH_RST | TH_FIN
_DROP_NAMES = {d: d.name.lower().replace("_", "-") for d in Drop}
TUN_MTU = 1500


class Forwarder:
    """Decides and forwards frames for one `Director` over a set of ports."""

    def __init__(self, director: Director, neighbours: Neighbours) -> None:
        self.director = director
        self.neigh = neighbours
        self.rx = 0
        self.forwarded = 0
        self.queued = 0
        self.ignored: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._ip_id = 0
        self.vips: frozenset[int] = frozenset()
        self.nat_rips: frozenset[int] = frozenset()
        self.sync: Callable[[Connection, float], None] | None = None
        """Connection sync's hook (sync.SyncSender.conn_in), called after every packet a
        client sends on a connection, where ip_vs_in calls ip_vs_sync_conn; None (the
        default) costs the fast path one attribute test."""
        self.refresh_services()

    def refresh_services(self) -> None:
        """Recompute the address sets the fast path tests; call after every ipvsadm change."""
        vips, rips = set(), set()
        for svc in self.director.services():
            if not svc.fwmark:
                vips.add(svc.addr)
            for dest in svc.dests:
                if dest.fwd is Fwd.NAT:
                    rips.add(dest.addr)
        # Deleted real servers may still carry connections (IPVS's trash): keep their replies.
        rips.update(d.addr for d in self.director.trashed_dests() if d.fwd is Fwd.NAT)
        self.vips = frozenset(vips)
        self.nat_rips = frozenset(rips)

    def counters(self) -> dict:
        return {
            "rx": self.rx,
            "forwarded": self.forwarded,
            "queued": self.queued,
            "ignored": dict(self.ignored),
            "dropped": dict(self.dropped),
            "arp_sent": self.neigh.arp_sent,
            "arp_queue_dropped": self.neigh.queue_dropped,
        }

    # -- the per-frame path -----------------------------------------------------------------
    def handle(self, frame, port, csum_partial: bool, now: float) -> None:
        """Handle one received frame (a writable buffer the caller may reuse afterwards)."""
        self.rx += 1
        try:
            if len(frame) >= 34 and frame[12] == 8 and frame[13] == 0:
                l3 = 14  # untagged IPv4: the common case, without parse_l3
            else:
                r = parse_l3(frame)
                if r.__class__ is Drop:
                    self._drop(r)
                    return
                l3, ethertype = r
                if ethertype == ETH_P_ARP:
                    self._arp(frame, l3, port, now)
                    return
            r = parse_ipv4(frame, l3)
            if r.__class__ is Drop:
                self._drop(r)
                return
            proto, src, dst, l4, ip_end = r
            if dst in self.vips:
                self._inbound(frame, l3, proto, src, dst, l4, ip_end, csum_partial, now)
            elif src in self.nat_rips:
                self._outbound(frame, l3, proto, src, dst, l4, ip_end, csum_partial, now)
            else:
                self.ignored["not-for-a-service"] += 1
        except Exception as exc:  # noqa: BLE001 - nothing a frame holds may stop the loop
            self.dropped[f"error:{type(exc).__name__}"] += 1

    def _drop(self, reason: Drop) -> None:
        if reason in MALFORMED:
            self.dropped[_DROP_NAMES[reason]] += 1
        else:
            self.ignored[_DROP_NAMES[reason]] += 1

    def _arp(self, frame, l3: int, port, now: float) -> None:
        r = parse_arp(frame, l3)
        if r.__class__ is Drop:
            self._drop(r)
            return
        _op, sender_mac, sender_ip, _target_mac, _target_ip = r  # a request or a reply
        self.neigh.learn(sender_ip, sender_mac, port, now)
        self.ignored["arp"] += 1  # the kernel answers ARP; we only learn from it

    def _inbound(self, frame, l3, proto, src, dst, l4, ip_end, csum_partial, now) -> None:
        """Client -> VIP (ip_vs_in)."""
        d = self.director
        if proto in _PORT_PROTOS:
            r = parse_ports(frame, l4, ip_end, proto)
            if r.__class__ is Drop:
                self._drop(r)
                return
            sport, dport, flags = r
            conn = d.lookup_in(proto, src, sport, dst, dport)
            if (
                conn is not None
                and proto == IPPROTO_TCP
                and flags & _SYN_ONLY_MASK == TH_SYN
                and conn.state in _REUSABLE_STATES
                and not conn.n_control
            ):
                # conn_reuse_mode=1: a new SYN on a connection that is closing (the client
                # reused its port) expires the old entry and is scheduled afresh.
                d.conns.remove(conn)
                conn = None
            if conn is None:
                svc = d.find_service(proto, dst, dport)
                if svc is None:
                    self.ignored["no-service"] += 1  # the kernel's own port on the VIP
                    return
                if proto == IPPROTO_TCP and flags & _SYN_ONLY_MASK != TH_SYN:
                    self.dropped["tcp-no-connection"] += 1
                    return
                defense = d.defense
                if defense.drop_rate and defense.todrop():
                    self.dropped["drop-packet"] += 1  # the drop_packet defence (ip_vs_todrop)
                    return
                conn = d.schedule_new(svc, proto, src, sport, dst, dport, now)
                if conn is None:
                    self.dropped[d.refused] += 1  # no-real-server, or table-full
                    return
            dest = conn.dest
            if dest is not None and not dest.available:
                # ip_vs_in: the real server was deleted; drop silently, keep the timer.
                self.dropped["real-server-deleted"] += 1
                return
            if proto == IPPROTO_TCP:
                d.on_tcp_packet(conn, INPUT, flags, now)
            else:
                d.on_udp_packet(conn, now)
        elif proto == IPPROTO_ICMP:
            conn = self._icmp_conn_in(frame, l4, ip_end)
            if conn is None:
                return
            dest = conn.dest
            if dest is not None and not dest.available:
                self.dropped["real-server-deleted"] += 1
                return
        else:
            self.ignored["unsupported-l4"] += 1
            return
        if self.sync is not None:
            self.sync(conn, now)  # counts in_pkts itself
        else:
            conn.in_pkts += 1  # as ip_vs_in always does: drop_entry spares busy connections
        if dest is not None:
            stats = dest.stats
            stats.inpkts += 1
            stats.inbytes += ip_end - l3
        if csum_partial and proto != IPPROTO_ICMP:
            complete_l4_checksum(frame, l4, ip_end, proto)
        if not decrement_ttl(frame, l3):
            self.dropped["ttl-exceeded"] += 1
            return
        fwd = conn.fwd
        if fwd is Fwd.NAT:
            if proto == IPPROTO_ICMP:
                icmp_error_dnat(frame, l3, l4, l4 + 8, ip_end, conn.daddr, conn.dport)
            else:
                dnat(frame, l3, l4, proto, conn.daddr, conn.dport)
        hop = self.neigh.hop_for(conn.daddr)
        if hop is None:
            self.dropped["no-route"] += 1
            return
        if fwd is Fwd.TUN:
            frame = self._encapsulate(frame, l3, ip_end, hop, conn.daddr)
            if frame is None:
                return
        self._send(hop, frame, now)

    def _icmp_conn_in(self, frame, l4, ip_end):
        """The connection an ICMP error to the VIP is about: it quotes our reply
        (VIP:vport -> CIP:cport). Non-error ICMP to the VIP is the kernel's (ping)."""
        r = parse_icmp(frame, l4, ip_end)
        if r.__class__ is Drop:
            self._drop(r)
            return None
        _type, _code, inner = r
        if not inner:
            self.ignored["icmp-to-vip"] += 1
            return None
        qproto, qsrc, qsport, qdst, qdport = icmp_embedded_flow(frame, inner)
        conn = self.director.lookup_in(qproto, qdst, qdport, qsrc, qsport)
        if conn is None:
            self.ignored["icmp-no-connection"] += 1
        return conn

    def _outbound(self, frame, l3, proto, src, dst, l4, ip_end, csum_partial, now) -> None:
        """NAT real server -> client (ip_vs_out)."""
        d = self.director
        if proto in _PORT_PROTOS:
            r = parse_ports(frame, l4, ip_end, proto)
            if r.__class__ is Drop:
                self._drop(r)
                return
            sport, dport, flags = r
            conn = d.lookup_out(proto, src, sport, dst, dport)
            if conn is None or conn.fwd is not Fwd.NAT:
                self.ignored["not-a-connection"] += 1  # a real server's own traffic: no relay
                return
            if proto == IPPROTO_TCP:
                d.on_tcp_packet(conn, OUTPUT, flags, now)
            else:
                d.on_udp_packet(conn, now, OUTPUT)
            if csum_partial:
                complete_l4_checksum(frame, l4, ip_end, proto)
            snat(frame, l3, l4, proto, conn.vaddr, conn.vport)
        elif proto == IPPROTO_ICMP:
            r = parse_icmp(frame, l4, ip_end)
            if r.__class__ is Drop:
                self._drop(r)
                return
            inner = r[2]
            if not inner:
                self.ignored["not-a-connection"] += 1
                return
            # The error quotes the client's packet as the real server saw it: CIP -> RIP.
            qproto, qsrc, qsport, qdst, qdport = icmp_embedded_flow(frame, inner)
            conn = d.lookup_out(qproto, qdst, qdport, qsrc, qsport)
            if conn is None or conn.fwd is not Fwd.NAT:
                self.ignored["icmp-no-connection"] += 1
                return
            icmp_error_snat(frame, l3, l4, inner, ip_end, conn.vaddr, conn.vport)
        else:
            self.ignored["unsupported-l4"] += 1
            return
        dest = conn.dest
        if dest is not None and dest.available:
            stats = dest.stats
            stats.outpkts += 1
            stats.outbytes += ip_end - l3
        if not decrement_ttl(frame, l3):
            self.dropped["ttl-exceeded"] += 1
            return
        hop = self.neigh.hop_for(conn.caddr)
        if hop is None:
            self.dropped["no-route"] += 1
            return
        self._send(hop, frame, now)

    def _encapsulate(self, frame, l3, ip_end, hop, rip: int):
        inner_len = ip_end - l3
        if inner_len + 20 > TUN_MTU:
            self.dropped["tun-too-big"] += 1
            return None
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        # MACs are filled in by _send; the tunnel's source is the output port's address.
        out = ipip_encapsulate(
            frame, l3, ip_end, b"\0" * 6, b"\0" * 6, hop.port.ip, rip, self._ip_id
        )
        if out.__class__ is Drop:
            self._drop(out)
            return None
        return out

    def _send(self, hop, frame, now: float) -> None:
        if self.neigh.send_or_queue(hop, frame, now):
            self.forwarded += 1
        else:
            self.queued += 1
