"""The OpenFlow director: IPVS's decisions, carried out by an OpenFlow 1.3 switch.

For: the ``director="openflow"`` layouts, where no director host exists and the switch
forwards the VIP's traffic itself. The app owns the VIPs: it answers ARP for them (and for
``gateway_ips``, the NAT real servers' default gateway) with a virtual MAC, and ping too.
The first packet of a connection to a configured service (TCP SYN, a UDP datagram without a
connection) comes to the controller, which schedules it exactly as the userspace director
does, with the same `Director` (services, real servers, weights, schedulers, persistence,
connection counts), then installs the connection's flows and sends the packet on:

- DR (``-g``): the inbound flow rewrites eth_dst to the real server's MAC; replies bypass us.
- NAT (``-m``): the inbound flow rewrites the IPv4 destination and the TCP/UDP destination
  port (and eth_dst) to the real server's; the reverse flow, for replies sent to the
  gateway MAC (ours), rewrites the source back to VIP:vport and the source MAC to ours.

Flows idle out after IPVS's timeouts (``tcp`` ESTABLISHED, ``udp``; ``--set`` changes them
for new flows) and report their removal; their packet and byte counts, polled every
``stats_interval_s`` and final on removal, become the real servers' IPVS counters, so
``ipvsadm -L -n --stats`` / ``--rate`` read as they do for the userspace director. A
connection lives while one of its flows does (a poll that sees packets restarts its timer;
`Director.expire` only catches connections whose flows vanished unreported); until it has
a flow (its real server's MAC is being asked for), the controller sees its every packet and
keeps IPVS's TCP state as the userspace director does. The real servers' MACs come from ARP
seen at the controller, else from an ARP probe of our own; their ports from the learning
switch (`LearningSwitch`), which also switches every frame that is not addressed to the
virtual MAC, the answers to our probes included, so each switch on their way learns where
a real server is. A switch that has not learnt it yet floods the rewritten frame (no flow).

Not for: TUN (``-i``: OpenFlow 1.3 cannot encapsulate) or firewall-mark services (a switch
sees no marks): both are refused at start and warned about when added later; IP fragments
after the first (they carry no ports); following TCP's state once the flows carry it: the
switch tells the controller nothing about FIN or RST, so a TCP connection counts as active
(ESTABLISHED) for as long as its flows live, and ends when they idle out (lower ``--set
tcp`` for many short connections: each holds a flow until then).

Configuration: `configure(LbConfig(...))` before os-ken's AppManager instantiates the app
(the runner does it), else the class's `OpenFlowDirector.default_config` (None here, so
unconfigured the app refuses to start; the top-level ``controllers/lb.py`` returns its
layout's services, which the plan-aware ``testbed.net.daemon_configs`` derives). With a
``run_dir`` it serves the director control channel (control.py) there under ``name``
("of"), so ``lvs-testbed ipvsadm --director of -L -n`` and ``lvs-testbed director stats
--director of`` work against it.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import select
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import event, ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.lib import hub
from os_ken.lib.packet import arp, ether_types, ethernet, icmp, ipv4, packet, tcp, udp
from os_ken.ofproto import ofproto_v1_3

from testbed.director import ipvsadm
from testbed.director.conntable import ESTABLISHED, INPUT, OUTPUT, PROTO_TCP, Connection
from testbed.director.model import Director, Fwd, int_to_ip, ip_to_int
from testbed.runtime.control import (
    ControlServer,
    check_request,
    error_reply,
    socket_path,
    write_index,
)

from .flows import (
    FLOW_ID_MASK,
    FULL_MASK,
    LB_OWNER,
    OWNER_MASK,
    add_flow,
    cookie,
    delete_flows,
    packet_out,
)
from .l2_learning import LearningSwitch, is_unicast

DEFAULT_VIP_MAC = "02:00:00:00:00:64"
"""Locally administered, ending in 0x64 = 100 like the VIPs."""
CONTROL_NAME = "of"
PRIORITY_CONN = 100
"""Above the learning switch's flows (10), so a connection's flow wins."""
DEFAULT_STATS_INTERVAL_S = 2.0
"""Flow statistics are polled as often as IPVS's rate estimator runs."""
TICK_S = 1.0
ARP_GIVE_UP_S = 3.0
MAX_PENDING_PER_ADDRESS = 16
ETH_HEADER_BYTES = 14
"""OpenFlow counts whole frames; IPVS counts IP packets."""
CONTROL_REPLY_TIMEOUT_S = 5.0
CONTROL_SCHEMAS = {
    "ipvsadm": {"argv": ("list[str]", True), "stdin": ("str?", False)},
    "stats": {},
}
"""The control operations and their fields (runtime.control.check_request)."""
IN, OUT = "in", "out"
_TCP_SCHEDULE_MASK = tcp.TCP_SYN | tcp.TCP_ACK | tcp.TCP_RST | tcp.TCP_FIN
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


# -- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LbConfig:
    """What the app serves. ``rules`` is ``ipvsadm -R`` text; ``gateway_ips`` are further
    addresses the app answers ARP and ping for (NAT: the real servers' default gateway);
    ``run_dir`` is where the control socket goes (None: no control channel)."""

    rules: str
    vip_mac: str = DEFAULT_VIP_MAC
    gateway_ips: tuple[str, ...] = ()
    stats_interval_s: float = DEFAULT_STATS_INTERVAL_S
    run_dir: Path | None = None
    name: str = CONTROL_NAME

    def __post_init__(self) -> None:
        if not _MAC_RE.match(self.vip_mac) or not is_unicast(self.vip_mac):
            raise ValueError(
                f"the VIP MAC must be a unicast MAC like {DEFAULT_VIP_MAC} "
                f"(lower case), got {self.vip_mac!r}"
            )
        for addr in self.gateway_ips:
            ip_to_int(addr)  # ValueError names the bad address
        if not self.stats_interval_s >= 1:
            raise ValueError(
                f"the flow statistics interval must be at least 1 s, got {self.stats_interval_s}"
            )


def rules_from_keepalived(path: str | os.PathLike[str]) -> str:
    """The virtual_server blocks of a keepalived.conf as ``ipvsadm -R`` text."""
    from testbed.check.lvsconfig import startup_commands
    from testbed.keepalived_conf import load_config
    from testbed.keepalived_conf.model import ConfigError

    try:
        config = load_config(path).config
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc
    return "".join(" ".join(argv) + "\n" for argv in startup_commands(config))


def unsupported(director: Director) -> list[str]:
    """What in ``director``'s configuration an OpenFlow switch cannot carry out."""
    problems = []
    for svc in director.services():
        if svc.fwmark:
            problems.append(f"firewall-mark service {svc.fwmark}: a switch sees no marks")
        for dest in svc.dests:
            if dest.fwd is Fwd.TUN:
                problems.append(
                    f"real server {int_to_ip(dest.addr)}:{dest.port} uses TUN (-i),"
                    " which OpenFlow 1.3 cannot do: use -g (DR) or -m (NAT)"
                )
    return problems


def build_director(rules: str) -> Director:
    """A Director holding ``rules`` (``ipvsadm -R`` text); ValueError if they are refused or
    ask for what the switch cannot do."""
    director = Director()
    res = ipvsadm.run(["-R"], director, rules, now=time.monotonic())
    if res.rc != 0:
        raise ValueError(f"the rules were refused: {res.err.strip()}")
    problems = unsupported(director)
    if problems:
        raise ValueError("; ".join(problems))
    return director


_config: LbConfig | None = None


def configure(config: LbConfig) -> None:
    """Set what the next instance of the app serves (call before AppManager runs it)."""
    global _config
    _config = config


# -- the logic ---------------------------------------------------------------------------------
@dataclass
class FlowRecord:
    """One installed connection flow: where, which way, and the switch's last counts."""

    conn: Connection
    dpid: int
    direction: str  # IN (client -> real server) or OUT (NAT reply)
    packets: int = 0
    bytes: int = 0


@dataclass
class ConnInfo:
    """What the controller keeps beside a Connection: the client's MAC (a NAT reply goes
    back to it) and the flow id of each (datapath, direction) the connection has a flow in."""

    client_mac: str
    flows: dict[tuple[int, str], int] = field(default_factory=dict)


@dataclass
class PendingArp:
    since_s: float
    msgs: list = field(default_factory=list)


class Balancer:
    """The director's state and decisions; the app calls it from its one event thread.

    ``clock`` gives monotonic seconds (the Director's `now`); tests inject theirs.
    """

    def __init__(
        self,
        director: Director,
        vip_mac: str = DEFAULT_VIP_MAC,
        gateway_ips: tuple[str, ...] = (),
        stats_interval_s: float = DEFAULT_STATS_INTERVAL_S,
        name: str = CONTROL_NAME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.director = director
        self.name = name
        self.vip_mac = vip_mac
        self.gateway_ips = frozenset(ip_to_int(a) for a in gateway_ips)
        self.stats_interval_s = stats_interval_s
        self.clock = clock
        self.started_s = clock()
        self.l2 = LearningSwitch(LB_OWNER)
        self.datapaths: dict[int, Any] = {}
        self.arp: dict[int, str] = {}
        self.pending: dict[int, PendingArp] = {}
        self.probed_s: dict[int, float] = {}
        self.conn_info: dict[Connection, ConnInfo] = {}
        self.flows: dict[int, FlowRecord] = {}
        self.counters: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._last_flow_id = 0
        self._next_stats_s = self.started_s + stats_interval_s
        self._refresh_addresses()

    # -- switches ------------------------------------------------------------------------------
    def switch_connected(self, datapath: Any) -> None:
        """A switch (re)connected: reset what we own there and ask for the real servers."""
        self.l2.switch_connected(datapath)
        for flow_id, rec in list(self.flows.items()):
            if rec.dpid == datapath.id:  # deleted by the reset
                self._flow_gone(flow_id)
        self.datapaths[datapath.id] = datapath
        self._probe_unknown_real_servers()

    def switch_gone(self, dpid: int) -> None:
        self.datapaths.pop(dpid, None)

    # -- packets -------------------------------------------------------------------------------
    def packet_in(self, msg: Any) -> None:
        self.counters["packet_in"] += 1
        self._handle(msg)

    def _handle(self, msg: Any) -> None:
        try:
            pkt = packet.Packet(msg.data)
        except Exception:  # os-ken's parsers raise many kinds of errors on garbage
            self.drops["malformed"] += 1
            return
        eth = pkt.get_protocol(ethernet.ethernet)
        if eth is None:
            self.drops["malformed"] += 1
            return
        if eth.src == self.vip_mac:
            # Our own frame (an ARP probe, a NAT frame) entering another switch: switch it,
            # but never learn the virtual MAC, whose frames must all come to us.
            self.l2.forward(msg, eth.src, eth.dst)
            return
        self.l2.learn(msg.datapath, msg.match["in_port"], eth.src)
        arp_pkt = pkt.get_protocol(arp.arp)
        if arp_pkt is not None:
            if self._arp(msg, arp_pkt):
                return
        elif eth.dst == self.vip_mac:
            self._to_director(msg, pkt, eth)
            return
        self.counters["switched"] += 1
        self.l2.forward(msg, eth.src, eth.dst)

    def _arp(self, msg: Any, req: Any) -> bool:
        """Learn from any ARP; answer requests for our addresses. True if it answered."""
        sender = ip_to_int(req.src_ip)
        if sender and req.src_mac != self.vip_mac:
            self._learn_address(sender, req.src_mac)
        if req.opcode == arp.ARP_REQUEST and ip_to_int(req.dst_ip) in self.owned:
            reply = _frame(
                ethernet.ethernet(
                    dst=req.src_mac, src=self.vip_mac, ethertype=ether_types.ETH_TYPE_ARP
                ),
                arp.arp(
                    opcode=arp.ARP_REPLY,
                    src_mac=self.vip_mac,
                    src_ip=req.dst_ip,
                    dst_mac=req.src_mac,
                    dst_ip=req.src_ip,
                ),
            )
            self._send_to_port(msg.datapath, msg.match["in_port"], reply)
            self.counters["arp_replies"] += 1
            return True
        # Anything else is switched, replies to our probes too: flooded on (nobody learns
        # the virtual MAC), they teach every switch on their way where their sender is.
        return False

    def _to_director(self, msg: Any, pkt: Any, eth: Any) -> None:
        ip = pkt.get_protocol(ipv4.ipv4)
        if ip is None:
            self.drops["not_ipv4"] += 1
            return
        if ip.offset:
            self.drops["fragment"] += 1  # no ports to find a connection by
            return
        dst = ip_to_int(ip.dst)
        echo = pkt.get_protocol(icmp.icmp)
        if echo is not None and echo.type == icmp.ICMP_ECHO_REQUEST and dst in self.owned:
            self._echo_reply(msg, eth, ip, echo)
            return
        l4 = pkt.get_protocol(tcp.tcp) or pkt.get_protocol(udp.udp)
        if l4 is None:
            self.drops["not_tcp_udp"] += 1
            return
        if dst in self.vips:
            self._inbound(msg, eth, ip, l4)
        else:
            self._outbound(msg, ip, l4)

    def _inbound(self, msg: Any, eth: Any, ip: Any, l4: Any) -> None:
        """Client -> VIP: the connection's real server, flows and the packet sent on."""
        proto, caddr, vaddr = ip.proto, ip_to_int(ip.src), ip_to_int(ip.dst)
        conn = self.director.lookup_in(proto, caddr, l4.src_port, vaddr, l4.dst_port)
        if conn is None:
            conn = self._new_connection(proto, caddr, l4, vaddr, eth.src)
            if conn is None:
                return
        if not self._usable(conn, INPUT, l4):
            return
        mac = self.arp.get(conn.daddr)
        if mac is None:
            self._queue(conn.daddr, msg)
            return
        datapath = msg.datapath
        port = self.l2.table.port(datapath.id, mac)
        if port is None:
            self._probe_if_due(conn.daddr)  # its answer shows this switch the way
        actions = self._in_actions(datapath, conn, mac, port)
        if port is not None:
            info = self.conn_info[conn]
            self._install(datapath, conn, info, IN, actions)
            client_port = self.l2.table.port(datapath.id, info.client_mac)
            if conn.fwd is Fwd.NAT and client_port is not None:
                self._install(
                    datapath, conn, info, OUT, self._out_actions(datapath, conn, info, client_port)
                )
        conn.dest.stats.inpkts += 1
        conn.dest.stats.inbytes += ip.total_length
        self.counters["forwarded"] += 1
        packet_out(datapath, msg.match["in_port"], actions, msg.data, msg.buffer_id)

    def _new_connection(
        self, proto: int, caddr: int, l4: Any, vaddr: int, client_mac: str
    ) -> Connection | None:
        svc = self.director.find_service(proto, vaddr, l4.dst_port)
        if svc is None:
            self.drops["no_service"] += 1
            return None
        if proto == PROTO_TCP and l4.bits & _TCP_SCHEDULE_MASK != tcp.TCP_SYN:
            self.drops["no_connection"] += 1  # only a SYN makes a TCP connection, as in IPVS
            return None
        now = self.clock()
        conn = self.director.schedule_new(svc, proto, caddr, l4.src_port, vaddr, l4.dst_port, now)
        if conn is None:
            return None  # the Director counted it (drops["no_dest"])
        self.conn_info[conn] = ConnInfo(client_mac)
        return conn

    def _usable(self, conn: Connection, direction: int, l4: Any) -> bool:
        """Whether a packet of ``conn`` may pass: not if its real server was deleted (IPVS
        drops those). While the connection has no flow, the controller sees each of its
        packets and keeps IPVS's state and timer as the userspace director does."""
        if not conn.dest.available:
            self.drops["dest_unavailable"] += 1
            return False
        if not self.conn_info[conn].flows:
            if conn.proto == PROTO_TCP:
                self.director.on_tcp_packet(conn, direction, l4.bits, self.clock())
            else:
                self.director.on_udp_packet(conn, self.clock(), direction)
        return True

    def _outbound(self, msg: Any, ip: Any, l4: Any) -> None:
        """Real server -> client through us (NAT): back to VIP:vport."""
        conn = self.director.lookup_out(
            ip.proto, ip_to_int(ip.src), l4.src_port, ip_to_int(ip.dst), l4.dst_port
        )
        if conn is None or conn.fwd is not Fwd.NAT:
            self.drops["no_connection"] += 1
            return
        if not self._usable(conn, OUTPUT, l4):
            return
        datapath = msg.datapath
        info = self.conn_info[conn]
        port = self.l2.table.port(datapath.id, info.client_mac)
        actions = self._out_actions(datapath, conn, info, port)
        if port is not None:
            self._install(datapath, conn, info, OUT, actions)
        conn.dest.stats.outpkts += 1
        conn.dest.stats.outbytes += ip.total_length
        self.counters["forwarded"] += 1
        packet_out(datapath, msg.match["in_port"], actions, msg.data, msg.buffer_id)

    def _in_actions(self, datapath: Any, conn: Connection, mac: str, port: int | None) -> list:
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        actions = [parser.OFPActionSetField(eth_dst=mac)]
        if conn.fwd is Fwd.NAT:
            l4_dst = "tcp_dst" if conn.proto == PROTO_TCP else "udp_dst"
            actions += [
                parser.OFPActionSetField(ipv4_dst=int_to_ip(conn.daddr)),
                parser.OFPActionSetField(**{l4_dst: conn.dport}),
            ]
        return [*actions, parser.OFPActionOutput(ofp.OFPP_FLOOD if port is None else port)]

    def _out_actions(
        self, datapath: Any, conn: Connection, info: ConnInfo, port: int | None
    ) -> list:
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        l4_src = "tcp_src" if conn.proto == PROTO_TCP else "udp_src"
        return [
            parser.OFPActionSetField(eth_src=self.vip_mac),
            parser.OFPActionSetField(eth_dst=info.client_mac),
            parser.OFPActionSetField(ipv4_src=int_to_ip(conn.vaddr)),
            parser.OFPActionSetField(**{l4_src: conn.vport}),
            parser.OFPActionOutput(ofp.OFPP_FLOOD if port is None else port),
        ]

    def _match(self, datapath: Any, conn: Connection, direction: str) -> Any:
        if direction == IN:
            src, sport, dst, dport = conn.caddr, conn.cport, conn.vaddr, conn.vport
        else:
            src, sport, dst, dport = conn.daddr, conn.dport, conn.caddr, conn.cport
        l4 = ("tcp_src", "tcp_dst") if conn.proto == PROTO_TCP else ("udp_src", "udp_dst")
        return datapath.ofproto_parser.OFPMatch(
            **{
                "eth_dst": self.vip_mac,
                "eth_type": ether_types.ETH_TYPE_IP,
                "ip_proto": conn.proto,
                "ipv4_src": int_to_ip(src),
                "ipv4_dst": int_to_ip(dst),
                l4[0]: sport,
                l4[1]: dport,
            }
        )

    def _install(
        self, datapath: Any, conn: Connection, info: ConnInfo, direction: str, actions: list
    ) -> None:
        """The connection's flow one way on this switch, unless it has one there already
        (a packet that overtook the flow mod)."""
        if (datapath.id, direction) in info.flows:
            return
        if not info.flows:
            self._hand_over(conn)
        flow_id = self._new_flow_id()
        self.flows[flow_id] = FlowRecord(conn, datapath.id, direction)
        info.flows[(datapath.id, direction)] = flow_id
        add_flow(
            datapath,
            PRIORITY_CONN,
            self._match(datapath, conn, direction),
            actions,
            cookie=cookie(LB_OWNER, flow_id),
            idle_timeout_s=self._idle_timeout_s(conn),
            notify_removal=True,
        )
        self.counters["flows_installed"] += 1

    def _hand_over(self, conn: Connection) -> None:
        """The switch carries the connection from its first flow on: the connection lives
        as long as its flows, which idle out after the state's timeout (the slack lets a
        poll refresh it first). The switch tells us nothing of TCP's state, so a TCP
        connection counts as ESTABLISHED (active) from here on."""
        now = self.clock()
        timeout = self._idle_timeout_s(conn) + 2 * self.stats_interval_s
        if conn.proto == PROTO_TCP:
            self.director.conns.set_state(conn, ESTABLISHED, 0, timeout, now)
        else:
            conn.timeout = timeout
            self.director.conns.refresh(conn, now)

    def _new_flow_id(self) -> int:
        while True:  # 1 .. 2^32-1, skipping ids still in use after a wrap
            self._last_flow_id = self._last_flow_id % FLOW_ID_MASK + 1
            if self._last_flow_id not in self.flows:
                return self._last_flow_id

    def _idle_timeout_s(self, conn: Connection) -> int:
        conns = self.director.conns
        if conn.proto == PROTO_TCP:
            return conns.tcp_timeouts_s[ESTABLISHED]
        return conns.udp_timeout_s

    def _echo_reply(self, msg: Any, eth: Any, ip: Any, echo: Any) -> None:
        reply = _frame(
            ethernet.ethernet(dst=eth.src, src=self.vip_mac, ethertype=ether_types.ETH_TYPE_IP),
            ipv4.ipv4(src=ip.dst, dst=ip.src, proto=ip.proto, ttl=64),
            icmp.icmp(type_=icmp.ICMP_ECHO_REPLY, code=0, data=echo.data),
        )
        self._send_to_port(msg.datapath, msg.match["in_port"], reply)
        self.counters["echo_replies"] += 1

    # -- real servers' MACs --------------------------------------------------------------------
    def _learn_address(self, addr: int, mac: str) -> None:
        self.arp[addr] = mac
        waiting = self.pending.pop(addr, None)
        if waiting is not None:
            for msg in waiting.msgs:
                self._handle(msg)

    def _queue(self, addr: int, msg: Any) -> None:
        """Hold a packet until ``addr``'s MAC is known; ask for it with the first one."""
        waiting = self.pending.get(addr)
        if waiting is None:
            waiting = self.pending[addr] = PendingArp(self.clock())
            self._probe(addr)
        if len(waiting.msgs) >= MAX_PENDING_PER_ADDRESS:
            self.drops["arp_queue_full"] += 1
            return
        waiting.msgs.append(msg)

    def _probe_if_due(self, addr: int) -> None:
        if self.clock() - self.probed_s.get(addr, float("-inf")) >= ARP_GIVE_UP_S:
            self._probe(addr)

    def _probe(self, addr: int) -> None:
        """ARP for ``addr`` from the virtual MAC on every switch. The sender address is
        0.0.0.0 (an RFC 5227 probe): a DR real server holds the VIP on lo, and Linux drops
        an ARP request whose sender address is its own as a martian, but answers a probe."""
        frame = _frame(
            ethernet.ethernet(
                dst="ff:ff:ff:ff:ff:ff", src=self.vip_mac, ethertype=ether_types.ETH_TYPE_ARP
            ),
            arp.arp(
                opcode=arp.ARP_REQUEST,
                src_mac=self.vip_mac,
                src_ip="0.0.0.0",
                dst_mac="00:00:00:00:00:00",
                dst_ip=int_to_ip(addr),
            ),
        )
        for datapath in self.datapaths.values():
            self._send_to_port(datapath, datapath.ofproto.OFPP_FLOOD, frame)
        self.probed_s[addr] = self.clock()
        self.counters["arp_probes"] += 1

    def _probe_unknown_real_servers(self) -> None:
        for addr in sorted({d.addr for svc in self.director.services() for d in svc.dests}):
            if addr not in self.arp:
                self._probe(addr)

    @staticmethod
    def _send_to_port(datapath: Any, port: int, frame: bytes) -> None:
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        packet_out(datapath, ofp.OFPP_CONTROLLER, [parser.OFPActionOutput(port)], frame)

    # -- flows come and go, counters -----------------------------------------------------------
    def flow_removed(self, msg: Any) -> None:
        """A connection flow idled out (or was deleted): its last counts, and the connection
        goes when its last flow has."""
        if msg.cookie & OWNER_MASK != LB_OWNER:
            return
        flow_id = msg.cookie & FLOW_ID_MASK
        rec = self.flows.get(flow_id)
        if rec is None:
            return
        self._account(rec, msg.packet_count, msg.byte_count)
        self._flow_gone(flow_id)

    def flow_stats(self, dpid: int, stats: list) -> None:
        """A flow statistics reply: count what passed since the last one, and keep the
        connections whose flows carried packets from expiring."""
        now = self.clock()
        for stat in stats:
            if stat.cookie & OWNER_MASK != LB_OWNER:
                continue
            rec = self.flows.get(stat.cookie & FLOW_ID_MASK)
            if (
                rec is not None
                and rec.dpid == dpid
                and self._account(rec, stat.packet_count, stat.byte_count)
            ):
                self.director.conns.refresh(rec.conn, now)

    def _account(self, rec: FlowRecord, packets: int, nbytes: int) -> bool:
        """Add what the switch counted since the last report to the real server; say
        whether anything passed."""
        new_packets = packets - rec.packets
        if new_packets <= 0:
            return False
        ip_bytes = nbytes - rec.bytes - ETH_HEADER_BYTES * new_packets
        rec.packets, rec.bytes = packets, nbytes
        stats = rec.conn.dest.stats
        if rec.direction == IN:
            stats.inpkts += new_packets
            stats.inbytes += ip_bytes
        else:
            stats.outpkts += new_packets
            stats.outbytes += ip_bytes
        return True

    def _flow_gone(self, flow_id: int) -> None:
        rec = self.flows.pop(flow_id)
        info = self.conn_info[rec.conn]
        del info.flows[(rec.dpid, rec.direction)]
        if not info.flows:
            self._forget(rec.conn)

    def _forget(self, conn: Connection) -> None:
        """Drop a connection and the records of its flows (removing it from the table
        again is harmless)."""
        for flow_id in self.conn_info.pop(conn).flows.values():
            del self.flows[flow_id]
        self.director.conns.remove(conn)

    # -- time ----------------------------------------------------------------------------------
    def tick(self) -> None:
        """Once a second: expire connections and templates, run the rate estimator, give up
        on unanswered ARP, and poll the switches' flow counters when due."""
        now = self.clock()
        self.director.expire(now)
        # What expired had no flow left that carried a packet: flows gone without a word
        # (a lost switch), or never installed (the frame was flooded).
        for conn in [c for c in self.conn_info if c.expires <= now]:
            self._forget(conn)
        self.director.tick(now)
        for addr, waiting in list(self.pending.items()):
            if now - waiting.since_s >= ARP_GIVE_UP_S:
                self.drops["arp_unresolved"] += len(waiting.msgs)
                del self.pending[addr]
        if now >= self._next_stats_s:
            self._next_stats_s = now + self.stats_interval_s
            for datapath in self.datapaths.values():
                parser = datapath.ofproto_parser
                datapath.send_msg(
                    parser.OFPFlowStatsRequest(datapath, cookie=LB_OWNER, cookie_mask=OWNER_MASK)
                )

    # -- control -------------------------------------------------------------------------------
    def control(self, msg: dict) -> dict:
        """One control-channel request, as the userspace director's daemon answers it:
        checked against CONTROL_SCHEMAS first, and answered whatever goes wrong (it runs on
        the app's event loop, which must not lose a request's reply)."""
        problem = check_request(msg, CONTROL_SCHEMAS)
        if problem is not None:
            return error_reply(f"bad control request: {problem}")
        try:
            if msg["op"] == "ipvsadm":
                return self._ipvsadm(msg["argv"], msg.get("stdin"))
            return {"rc": 0, "stats": self.stats()}
        except (TypeError, ValueError, KeyError) as exc:
            return error_reply(f"bad control request: {exc}")
        except Exception as exc:  # noqa: BLE001 - reply, and keep the controller running
            logging.getLogger(__name__).exception("control request %r failed", msg.get("op"))
            return error_reply(f"the request failed: {type(exc).__name__}: {exc}", rc=1)

    def _ipvsadm(self, argv: list[str], stdin: str | None) -> dict:
        before = self.director.snapshot()
        res = ipvsadm.run(argv, self.director, stdin, now=self.clock())
        err = res.err
        if self.director.snapshot() != before:
            self.services_changed()
            err += "".join(
                f"warning: the OpenFlow director ignores {p}\n" for p in unsupported(self.director)
            )
        return {"rc": res.rc, "out": res.out, "err": err}

    def services_changed(self) -> None:
        """After ipvsadm changed something: the addresses we answer for, the flows of
        deleted real servers (removed: their packets are dropped from now on, as IPVS does),
        and the MACs of new real servers."""
        self._refresh_addresses()
        for flow_id, rec in self.flows.items():
            datapath = self.datapaths.get(rec.dpid)
            if not rec.conn.dest.available and datapath is not None:
                delete_flows(datapath, cookie(LB_OWNER, flow_id), FULL_MASK)
        self._probe_unknown_real_servers()

    def _refresh_addresses(self) -> None:
        self.vips = frozenset(s.addr for s in self.director.services() if not s.fwmark)
        self.owned = self.vips | self.gateway_ips

    def stats(self) -> dict:
        """The counters `lvs-testbed director stats` shows, plus the OpenFlow side."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        now = self.clock()
        return {
            "name": self.name,
            "io_mode": "openflow",
            "batch": 0,
            "wait_us": 0,
            "uptime_s": now - self.started_s,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
            "wakeups": self.counters["packet_in"],
            "batches_full": 0,
            "frames": {
                "rx": self.counters["packet_in"],
                "forwarded": self.counters["forwarded"],
                "queued": sum(len(p.msgs) for p in self.pending.values()),
                "ignored": {},
                "dropped": dict(self.drops),
            },
            "ipvs_drops": dict(self.director.drops),
            "connections": len(self.director.conns),
            "table": self.director.conns.chain_stats(),
            "sync": None,
            "openflow": {
                "datapaths": sorted(self.datapaths),
                "flows": len(self.flows),
                "arp_entries": len(self.arp),
                **{
                    k: self.counters[k]
                    for k in (
                        "switched",
                        "flows_installed",
                        "arp_replies",
                        "arp_probes",
                        "echo_replies",
                    )
                },
            },
        }


def _frame(*protocols: Any) -> bytes:
    pkt = packet.Packet()
    for proto in protocols:
        pkt.add_protocol(proto)
    pkt.serialize()
    return bytes(pkt.data)


# -- the os-ken app ------------------------------------------------------------------------------
class EventTick(event.EventBase):
    """Sent by the app's timer thread to its own event loop, once a second."""


class EventControl(event.EventBase):
    """A control-channel request, handed from the control thread to the event loop."""

    def __init__(self, message: dict) -> None:
        super().__init__()
        self.message = message
        self.reply = hub.Queue(1)


class OpenFlowDirector(app_manager.OSKenApp):
    """The os-ken app: thin handlers over `Balancer`. Every decision runs on the app's event
    thread (the timer and the control channel send it events), so nothing needs a lock."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = _config or self.default_config()
        if config is None:
            raise RuntimeError(
                "the lb app has no configuration: call testbed.controllers.lb."
                "configure(...) before os-ken starts it, or load an app file whose class "
                "returns one from default_config() (the top-level controllers/lb.py does; "
                "so does `lvs-testbed controller run lb`)"
            )
        self.config = config
        self.balancer = Balancer(
            build_director(config.rules),
            config.vip_mac,
            config.gateway_ips,
            config.stats_interval_s,
            config.name,
        )
        self.control: ControlServer | None = None
        self.index_path: Path | None = None

    @classmethod
    def default_config(cls) -> LbConfig | None:
        """What the app serves when nothing called `configure`: nothing here (a daemon knows
        no layout); an app file that subclasses this one returns its services."""
        return None

    def start(self) -> None:
        run_dir = self.config.run_dir
        if run_dir is not None:  # first: if it fails, no thread is left running
            self.control = ControlServer(socket_path(run_dir, self.config.name))
            self.index_path = write_index(run_dir, self.config.name, os.getpid())
            self.logger.info("control socket %s", self.control.path)
        super().start()
        self.threads.append(hub.spawn(self._timer))
        if self.control is not None:
            self.threads.append(hub.spawn(self._serve_control))

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.index_path is not None:
            self.index_path.unlink(missing_ok=True)
            self.index_path = None

    def _timer(self) -> None:
        while self.is_active:
            hub.sleep(TICK_S)
            self.send_event(self.name, EventTick())

    def _serve_control(self) -> None:
        while self.is_active:
            readable, _, _ = select.select([self.control.sock], [], [], 0.5)
            if readable:
                self.control.serve_one(self._ask_event_loop)

    def _ask_event_loop(self, message: dict) -> dict:
        request = EventControl(message)
        self.send_event(self.name, request)
        try:
            return request.reply.get(timeout=CONTROL_REPLY_TIMEOUT_S)
        except hub.QueueEmpty:
            return {"rc": 1, "out": "", "err": "the OpenFlow director did not answer in time\n"}

    @set_ev_cls(EventTick)
    def _tick(self, ev: EventTick) -> None:
        self.balancer.tick()

    @set_ev_cls(EventControl)
    def _control(self, ev: EventControl) -> None:
        ev.reply.put(self.balancer.control(ev.message))

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _switch_features(self, ev: Any) -> None:
        self.logger.info("switch %016x connected", ev.msg.datapath.id)
        self.balancer.switch_connected(ev.msg.datapath)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _switch_gone(self, ev: Any) -> None:
        if ev.datapath.id is not None:
            self.balancer.switch_gone(ev.datapath.id)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        self.balancer.packet_in(ev.msg)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev: Any) -> None:
        self.balancer.flow_removed(ev.msg)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev: Any) -> None:
        self.balancer.flow_stats(ev.msg.datapath.id, ev.msg.body)
