"""The os-ken apps (testbed/controllers) without a switch: their logic driven with a fake
datapath that records what it was sent. The messages are os-ken's own OpenFlow 1.3 objects,
each serialized on sending (so a malformed one fails here), packet-ins carry frames built
with os_ken.lib.packet, and the director's choices are checked against a `Director` driven
directly. Last, the runner: a taken port, and each app started in a subprocess, listening,
handshaking with a fake switch over TCP, and stopping on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER
from os_ken.lib.packet import arp, ether_types, ethernet, icmp, ipv4, packet, tcp, udp
from os_ken.ofproto import ofproto_v1_3
from os_ken.ofproto import ofproto_v1_3_parser as OFP_PARSER
from os_ken.ofproto.ofproto_protocol import ProtocolDesc
from typer.testing import CliRunner

from testbed import REPO_ROOT
from testbed.cli.main import app as cli_app
from testbed.controllers.flows import FULL_MASK, L2_OWNER, LB_OWNER, OWNER_MASK
from testbed.controllers.l2_learning import L2LearningSwitch, LearningSwitch, LearningTable
from testbed.controllers.lb import (
    DEFAULT_VIP_MAC,
    Balancer,
    LbConfig,
    OpenFlowDirector,
    build_director,
    rules_from_keepalived,
)
from testbed.controllers.runner import ControllerError, check_port_free
from testbed.director import ipvsadm
from testbed.director.model import int_to_ip, ip_to_int
from testbed.net.daemon_configs import lb_config_for_layout
from testbed.runtime.control import request

OFP = ofproto_v1_3
VMAC = DEFAULT_VIP_MAC
FW_MAC = "00:00:00:00:0f:01"
CLIENT_MAC = "00:00:00:00:0c:01"
RS_MACS = ["00:00:00:00:0a:01", "00:00:00:00:0a:02", "00:00:00:00:0a:03"]
RS_PORTS = [2, 3, 4]
FW_PORT = 1
DR_VIP, DR_RS = "10.0.0.100", ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
NAT_VIP, NAT_GW, NAT_RS = "10.0.1.100", "192.168.0.254", ["192.168.0.11", "192.168.0.12"]
CLIENT = "10.0.1.11"


# -- the fake datapath and frames -----------------------------------------------------------------
class FakeDatapath(ProtocolDesc):
    """An OpenFlow 1.3 datapath that serializes and records every message it is sent."""

    def __init__(self, dpid: int = 1) -> None:
        super().__init__(OFP.OFP_VERSION)
        self.id = dpid
        self.sent: list = []
        self._xid = 0

    def send_msg(self, msg) -> None:
        self._xid += 1
        msg.set_xid(self._xid)
        msg.serialize()
        self.sent.append(msg)

    def take(self) -> list:
        sent, self.sent = self.sent, []
        return sent


def flow_mods(msgs: list) -> list:
    return [m for m in msgs if isinstance(m, OFP_PARSER.OFPFlowMod)]


def packet_outs(msgs: list) -> list:
    return [m for m in msgs if isinstance(m, OFP_PARSER.OFPPacketOut)]


def actions_of(flow_mod) -> list:
    (instruction,) = flow_mod.instructions
    assert instruction.type == OFP.OFPIT_APPLY_ACTIONS
    return instruction.actions


def describe(actions: list) -> list[tuple]:
    """Actions as comparable tuples: ("set", field, value) and ("output", port)."""
    out = []
    for action in actions:
        if isinstance(action, OFP_PARSER.OFPActionSetField):
            out.append(("set", action.key, action.value))
        else:
            out.append(("output", action.port))
    return out


def frame(*protocols) -> bytes:
    pkt = packet.Packet()
    for proto in protocols:
        pkt.add_protocol(proto)
    pkt.serialize()
    return bytes(pkt.data)


def eth_frame(src: str, dst: str, payload: bytes = b"x" * 46) -> bytes:
    return frame(ethernet.ethernet(dst=dst, src=src, ethertype=0x88B5), payload)


def arp_request(src_mac: str, src_ip: str, target: str) -> bytes:
    return frame(
        ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac, ethertype=ether_types.ETH_TYPE_ARP),
        arp.arp(
            opcode=arp.ARP_REQUEST,
            src_mac=src_mac,
            src_ip=src_ip,
            dst_mac="00:00:00:00:00:00",
            dst_ip=target,
        ),
    )


def arp_reply(src_mac: str, src_ip: str, dst_mac: str, dst_ip: str) -> bytes:
    return frame(
        ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=ether_types.ETH_TYPE_ARP),
        arp.arp(
            opcode=arp.ARP_REPLY, src_mac=src_mac, src_ip=src_ip, dst_mac=dst_mac, dst_ip=dst_ip
        ),
    )


def tcp_frame(
    src_mac: str,
    dst_mac: str,
    src: str,
    sport: int,
    dst: str,
    dport: int,
    bits: int = tcp.TCP_SYN,
    payload: bytes = b"",
) -> bytes:
    return frame(
        ethernet.ethernet(dst=dst_mac, src=src_mac),
        ipv4.ipv4(src=src, dst=dst, proto=6),
        tcp.tcp(src_port=sport, dst_port=dport, bits=bits),
        payload,
    )


def udp_frame(
    src_mac: str, dst_mac: str, src: str, sport: int, dst: str, dport: int, payload: bytes = b"ping"
) -> bytes:
    return frame(
        ethernet.ethernet(dst=dst_mac, src=src_mac),
        ipv4.ipv4(src=src, dst=dst, proto=17),
        udp.udp(src_port=sport, dst_port=dport),
        payload,
    )


def packet_in(dp: FakeDatapath, in_port: int, data: bytes):
    return OFP_PARSER.OFPPacketIn(
        dp,
        buffer_id=OFP.OFP_NO_BUFFER,
        total_len=len(data),
        reason=OFP.OFPR_NO_MATCH,
        table_id=0,
        cookie=0,
        match=OFP_PARSER.OFPMatch(in_port=in_port),
        data=data,
    )


def flow_removed(dp: FakeDatapath, flow_mod, packets: int, nbytes: int):
    return OFP_PARSER.OFPFlowRemoved(
        dp,
        cookie=flow_mod.cookie,
        priority=flow_mod.priority,
        reason=OFP.OFPRR_IDLE_TIMEOUT,
        table_id=0,
        duration_sec=5,
        duration_nsec=0,
        idle_timeout=flow_mod.idle_timeout,
        hard_timeout=0,
        packet_count=packets,
        byte_count=nbytes,
        match=flow_mod.match,
    )


def flow_stats(flow_mod, packets: int, nbytes: int):
    return OFP_PARSER.OFPFlowStats(
        table_id=0,
        duration_sec=1,
        duration_nsec=0,
        priority=flow_mod.priority,
        idle_timeout=flow_mod.idle_timeout,
        hard_timeout=0,
        flags=flow_mod.flags,
        cookie=flow_mod.cookie,
        packet_count=packets,
        byte_count=nbytes,
        match=flow_mod.match,
        instructions=flow_mod.instructions,
    )


def parse(data: bytes) -> packet.Packet:
    return packet.Packet(bytes(data))


# -- the learning switch --------------------------------------------------------------------------
H1, H2, H3 = "00:00:00:00:00:01", "00:00:00:00:00:02", "00:00:00:00:00:03"


def test_learning_table_is_per_switch_and_reports_moves():
    table = LearningTable()
    assert table.learn(1, H1, 1) is None
    assert table.learn(1, H1, 1) is None  # the same port again is not a move
    assert table.learn(2, H1, 7) is None  # another switch learns on its own
    assert table.port(1, H1) == 1 and table.port(2, H1) == 7
    assert table.learn(1, H1, 3) == 1  # moved: the old port comes back
    table.forget(1)
    assert table.port(1, H1) is None and table.port(2, H1) == 7


def test_switch_connect_deletes_own_flows_then_installs_table_miss():
    dp = FakeDatapath()
    LearningSwitch(L2_OWNER).switch_connected(dp)
    delete, barrier, miss = dp.sent
    assert delete.command == OFP.OFPFC_DELETE
    assert (delete.cookie, delete.cookie_mask) == (L2_OWNER, OWNER_MASK)
    assert delete.table_id == OFP.OFPTT_ALL
    assert (delete.out_port, delete.out_group) == (OFP.OFPP_ANY, OFP.OFPG_ANY)
    assert isinstance(barrier, OFP_PARSER.OFPBarrierRequest)
    assert miss.command == OFP.OFPFC_ADD and miss.priority == 0
    assert dict(miss.match.items()) == {}
    assert miss.cookie == L2_OWNER
    (output,) = actions_of(miss)
    assert (output.port, output.max_len) == (OFP.OFPP_CONTROLLER, OFP.OFPCML_NO_BUFFER)


def test_unknown_destination_is_flooded_without_a_flow():
    dp, switch = FakeDatapath(), LearningSwitch(L2_OWNER)
    data = eth_frame(H1, H2)
    switch.packet_in(packet_in(dp, 1, data))
    (out,) = dp.sent
    assert isinstance(out, OFP_PARSER.OFPPacketOut)
    assert describe(out.actions) == [("output", OFP.OFPP_FLOOD)]
    assert out.in_port == 1 and bytes(out.data) == data


def test_broadcast_is_flooded_even_from_known_hosts():
    dp, switch = FakeDatapath(), LearningSwitch(L2_OWNER)
    switch.packet_in(packet_in(dp, 1, eth_frame(H1, H2)))
    switch.packet_in(packet_in(dp, 2, eth_frame(H2, H1)))
    dp.take()
    switch.packet_in(packet_in(dp, 1, arp_request(H1, "10.0.0.1", "10.0.0.2")))
    (out,) = dp.sent
    assert describe(out.actions) == [("output", OFP.OFPP_FLOOD)]


def test_learnt_destination_gets_a_flow_and_the_packet():
    dp, switch = FakeDatapath(), LearningSwitch(L2_OWNER)
    switch.packet_in(packet_in(dp, 1, eth_frame(H1, H2)))
    dp.take()
    data = eth_frame(H2, H1)
    switch.packet_in(packet_in(dp, 2, data))
    flow, out = dp.sent
    assert flow.command == OFP.OFPFC_ADD
    assert dict(flow.match.items()) == {"in_port": 2, "eth_src": H2, "eth_dst": H1}
    assert describe(actions_of(flow)) == [("output", 1)]
    assert (flow.idle_timeout, flow.hard_timeout) == (60, 0)
    assert flow.priority == 10 and flow.cookie == L2_OWNER
    assert describe(out.actions) == [("output", 1)] and bytes(out.data) == data


def test_destination_on_the_ingress_port_is_left_alone():
    dp, switch = FakeDatapath(), LearningSwitch(L2_OWNER)
    switch.packet_in(packet_in(dp, 1, eth_frame(H1, H2)))
    dp.take()
    switch.packet_in(packet_in(dp, 1, eth_frame(H2, H1)))  # both behind port 1
    assert dp.sent == []


def test_two_switches_learn_independently():
    dp1, dp2, switch = FakeDatapath(1), FakeDatapath(2), LearningSwitch(L2_OWNER)
    switch.packet_in(packet_in(dp1, 1, eth_frame(H1, H2)))
    switch.packet_in(packet_in(dp2, 5, eth_frame(H2, H3)))
    dp1.take(), dp2.take()
    # dp2 has not seen H1: it floods; dp1 has, on port 1.
    switch.packet_in(packet_in(dp2, 5, eth_frame(H2, H1)))
    assert describe(dp2.sent[0].actions) == [("output", OFP.OFPP_FLOOD)]
    switch.packet_in(packet_in(dp1, 2, eth_frame(H2, H1)))
    assert describe(actions_of(dp1.sent[0])) == [("output", 1)]
    switch.packet_in(packet_in(dp2, 9, eth_frame(H1, H2)))  # H1 appears on dp2 port 9
    dp2.take()
    switch.packet_in(packet_in(dp2, 5, eth_frame(H2, H1)))
    assert describe(actions_of(dp2.sent[0])) == [("output", 9)]
    assert switch.table.port(1, H1) == 1


def test_a_moved_host_gets_its_flows_deleted_and_is_relearnt():
    dp, switch = FakeDatapath(), LearningSwitch(L2_OWNER)
    switch.packet_in(packet_in(dp, 1, eth_frame(H1, H2)))
    switch.packet_in(packet_in(dp, 2, eth_frame(H2, H1)))
    dp.take()
    switch.packet_in(packet_in(dp, 3, eth_frame(H1, H2)))  # H1 now behind port 3
    delete, flow, _ = dp.sent
    assert delete.command == OFP.OFPFC_DELETE
    assert dict(delete.match.items()) == {"eth_dst": H1}
    assert (delete.cookie, delete.cookie_mask) == (L2_OWNER, FULL_MASK)
    assert dict(flow.match.items())["in_port"] == 3
    dp.take()
    switch.packet_in(packet_in(dp, 2, eth_frame(H2, H1)))
    assert describe(actions_of(dp.sent[0])) == [("output", 3)]


def test_reconnect_and_a_restarted_app_start_clean():
    dp, switch = FakeDatapath(), LearningSwitch(L2_OWNER)
    switch.switch_connected(dp)
    switch.packet_in(packet_in(dp, 1, eth_frame(H1, H2)))
    dp.take()
    switch.switch_connected(dp)  # the switch reconnected: start over there
    assert [m.command for m in flow_mods(dp.take())] == [OFP.OFPFC_DELETE, OFP.OFPFC_ADD]
    switch.packet_in(packet_in(dp, 2, eth_frame(H2, H1)))
    assert describe(dp.take()[0].actions) == [("output", OFP.OFPP_FLOOD)]
    fresh = LearningSwitch(L2_OWNER)  # a restarted controller: same reset, then relearns
    fresh.switch_connected(dp)
    delete, _, miss = dp.take()
    assert (delete.command, delete.cookie, delete.cookie_mask) == (
        OFP.OFPFC_DELETE,
        L2_OWNER,
        OWNER_MASK,
    )
    assert miss.priority == 0
    fresh.packet_in(packet_in(dp, 1, eth_frame(H1, H2)))
    fresh.packet_in(packet_in(dp, 2, eth_frame(H2, H1)))
    assert describe(actions_of(flow_mods(dp.sent)[0])) == [("output", 1)]


def test_short_frames_are_ignored():
    dp, switch = FakeDatapath(), LearningSwitch(L2_OWNER)
    switch.packet_in(packet_in(dp, 1, b"\x00\x01\x02"))
    assert dp.sent == []


def test_l2_app_handlers_are_wired_to_the_events():
    assert (
        MAIN_DISPATCHER
        in L2LearningSwitch._packet_in.callers[ofp_event.EventOFPPacketIn].dispatchers
    )
    assert (
        CONFIG_DISPATCHER
        in L2LearningSwitch._switch_features.callers[ofp_event.EventOFPSwitchFeatures].dispatchers
    )
    assert L2LearningSwitch.OFP_VERSIONS == [OFP.OFP_VERSION]
    app, dp = L2LearningSwitch(), FakeDatapath()
    app._packet_in(ofp_event.EventOFPPacketIn(packet_in(dp, 1, eth_frame(H1, H2))))
    assert describe(dp.sent[0].actions) == [("output", OFP.OFPP_FLOOD)]


# -- the OpenFlow director -------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dr_rules(scheduler: str = "rr", extra: str = "") -> str:
    lines = [f"-A -t {DR_VIP}:80 -s {scheduler}{extra}", f"-A -u {DR_VIP}:7 -s {scheduler}"]
    for rs in DR_RS:
        lines += [f"-a -t {DR_VIP}:80 -r {rs}:80 -g -w 1", f"-a -u {DR_VIP}:7 -r {rs}:7 -g -w 1"]
    return "\n".join(lines) + "\n"


NAT_RULES = (
    f"-A -t {NAT_VIP}:80 -s rr\n"
    f"-a -t {NAT_VIP}:80 -r {NAT_RS[0]}:8080 -m -w 1\n"
    f"-a -t {NAT_VIP}:80 -r {NAT_RS[1]}:8080 -m -w 1\n"
    f"-A -u {NAT_VIP}:7 -s rr\n"
    f"-a -u {NAT_VIP}:7 -r {NAT_RS[0]}:7 -m -w 1\n"
)


def make_lb(
    rules: str | None = None, gateways: tuple[str, ...] = (), dpid: int = 1
) -> tuple[Balancer, FakeDatapath, Clock]:
    clock = Clock()
    lb = Balancer(build_director(rules or dr_rules()), VMAC, gateways, clock=clock)
    dp = FakeDatapath(dpid)
    lb.switch_connected(dp)
    dp.take()
    return lb, dp, clock


def learn_real_servers(lb: Balancer, dp: FakeDatapath, addrs=DR_RS, gateway="10.0.0.1") -> None:
    """Each real server ARPs for its gateway, as it does before its first reply."""
    for mac, port, addr in zip(RS_MACS, RS_PORTS, addrs, strict=False):
        lb.packet_in(packet_in(dp, port, arp_request(mac, addr, gateway)))
    dp.take()


def syn(
    sport: int, src: str = CLIENT, mac: str = FW_MAC, vip: str = DR_VIP, dport: int = 80
) -> bytes:
    return tcp_frame(mac, VMAC, src, sport, vip, dport)


def chosen_mac(flow) -> str:
    return dict((k, v) for _, k, v in [a for a in describe(actions_of(flow)) if a[0] == "set"])[
        "eth_dst"
    ]


def test_arp_request_for_the_vip_is_answered_with_the_virtual_mac():
    lb, dp, _ = make_lb()
    lb.packet_in(packet_in(dp, FW_PORT, arp_request(FW_MAC, "10.0.0.1", DR_VIP)))
    (out,) = dp.sent  # answered, not flooded
    assert out.in_port == OFP.OFPP_CONTROLLER
    assert describe(out.actions) == [("output", FW_PORT)]
    reply = parse(out.data)
    eth, answer = reply.get_protocol(ethernet.ethernet), reply.get_protocol(arp.arp)
    assert (eth.src, eth.dst) == (VMAC, FW_MAC)
    assert answer.opcode == arp.ARP_REPLY
    assert (answer.src_mac, answer.src_ip) == (VMAC, DR_VIP)
    assert (answer.dst_mac, answer.dst_ip) == (FW_MAC, "10.0.0.1")


def test_arp_for_the_nat_gateway_is_answered_and_other_arp_is_switched():
    lb, dp, _ = make_lb(NAT_RULES, gateways=(NAT_GW,))
    lb.packet_in(packet_in(dp, 2, arp_request(RS_MACS[0], NAT_RS[0], NAT_GW)))
    (out,) = dp.take()
    assert parse(out.data).get_protocol(arp.arp).src_ip == NAT_GW
    lb.packet_in(packet_in(dp, 2, arp_request(RS_MACS[0], NAT_RS[0], "192.168.0.99")))
    (out,) = dp.take()
    assert describe(out.actions) == [("output", OFP.OFPP_FLOOD)]
    assert bytes(out.data) == arp_request(RS_MACS[0], NAT_RS[0], "192.168.0.99")


def test_ping_to_the_vip_is_answered():
    lb, dp, _ = make_lb()
    echo = frame(
        ethernet.ethernet(dst=VMAC, src=FW_MAC),
        ipv4.ipv4(src=CLIENT, dst=DR_VIP, proto=1),
        icmp.icmp(data=icmp.echo(id_=7, seq=3, data=b"hello")),
    )
    lb.packet_in(packet_in(dp, FW_PORT, echo))
    (out,) = dp.sent
    reply = parse(out.data)
    ip, answer = reply.get_protocol(ipv4.ipv4), reply.get_protocol(icmp.icmp)
    assert (ip.src, ip.dst) == (DR_VIP, CLIENT)
    assert answer.type == icmp.ICMP_ECHO_REPLY
    assert (answer.data.id, answer.data.seq, answer.data.data) == (7, 3, b"hello")


def test_round_robin_over_three_real_servers_matches_the_director():
    lb, dp, _ = make_lb()
    learn_real_servers(lb, dp)
    reference = build_director(dr_rules())
    svc = reference.find_service(6, ip_to_int(DR_VIP), 80)
    mac_of = dict(zip(DR_RS, RS_MACS, strict=True))
    expected, got = [], []
    for i in range(7):
        sport = 40000 + i
        lb.packet_in(packet_in(dp, FW_PORT, syn(sport)))
        flow = flow_mods(dp.take())[0]
        got.append(chosen_mac(flow))
        conn = reference.schedule_new(svc, 6, ip_to_int(CLIENT), sport, ip_to_int(DR_VIP), 80, 0.0)
        expected.append(mac_of[int_to_ip(conn.daddr)])
    assert got == expected
    assert set(got) == set(RS_MACS)  # all three, in turn
    listing = ipvsadm.run(["-L", "-n"], lb.director).out
    assert listing.count("Route   1      2") + listing.count("Route   1      3") == 3


def test_weights_and_persistence_come_from_the_director():
    rules = dr_rules("wrr", " -p 60")
    rules = rules.replace(f"-r {DR_RS[0]}:80 -g -w 1", f"-r {DR_RS[0]}:80 -g -w 0")
    lb, dp, _ = make_lb(rules)
    learn_real_servers(lb, dp)
    macs = set()
    for sport in range(50000, 50006):
        lb.packet_in(packet_in(dp, FW_PORT, syn(sport)))
        macs.add(chosen_mac(flow_mods(dp.take())[0]))
    assert len(macs) == 1 and RS_MACS[0] not in macs  # one server per client; never weight 0


def test_dr_flow_rewrites_only_the_destination_mac():
    lb, dp, _ = make_lb()
    learn_real_servers(lb, dp)
    data = syn(40000)
    lb.packet_in(packet_in(dp, FW_PORT, data))
    flow, out = dp.sent
    assert dict(flow.match.items()) == {
        "eth_dst": VMAC,
        "eth_type": 0x0800,
        "ip_proto": 6,
        "ipv4_src": CLIENT,
        "ipv4_dst": DR_VIP,
        "tcp_src": 40000,
        "tcp_dst": 80,
    }
    assert describe(actions_of(flow)) == [("set", "eth_dst", RS_MACS[2]), ("output", 4)]
    assert flow.priority == 100
    assert flow.cookie & OWNER_MASK == LB_OWNER and flow.cookie != LB_OWNER
    assert flow.flags == OFP.OFPFF_SEND_FLOW_REM
    assert (flow.idle_timeout, flow.hard_timeout) == (900, 0)
    assert describe(out.actions) == describe(actions_of(flow))
    assert out.in_port == FW_PORT and bytes(out.data) == data


def test_nat_flows_rewrite_the_destination_in_and_the_source_back_out():
    lb, dp, _ = make_lb(NAT_RULES, gateways=(NAT_GW,))
    learn_real_servers(lb, dp, NAT_RS, NAT_GW)
    lb.packet_in(packet_in(dp, 1, syn(33000, mac=CLIENT_MAC, vip=NAT_VIP)))
    inbound, outbound, _ = dp.sent
    # rr picks the newest real server first (IPVS list order): 192.168.0.12, port 8080
    assert describe(actions_of(inbound)) == [
        ("set", "eth_dst", RS_MACS[1]),
        ("set", "ipv4_dst", NAT_RS[1]),
        ("set", "tcp_dst", 8080),
        ("output", 3),
    ]
    assert dict(outbound.match.items()) == {
        "eth_dst": VMAC,
        "eth_type": 0x0800,
        "ip_proto": 6,
        "ipv4_src": NAT_RS[1],
        "ipv4_dst": CLIENT,
        "tcp_src": 8080,
        "tcp_dst": 33000,
    }
    assert describe(actions_of(outbound)) == [
        ("set", "eth_src", VMAC),
        ("set", "eth_dst", CLIENT_MAC),
        ("set", "ipv4_src", NAT_VIP),
        ("set", "tcp_src", 80),
        ("output", 1),
    ]
    assert inbound.cookie != outbound.cookie
    # A reply that overtook the flow mod is rewritten by the controller the same way.
    reply = tcp_frame(RS_MACS[1], VMAC, NAT_RS[1], 8080, CLIENT, 33000, tcp.TCP_SYN | tcp.TCP_ACK)
    lb.packet_in(packet_in(dp, 3, reply))
    (out,) = dp.take()[3:]
    assert describe(out.actions) == describe(actions_of(outbound))
    assert lb.director.find_service(6, ip_to_int(NAT_VIP), 80).dests[0].stats.outpkts == 1


def test_nat_udp_flows_use_udp_ports():
    lb, dp, _ = make_lb(NAT_RULES, gateways=(NAT_GW,))
    learn_real_servers(lb, dp, NAT_RS, NAT_GW)
    lb.packet_in(packet_in(dp, 1, udp_frame(CLIENT_MAC, VMAC, CLIENT, 5555, NAT_VIP, 7)))
    inbound, outbound, _ = dp.sent
    assert ("set", "udp_dst", 7) in describe(actions_of(inbound))
    assert dict(outbound.match.items())["udp_dst"] == 5555
    assert ("set", "udp_src", 7) in describe(actions_of(outbound))


def test_idle_timeouts_follow_ipvs_timeouts_and_set():
    lb, dp, _ = make_lb()
    learn_real_servers(lb, dp)
    lb.packet_in(packet_in(dp, FW_PORT, udp_frame(FW_MAC, VMAC, CLIENT, 6000, DR_VIP, 7)))
    assert flow_mods(dp.take())[0].idle_timeout == 300
    reply = lb.control({"op": "ipvsadm", "argv": ["--set", "30", "120", "20"]})
    assert reply["rc"] == 0
    lb.packet_in(packet_in(dp, FW_PORT, syn(40001)))
    lb.packet_in(packet_in(dp, FW_PORT, udp_frame(FW_MAC, VMAC, CLIENT, 6001, DR_VIP, 7)))
    assert [f.idle_timeout for f in flow_mods(dp.take())] == [30, 20]
    lb.control({"op": "ipvsadm", "argv": ["--set", "100000", "0", "0"]})
    lb.packet_in(packet_in(dp, FW_PORT, syn(40002)))
    assert flow_mods(dp.take())[0].idle_timeout == 65535  # 16 bits in OpenFlow


def test_flow_counters_become_the_ipvsadm_stats():
    lb, dp, clock = make_lb()
    learn_real_servers(lb, dp)
    first = syn(40000)
    lb.packet_in(packet_in(dp, FW_PORT, first))
    flow = flow_mods(dp.take())[0]
    ip_len = parse(first).get_protocol(ipv4.ipv4).total_length  # the frame is padded
    listing = ipvsadm.run(["-L", "-n"], lb.director).out
    assert f"{DR_RS[2]}:80                 Route   1      1          0" in listing
    clock.now += 2.5
    lb.tick()  # polls the switch
    (poll,) = dp.take()
    assert isinstance(poll, OFP_PARSER.OFPFlowStatsRequest)
    assert (poll.cookie, poll.cookie_mask) == (LB_OWNER, OWNER_MASK)
    lb.flow_stats(dp.id, [flow_stats(flow, 10, 10 * 80)])  # 80-byte frames: 66-byte packets
    lb.flow_removed(flow_removed(dp, flow, 15, 15 * 80))
    stats = ipvsadm.run(["-L", "-n", "--stats"], lb.director).out
    line = next(x for x in stats.splitlines() if DR_RS[2] in x)
    assert line.split()[2:] == ["1", "16", "0", str(ip_len + 15 * 66), "0"]
    svc_line = next(x for x in stats.splitlines() if x.startswith("TCP"))
    assert svc_line.split()[2:] == ["1", "16", "0", str(ip_len + 15 * 66), "0"]
    # the connection went with its flow
    assert len(lb.director.conns) == 0 and lb.flows == {}
    listing = ipvsadm.run(["-L", "-n"], lb.director).out
    assert f"{DR_RS[2]}:80                 Route   1      0          0" in listing


def test_polled_traffic_keeps_a_connection_alive_and_silence_expires_it():
    lb, dp, clock = make_lb()
    learn_real_servers(lb, dp)
    lb.packet_in(packet_in(dp, FW_PORT, udp_frame(FW_MAC, VMAC, CLIENT, 6000, DR_VIP, 7)))
    flow = flow_mods(dp.take())[0]
    clock.now += 200
    lb.flow_stats(dp.id, [flow_stats(flow, 5, 5 * 80)])
    clock.now += 200  # 400 s after the first packet, 200 s after the last poll with traffic
    lb.tick()
    assert len(lb.director.conns) == 1
    clock.now += 200
    lb.tick()  # no flow-removed came (a lost switch): the connection expires anyway
    assert len(lb.director.conns) == 0 and lb.flows == {} and lb.conn_info == {}


def test_traffic_not_for_the_vip_is_switched():
    lb, dp, _ = make_lb()
    learn_real_servers(lb, dp)
    # fw -> rs3 at its own MAC (not the virtual one): learning-switch flow, lb's cookie
    data = tcp_frame(FW_MAC, RS_MACS[2], "10.0.0.1", 1234, DR_RS[2], 22)
    lb.packet_in(packet_in(dp, FW_PORT, data))
    flow, out = dp.sent
    assert dict(flow.match.items()) == {
        "in_port": FW_PORT,
        "eth_src": FW_MAC,
        "eth_dst": RS_MACS[2],
    }
    assert describe(actions_of(flow)) == [("output", 4)]
    assert (flow.cookie, flow.priority) == (LB_OWNER, 10)
    assert bytes(out.data) == data
    assert len(lb.director.conns) == 0
    dp.take()
    lb.packet_in(packet_in(dp, 4, eth_frame(RS_MACS[2], "00:00:00:00:99:99")))
    assert describe(dp.sent[0].actions) == [("output", OFP.OFPP_FLOOD)]


def test_unknown_real_server_mac_is_asked_for_and_the_packet_waits():
    lb, dp, clock = make_lb()
    data = syn(40000)
    lb.packet_in(packet_in(dp, FW_PORT, data))
    (probe,) = dp.take()
    assert describe(probe.actions) == [("output", OFP.OFPP_FLOOD)]
    request_ = parse(probe.data)
    eth, ask = request_.get_protocol(ethernet.ethernet), request_.get_protocol(arp.arp)
    assert (eth.src, eth.dst) == (VMAC, "ff:ff:ff:ff:ff:ff")
    assert ask.opcode == arp.ARP_REQUEST
    assert (ask.src_mac, ask.src_ip, ask.dst_ip) == (VMAC, "0.0.0.0", DR_RS[2])
    # Meanwhile the connection is what IPVS has after a SYN: inactive, SYN_RECV.
    assert (
        f"{DR_RS[2]}:80                 Route   1      0          1"
        in ipvsadm.run(["-L", "-n"], lb.director).out
    )
    assert "SYN_RECV" in ipvsadm.run(["-L", "-n", "-c"], lb.director, now=clock.now).out
    # The answer (unicast to the virtual MAC) releases the waiting SYN, and is flooded on
    # so that other switches learn where the real server is.
    answer = arp_reply(RS_MACS[2], DR_RS[2], VMAC, "0.0.0.0")
    lb.packet_in(packet_in(dp, 4, answer))
    flow, out, onward = dp.take()
    assert describe(actions_of(flow)) == [("set", "eth_dst", RS_MACS[2]), ("output", 4)]
    assert bytes(out.data) == data
    assert describe(onward.actions) == [("output", OFP.OFPP_FLOOD)]
    assert bytes(onward.data) == answer
    # Unanswered: the next server's packet waits ARP_GIVE_UP_S, then is dropped.
    lb.packet_in(packet_in(dp, FW_PORT, syn(40001)))
    assert len(packet_outs(dp.take())) == 1
    clock.now += 3
    lb.tick()
    assert lb.drops["arp_unresolved"] == 1 and lb.pending == {}


def test_a_switch_that_has_not_learnt_the_real_server_floods_the_rewritten_frame():
    lb, dp1, clock = make_lb()
    learn_real_servers(lb, dp1)  # the real servers are behind switch 1
    clock.now += 3  # past the probes made when switch 1 connected
    dp2 = FakeDatapath(2)
    lb.switch_connected(dp2)
    dp2.take()
    lb.packet_in(packet_in(dp2, 7, syn(40000)))
    probe, out = dp2.take()  # no flow: the next frames come here too, until switch 2 learns
    assert parse(probe.data).get_protocol(arp.arp).dst_ip == DR_RS[2]
    assert describe(out.actions) == [("set", "eth_dst", RS_MACS[2]), ("output", OFP.OFPP_FLOOD)]
    dp1.take()  # the probe went out there too
    lb.packet_in(packet_in(dp2, 7, tcp_frame(FW_MAC, VMAC, CLIENT, 40000, DR_VIP, 80, tcp.TCP_ACK)))
    assert len(dp2.take()) == 1  # flooded again, not asked again (once per 3 s)
    # The answer crosses switch 2 on its way (flooded by switch 1): now it knows the way.
    lb.packet_in(packet_in(dp2, 6, arp_reply(RS_MACS[2], DR_RS[2], VMAC, "0.0.0.0")))
    dp2.take()
    lb.packet_in(packet_in(dp2, 7, tcp_frame(FW_MAC, VMAC, CLIENT, 40000, DR_VIP, 80, tcp.TCP_ACK)))
    flow, _ = dp2.take()
    assert describe(actions_of(flow)) == [("set", "eth_dst", RS_MACS[2]), ("output", 6)]
    assert len(lb.director.conns) == 1


def test_switch_connect_probes_real_servers_it_does_not_know():
    lb = Balancer(build_director(dr_rules()), VMAC)
    dp = FakeDatapath()
    lb.switch_connected(dp)
    probes = packet_outs(dp.sent)
    assert [parse(p.data).get_protocol(arp.arp).dst_ip for p in probes] == DR_RS


def test_tcp_without_syn_and_unknown_ports_are_dropped():
    lb, dp, _ = make_lb()
    learn_real_servers(lb, dp)
    lb.packet_in(
        packet_in(dp, FW_PORT, tcp_frame(FW_MAC, VMAC, CLIENT, 40000, DR_VIP, 80, tcp.TCP_ACK))
    )
    lb.packet_in(packet_in(dp, FW_PORT, syn(40001, dport=443)))
    assert dp.sent == []
    assert lb.drops == {"no_connection": 1, "no_service": 1}


def test_reconnect_resets_the_switch_and_forgets_its_connections():
    lb, dp, _ = make_lb()
    learn_real_servers(lb, dp)
    lb.packet_in(packet_in(dp, FW_PORT, syn(40000)))
    dp.take()
    assert len(lb.director.conns) == 1
    lb.switch_connected(dp)
    delete, _, miss = dp.sent[:3]
    assert (delete.command, delete.cookie, delete.cookie_mask) == (
        OFP.OFPFC_DELETE,
        LB_OWNER,
        OWNER_MASK,
    )
    assert miss.priority == 0 and miss.cookie == LB_OWNER
    assert len(lb.director.conns) == 0 and lb.flows == {}


def test_deleting_a_real_server_deletes_its_flows():
    lb, dp, _ = make_lb()
    learn_real_servers(lb, dp)
    lb.packet_in(packet_in(dp, FW_PORT, syn(40000)))
    flow = flow_mods(dp.take())[0]
    reply = lb.control(
        {"op": "ipvsadm", "argv": ["-d", "-t", f"{DR_VIP}:80", "-r", f"{DR_RS[2]}:80"]}
    )
    assert reply["rc"] == 0
    (delete,) = flow_mods(dp.take())
    assert delete.command == OFP.OFPFC_DELETE
    assert (delete.cookie, delete.cookie_mask) == (flow.cookie, FULL_MASK)
    # its connection's next packet is dropped, as IPVS drops it
    lb.packet_in(
        packet_in(dp, FW_PORT, tcp_frame(FW_MAC, VMAC, CLIENT, 40000, DR_VIP, 80, tcp.TCP_ACK))
    )
    assert dp.sent == [] and lb.drops["dest_unavailable"] == 1


def test_control_channel_speaks_the_daemons_protocol():
    lb, _, _ = make_lb()
    reply = lb.control({"op": "ipvsadm", "argv": ["-L", "-n"]})
    assert reply["rc"] == 0 and f"TCP  {DR_VIP}:80 rr" in reply["out"]
    reply = lb.control(
        {"op": "ipvsadm", "argv": ["-a", "-t", f"{DR_VIP}:80", "-r", "10.0.0.14:80", "-i"]}
    )
    assert reply["rc"] == 0 and "TUN (-i)" in reply["err"]
    stats = lb.control({"op": "stats"})["stats"]
    assert stats["name"] == "of" and stats["frames"]["rx"] == 0
    assert lb.control({"op": "nope"})["rc"] == 2


def test_configuration_is_checked():
    with pytest.raises(ValueError, match="TUN"):
        build_director(f"-A -t {DR_VIP}:80\n-a -t {DR_VIP}:80 -r 10.0.0.11:80 -i\n")
    with pytest.raises(ValueError, match="firewall-mark"):
        build_director("-A -f 5\n")
    with pytest.raises(ValueError, match="refused"):
        build_director("-A -t nonsense\n")
    with pytest.raises(ValueError, match="unicast MAC"):
        LbConfig(rules="", vip_mac="01:00:5e:00:00:01")
    nat = lb_config_for_layout("nat", n_rs=2)
    assert nat.gateway_ips == (NAT_GW,) and "-m" in nat.rules and NAT_VIP in nat.rules
    with pytest.raises(ValueError, match="dr or nat"):
        lb_config_for_layout("tun")


def test_keepalived_virtual_servers_become_rules(tmp_path: Path):
    conf = tmp_path / "keepalived.conf"
    conf.write_text(f"""
virtual_server {NAT_VIP} 80 {{
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server {NAT_RS[0]} 80 {{
        weight 2
    }}
}}
""")
    director = build_director(rules_from_keepalived(conf))
    (svc,) = director.services()
    assert svc.sched_name == "wrr"
    assert [(int_to_ip(d.addr), d.weight, d.fwd.name) for d in svc.dests] == [(NAT_RS[0], 2, "NAT")]


def test_lb_app_handlers_are_wired_and_take_the_configuration(monkeypatch):
    from testbed.controllers import lb as lb_module

    monkeypatch.setattr(lb_module, "_config", None)
    lb_module.configure(LbConfig(rules=NAT_RULES, gateway_ips=(NAT_GW,)))
    app = OpenFlowDirector()
    assert app.balancer.owned == {ip_to_int(NAT_VIP), ip_to_int(NAT_GW)}
    for handler, event, dispatcher in (
        ("_packet_in", ofp_event.EventOFPPacketIn, MAIN_DISPATCHER),
        ("_flow_removed", ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER),
        ("_flow_stats", ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER),
        ("_switch_features", ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER),
    ):
        assert dispatcher in getattr(OpenFlowDirector, handler).callers[event].dispatchers


# -- the runner ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_taken_port_is_refused_naming_the_port_and_the_fix(monkeypatch, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ControllerError, match=f"127.0.0.1:{port}.*--port"):
            check_port_free("127.0.0.1", port)
        monkeypatch.setenv("LVS_TESTBED_RUNDIR", str(tmp_path))
        monkeypatch.delenv("LVS_TESTBED_RUN_DIR", raising=False)
        result = CliRunner().invoke(cli_app, ["controller", "run", "lb", "--port", str(port)])
    assert result.exit_code == 1
    assert str(port) in result.output and "--port" in result.output
    assert list(tmp_path.iterdir()) == []  # the run directory went again


def test_cli_refuses_unknown_apps_and_misplaced_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli_app, ["controller", "run", "nope", "--port", str(free_port())])
    assert result.exit_code == 1 and "unknown app 'nope'" in result.output
    assert "controllers/NAME.py" in result.output
    result = runner.invoke(
        cli_app, ["controller", "run", "l2_learning", "--vip-mac", "02:00:00:00:00:01"]
    )
    assert result.exit_code == 1 and "only for the lb app" in result.output
    l2_file = str(REPO_ROOT / "controllers" / "l2_learning.py")
    result = runner.invoke(cli_app, ["controller", "run", l2_file, "--mode", "nat"])
    assert result.exit_code == 1 and "--mode: only for the lb app" in result.output
    result = runner.invoke(cli_app, ["controller", "run", str(tmp_path / "missing.py")])
    assert result.exit_code == 1 and "no app file" in result.output
    no_app = tmp_path / "no_app.py"
    no_app.write_text("X = 1\n")
    result = runner.invoke(cli_app, ["controller", "run", str(no_app)])
    assert result.exit_code == 1 and "defines no os-ken app" in result.output


def test_the_package_lb_app_refuses_to_start_unconfigured_and_the_app_file_brings_defaults(
    monkeypatch,
):
    from testbed.controllers import lb as lb_module
    from testbed.controllers.runner import app_class, is_openflow_director, resolve_app

    monkeypatch.setattr(lb_module, "_config", None)
    with pytest.raises(RuntimeError, match="no configuration"):
        OpenFlowDirector()
    cls = app_class(resolve_app(str(REPO_ROOT / "controllers" / "lb.py")))
    assert is_openflow_director(cls) and cls is not OpenFlowDirector
    assert cls.default_config() == lb_config_for_layout("dr", 3)
    assert cls().balancer.owned == {ip_to_int(DR_VIP)}
    l2 = app_class(resolve_app(str(REPO_ROOT / "controllers" / "l2_learning.py")))
    assert issubclass(l2, L2LearningSwitch) and not is_openflow_director(l2)


class FakeSwitch:
    """Just enough of an OpenFlow 1.3 switch over TCP to get past os-ken's handshake and
    see what the app sends: hello, features, port description, then packet-ins. os-ken parses
    only what switches send, so what the controller sends is decoded here with struct."""

    def __init__(self, port: int, dpid: int = 0x51) -> None:
        self.dpid = dpid
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.send(OFP.OFPT_HELLO, 1, b"")

    def send(self, msg_type: int, xid: int, body: bytes) -> None:
        self.sock.sendall(
            struct.pack("!BBHI", OFP.OFP_VERSION, msg_type, 8 + len(body), xid) + body
        )

    def receive(self) -> dict:
        """The next message: its type and xid, and the fields of flow mods and packet-outs
        these tests look at."""
        while True:
            if len(self.buf) >= 8:
                _, msg_type, length, xid = struct.unpack_from("!BBHI", self.buf)
                if len(self.buf) >= length:
                    raw, self.buf = self.buf[:length], self.buf[length:]
                    return self._decode(msg_type, xid, raw)
            chunk = self.sock.recv(65536)
            assert chunk, "the controller closed the connection"
            self.buf += chunk

    @staticmethod
    def _decode(msg_type: int, xid: int, raw: bytes) -> dict:
        msg = {"type": msg_type, "xid": xid}
        if msg_type == OFP.OFPT_FLOW_MOD:
            cookie_, mask, _, command, _, _, priority = struct.unpack_from("!QQBBHHH", raw, 8)
            msg.update(cookie=cookie_, cookie_mask=mask, command=command, priority=priority)
        elif msg_type == OFP.OFPT_PACKET_OUT:
            _, in_port, actions_len = struct.unpack_from("!IIH", raw, 8)
            ports, offset = [], 24
            while offset < 24 + actions_len:
                action_type, action_len = struct.unpack_from("!HH", raw, offset)
                if action_type == OFP.OFPAT_OUTPUT:
                    ports.append(struct.unpack_from("!I", raw, offset + 4)[0])
                offset += action_len
            msg.update(in_port=in_port, ports=ports, data=raw[24 + actions_len :])
        elif msg_type == OFP.OFPT_MULTIPART_REQUEST:
            msg["mp_type"] = struct.unpack_from("!H", raw, 8)[0]
            if msg["mp_type"] == OFP.OFPMP_FLOW:
                msg["cookie"], msg["cookie_mask"] = struct.unpack_from("!QQ", raw, 32)
        return msg

    def handshake(self) -> list[dict]:
        """Answer until the app's table-miss flow arrived; return the flow mods and
        barriers that came with it (and any early flow statistics request)."""
        seen: list[dict] = []
        while not any(m["type"] == OFP.OFPT_FLOW_MOD and m["priority"] == 0 for m in seen):
            msg = self.receive()
            if msg["type"] == OFP.OFPT_FEATURES_REQUEST:
                body = struct.pack("!QIBB2xII", self.dpid, 0, 254, 0, 0, 0)
                self.send(OFP.OFPT_FEATURES_REPLY, msg["xid"], body)
            elif msg["type"] == OFP.OFPT_MULTIPART_REQUEST and (
                msg["mp_type"] == OFP.OFPMP_PORT_DESC
            ):
                self.send(
                    OFP.OFPT_MULTIPART_REPLY,
                    msg["xid"],
                    struct.pack("!HH4x", OFP.OFPMP_PORT_DESC, 0),
                )
            elif msg["type"] in (
                OFP.OFPT_FLOW_MOD,
                OFP.OFPT_BARRIER_REQUEST,
                OFP.OFPT_MULTIPART_REQUEST,
            ):
                seen.append(msg)
        return seen

    def packet_in(self, in_port: int, data: bytes) -> None:
        match = bytearray()
        OFP_PARSER.OFPMatch(in_port=in_port).serialize(match, 0)
        body = struct.pack("!IHBBQ", OFP.OFP_NO_BUFFER, len(data), OFP.OFPR_NO_MATCH, 0, 0)
        self.send(OFP.OFPT_PACKET_IN, 0, body + bytes(match) + b"\x00\x00" + data)

    def packet_out_to(self, port: int) -> dict:
        """The next packet-out that outputs to ``port`` (ARP probes may come first)."""
        return self.next_of(OFP.OFPT_PACKET_OUT, ports=[port])

    def next_of(self, msg_type: int, **fields) -> dict:
        """The next message of ``msg_type`` whose ``fields`` have the given values."""
        while True:
            msg = self.receive()
            if msg["type"] == msg_type and all(msg.get(k) == v for k, v in fields.items()):
                return msg

    def close(self) -> None:
        self.sock.close()


def start_controller(argv: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed", "controller", "run", *argv, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the controller did not listen on {port}: {proc.communicate()[0]}")


def stop_controller(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the controller ignored SIGTERM: {proc.communicate()[0]}")
    assert proc.returncode == 0, out
    return out


@pytest.fixture
def run_root():
    """A short run root: a unix socket's path must fit in 108 bytes, pytest's tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="of-", dir="/tmp") as root:
        yield Path(root)


@pytest.fixture
def controller_env(run_root) -> dict:
    env = dict(os.environ, LVS_TESTBED_RUNDIR=str(run_root), PYTHONUNBUFFERED="1")
    env.pop("LVS_TESTBED_RUN_DIR", None)
    return env


def test_learning_switch_app_runs_under_os_ken(controller_env):
    proc, port = start_controller(["l2_learning"], controller_env)
    try:
        switch = FakeSwitch(port)
        delete, barrier, miss = switch.handshake()
        assert (delete["command"], delete["cookie"], delete["cookie_mask"]) == (
            OFP.OFPFC_DELETE,
            L2_OWNER,
            OWNER_MASK,
        )
        assert barrier["type"] == OFP.OFPT_BARRIER_REQUEST
        assert (miss["command"], miss["cookie"]) == (OFP.OFPFC_ADD, L2_OWNER)
        data = eth_frame(H1, H2)
        switch.packet_in(1, data)
        out = switch.packet_out_to(OFP.OFPP_FLOOD)
        assert (out["in_port"], out["data"]) == (1, data)
        switch.close()
    finally:
        output = stop_controller(proc)
    assert "switch 0000000000000051 connected" in output


def test_director_app_runs_under_os_ken_with_its_control_channel(controller_env, run_root):
    proc, port = start_controller(["lb", "--mode", "dr", "--stats-interval-s", "1"], controller_env)
    try:
        (run_dir,) = run_root.iterdir()
        sock = run_dir / "of.director.sock"
        reply = request(sock, {"op": "ipvsadm", "argv": ["-L", "-n"]})
        assert reply["rc"] == 0 and f"TCP  {DR_VIP}:80 rr" in reply["out"]
        switch = FakeSwitch(port)
        delete = switch.handshake()[0]
        assert (delete["command"], delete["cookie"]) == (OFP.OFPFC_DELETE, LB_OWNER)
        poll = switch.next_of(OFP.OFPT_MULTIPART_REQUEST, mp_type=OFP.OFPMP_FLOW)
        assert (poll["cookie"], poll["cookie_mask"]) == (LB_OWNER, OWNER_MASK)
        switch.packet_in(1, arp_request(FW_MAC, "10.0.0.1", DR_VIP))
        answer = parse(switch.packet_out_to(1)["data"]).get_protocol(arp.arp)
        assert (answer.opcode, answer.src_mac, answer.src_ip) == (arp.ARP_REPLY, VMAC, DR_VIP)
        reply = request(sock, {"op": "stats"})
        assert reply["stats"]["openflow"]["datapaths"] == [0x51]
        assert reply["stats"]["openflow"]["arp_replies"] == 1
        switch.close()
    finally:
        stop_controller(proc)
    assert list(run_root.iterdir()) == []  # socket, index and run directory removed


@pytest.mark.parametrize(
    "message",
    [
        {"op": "ipvsadm", "argv": [1]},
        {"op": "ipvsadm", "argv": ["-L"], "stdin": 5},
        {"op": "ipvsadm"},
        {"op": "stats", "count": 1e400},
        {"op": 7},
    ],
)
def test_a_malformed_control_request_gets_an_error_reply(message):
    lb, _, _ = make_lb()
    before = lb.director.snapshot()
    reply = lb.control(message)
    assert reply["rc"] == 2 and reply["err"].startswith("bad control request")
    assert lb.director.snapshot() == before


def test_a_control_request_that_fails_inside_is_answered_not_raised(monkeypatch):
    """The request runs on the app's event loop: an exception there would leave the
    control thread waiting and the reply lost."""
    lb, _, _ = make_lb()

    def broken():
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(lb, "stats", broken)
    reply = lb.control({"op": "stats"})
    assert reply["rc"] == 1 and "ZeroDivisionError" in reply["err"]


def test_the_app_files_in_controllers_run_by_path(controller_env, run_root):
    """controllers/l2_learning.py switches like the built-in; controllers/lb.py serves the DR
    layout's services by default and the NAT layout's with --mode nat."""
    proc, port = start_controller(
        [str(REPO_ROOT / "controllers" / "l2_learning.py")], controller_env
    )
    try:
        switch = FakeSwitch(port)
        delete = switch.handshake()[0]
        assert (delete["command"], delete["cookie"]) == (OFP.OFPFC_DELETE, L2_OWNER)
        switch.packet_in(1, eth_frame(H1, H2))
        assert switch.packet_out_to(OFP.OFPP_FLOOD)["in_port"] == 1
        switch.close()
    finally:
        stop_controller(proc)
    lb_file = str(REPO_ROOT / "controllers" / "lb.py")
    for argv, vip, method in (([], DR_VIP, "Route"), (["--mode", "nat"], NAT_VIP, "Masq")):
        proc, port = start_controller([lb_file, *argv], controller_env)
        try:
            (run_dir,) = run_root.iterdir()
            reply = request(run_dir / "of.director.sock", {"op": "ipvsadm", "argv": ["-L", "-n"]})
            assert reply["rc"] == 0 and f"TCP  {vip}:80 rr" in reply["out"], reply
            assert reply["out"].count(method) == 6  # 3 real servers, tcp 80 and udp 7
        finally:
            stop_controller(proc)


def test_a_copy_of_the_lb_app_file_serves_its_own_defaults(controller_env, run_root, tmp_path):
    """How a user writes their own: copy the file, change its defaults, run the copy."""
    text = (REPO_ROOT / "controllers" / "lb.py").read_text()
    assert 'LAYOUT = "dr"' in text and "N_RS = 3" in text
    copy = tmp_path / "my_lb.py"
    copy.write_text(text.replace('LAYOUT = "dr"', 'LAYOUT = "nat"').replace("N_RS = 3", "N_RS = 2"))
    proc, _port = start_controller([str(copy)], controller_env)
    try:
        (run_dir,) = run_root.iterdir()
        reply = request(run_dir / "of.director.sock", {"op": "ipvsadm", "argv": ["-L", "-n"]})
        assert f"UDP  {NAT_VIP}:7 rr" in reply["out"] and reply["out"].count("Masq") == 4
    finally:
        stop_controller(proc)
