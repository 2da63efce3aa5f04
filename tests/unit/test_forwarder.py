"""The per-frame decision (forwarder.py) through fake ports: DR, NAT, TUN, ICMP errors, ARP,
weights, deletion, persistence, counters and checksum completion.

Input frames are built with os-ken; outputs are re-parsed with os-ken and their checksums
verified by the RFC 1071 oracle in fakes.py. After every test each Lab's forwarder must
satisfy rx == forwarded + queued + ignored + dropped.
"""

import pytest
from os_ken.lib.packet import arp, ethernet, ipv4, tcp, udp

from testbed.director.conntable import ESTABLISHED, F_DROUTE, F_NOOUTPUT, SYN_RECV
from tests.unit import fakes
from tests.unit.fakes import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    FakePort,
    Lab,
    accounted,
    arp_frame,
    assert_valid_ipv4_frame,
    icmp_echo_frame,
    icmp_error_frame,
    ip,
    ip_packet,
    mac,
    parse,
    quoted_l4_ok,
    route,
    tcp_frame,
    udp_frame,
    with_partial_checksum,
)

# --- the DR layout: one port on the LAN; clients behind the firewall -----------------------
LAN, LAN_MAC, DIP = "d1-eth0", "02:00:00:00:00:02", "10.0.0.2"
FW, FW_MAC = "10.0.0.1", "02:00:00:00:00:01"
VIP, CIP, CIP2, CIP3 = "10.0.0.100", "10.0.1.11", "10.0.1.12", "10.0.1.13"
RS = {
    "10.0.0.11": "02:00:00:00:00:0b",
    "10.0.0.12": "02:00:00:00:00:0c",
    "10.0.0.13": "02:00:00:00:00:0d",
}
RS_BY_MAC = {mac(m): a for a, m in RS.items()}
TUN_RS = "10.0.2.21"  # another segment, reached through the firewall
DR_RULES = "".join(
    ["-A -t 10.0.0.100:80 -s rr\n"]
    + [f"-a -t 10.0.0.100:80 -r {a}:80 -g -w 1\n" for a in RS]
    + ["-A -u 10.0.0.100:7 -s rr\n"]
    + [f"-a -u 10.0.0.100:7 -r {a}:7 -g -w 1\n" for a in RS]
    + ["-A -t 10.0.0.100:443 -s rr\n", f"-a -t 10.0.0.100:443 -r {TUN_RS}:443 -i -w 1\n"]
)

# --- the NAT layout: an outer port with the clients, an inner one with the real servers -----
OUT, OUT_MAC, OUT_IP = "d1-eth0", "02:00:00:00:01:02", "10.0.1.2"
IN, IN_MAC, IN_IP = "d1-eth1", "02:00:00:00:02:02", "192.168.0.2"
NVIP, NCIP, NCIP_MAC, NCIP2, NCIP2_MAC = (
    "10.0.1.100",
    "10.0.1.11",
    "02:00:00:00:01:0b",
    "10.0.1.12",
    "02:00:00:00:01:0c",
)
NRS = {"192.168.0.11": "02:00:00:00:02:0b", "192.168.0.12": "02:00:00:00:02:0c"}
NRS_BY_MAC = {mac(m): a for a, m in NRS.items()}
NAT_RULES = (
    "-A -t 10.0.1.100:80 -s rr\n"
    "-a -t 10.0.1.100:80 -r 192.168.0.11:8080 -m -w 1\n"
    "-a -t 10.0.1.100:80 -r 192.168.0.12:8080 -m -w 1\n"
    "-A -u 10.0.1.100:7 -s rr\n"
    "-a -u 10.0.1.100:7 -r 192.168.0.11:7007 -m -w 1\n"
)


@pytest.fixture(autouse=True)
def _every_frame_accounted():
    fakes.LABS.clear()
    yield
    for lab in fakes.LABS:
        assert accounted(lab.fwd), lab.fwd.counters()


def dr_lab(*, learn: bool = True, rules: str = DR_RULES) -> Lab:
    lab = Lab(
        [FakePort(LAN, LAN_MAC, DIP)],
        [route("10.0.0.0/24", LAN), route("0.0.0.0/0", LAN, FW)],
        rules,
    )
    if learn:
        for addr, m in RS.items():
            lab.learn(addr, m)
        lab.learn(FW, FW_MAC)
    return lab


def nat_lab(*, learn: bool = True) -> Lab:
    lab = Lab(
        [FakePort(OUT, OUT_MAC, OUT_IP), FakePort(IN, IN_MAC, IN_IP)],
        [route("10.0.1.0/24", OUT), route("192.168.0.0/24", IN)],
        NAT_RULES,
    )
    if learn:
        for addr, m in NRS.items():
            lab.learn(addr, m)
        lab.learn(NCIP, NCIP_MAC)
        lab.learn(NCIP2, NCIP2_MAC)
    return lab


def dr_tcp(sport: int, bits: int = SYN, *, src: str = CIP, dport: int = 80, **kw) -> bytearray:
    return tcp_frame(src, VIP, sport, dport, bits, eth_src=FW_MAC, eth_dst=LAN_MAC, **kw)


def nat_in_tcp(sport: int, bits: int = SYN, *, src: str = NCIP, **kw) -> bytearray:
    src_mac = NCIP_MAC if src == NCIP else NCIP2_MAC
    return tcp_frame(src, NVIP, sport, 80, bits, eth_src=src_mac, eth_dst=OUT_MAC, **kw)


def nat_reply_tcp(
    rip: str, cport: int, bits: int = SYN | ACK, *, rport: int = 8080, dst: str = NCIP, **kw
) -> bytearray:
    return tcp_frame(rip, dst, rport, cport, bits, eth_src=NRS[rip], eth_dst=IN_MAC, **kw)


def one_frame(sent: dict, port: str) -> bytes:
    assert list(sent) == [port], sent
    assert len(sent[port]) == 1, sent
    return sent[port][0]


def same_but_link_and_ttl(out: bytes, frame: bytes, l3: int = 14) -> None:
    """DR changes the MACs, the TTL (one less) and the IP checksum: nothing else."""
    assert len(out) == len(frame)
    assert out[12 : l3 + 8] == frame[12 : l3 + 8]
    assert out[l3 + 8] == frame[l3 + 8] - 1
    assert out[l3 + 9] == frame[l3 + 9]
    assert out[l3 + 12 :] == frame[l3 + 12 :]


# --- DR ------------------------------------------------------------------------------------


def test_dr_syn_goes_to_the_scheduled_real_server_with_only_macs_and_ttl_changed():
    """A SYN to VIP:80 leaves on the LAN port to a real server's learnt MAC, from the port's
    MAC, TTL one less and the IP checksum right; addresses, ports and payload unchanged."""
    lab = dr_lab()
    frame = dr_tcp(40000, payload=b"hello")
    out = one_frame(lab.handle(frame, LAN), LAN)
    assert out[:6] in RS_BY_MAC
    assert out[6:12] == mac(LAN_MAC)
    same_but_link_and_ttl(out, frame)
    assert_valid_ipv4_frame(out)
    p = parse(out)
    iph, th = p.get_protocol(ipv4.ipv4), p.get_protocol(tcp.tcp)
    assert (iph.src, iph.dst, iph.ttl, th.src_port, th.dst_port) == (CIP, VIP, 63, 40000, 80)
    assert p.protocols[-1] == b"hello"
    assert lab.director.lookup_in(6, ip(CIP), 40000, ip(VIP), 80).daddr == ip(RS_BY_MAC[out[:6]])
    assert lab.fwd.forwarded == 1


def test_dr_round_robin_over_three_and_a_connection_stays_on_its_server():
    """rr spreads three SYNs over the three real servers and the fourth wraps round; every
    later packet of a connection follows its first."""
    lab = dr_lab()
    first = [one_frame(lab.handle(dr_tcp(1000 + i), LAN), LAN)[:6] for i in range(4)]
    assert len(set(first[:3])) == 3
    assert first[3] == first[0]
    for i in range(4):
        for bits, payload in ((ACK, b""), (PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"), (FIN | ACK, b"")):
            out = one_frame(lab.handle(dr_tcp(1000 + i, bits, payload=payload), LAN), LAN)
            assert out[:6] == first[i]
    assert lab.fwd.forwarded == 16


def test_dr_frame_waits_for_arp_and_goes_out_when_the_reply_comes():
    """Unresolved: the frame is queued and one ARP request goes out the route's port, from
    the port's MAC and address, for the real server; no second request within a second;
    the reply releases the queued frames in order with the right MACs."""
    lab = dr_lab(learn=False)
    syn = dr_tcp(40000)
    sent = lab.handle(syn, LAN, now=5.0)
    request = one_frame(sent, LAN)
    p = parse(request)
    eth, a = p.get_protocol(ethernet.ethernet), p.get_protocol(arp.arp)
    assert (eth.dst, eth.src, eth.ethertype) == ("ff:ff:ff:ff:ff:ff", LAN_MAC, 0x0806)
    assert (a.opcode, a.src_mac, a.src_ip, a.dst_mac) == (1, LAN_MAC, DIP, "00:00:00:00:00:00")
    target = a.dst_ip
    assert target in RS
    assert lab.fwd.queued == 1 and lab.fwd.forwarded == 0

    ack = dr_tcp(40000, ACK, payload=b"data")
    assert lab.handle(ack, LAN, now=5.5) == {}  # queued, and not asked again yet
    other = next(a for a in RS if a != target)
    assert lab.handle(arp_frame(2, RS[other], other, LAN_MAC, DIP), LAN, now=5.6) == {}

    released = lab.handle(arp_frame(2, RS[target], target, LAN_MAC, DIP), LAN, now=5.7)[LAN]
    assert len(released) == 2
    for out, frame in zip(released, (syn, ack), strict=True):
        assert out[:6] == mac(RS[target]) and out[6:12] == mac(LAN_MAC)
        same_but_link_and_ttl(out, frame)
        assert_valid_ipv4_frame(out)
    assert lab.fwd.queued == 2 and lab.fwd.ignored["arp"] == 2
    assert lab.fwd.counters()["arp_sent"] == 1
    out = one_frame(lab.handle(dr_tcp(40000, ACK), LAN, now=6.0), LAN)
    assert out[:6] == mac(RS[target])


def test_dr_arp_request_from_the_real_server_also_teaches_its_mac():
    """An ARP request from a hop we are waiting for resolves it as a reply would."""
    lab = dr_lab(learn=False)
    request = one_frame(lab.handle(dr_tcp(40000), LAN), LAN)
    target = parse(request).get_protocol(arp.arp).dst_ip
    asks = arp_frame(1, RS[target], target, "00:00:00:00:00:00", DIP, eth_dst="ff:ff:ff:ff:ff:ff")
    out = one_frame(lab.handle(asks, LAN), LAN)
    assert out[:6] == mac(RS[target])


@pytest.mark.parametrize("bits", [ACK, PSH | ACK, FIN | ACK, RST, SYN | ACK, SYN | RST, SYN | FIN])
def test_dr_tcp_without_connection_and_not_a_plain_syn_is_dropped(bits):
    """Only a SYN (without ACK, RST or FIN) makes a connection; the rest are dropped."""
    lab = dr_lab()
    assert lab.handle(dr_tcp(40000, bits), LAN) == {}
    assert lab.fwd.dropped == {"tcp-no-connection": 1}
    assert len(lab.director.conns) == 0


def test_udp_is_scheduled_on_any_datagram_and_the_flow_sticks():
    """A datagram to a UDP service makes a connection; the flow's later ones follow it."""
    lab = dr_lab()
    frame = udp_frame(CIP, VIP, 5353, 7, payload=b"echo me", eth_src=FW_MAC, eth_dst=LAN_MAC)
    out = one_frame(lab.handle(frame, LAN), LAN)
    assert out[:6] in RS_BY_MAC
    same_but_link_and_ttl(out, frame)
    assert_valid_ipv4_frame(out)
    for _ in range(3):
        assert one_frame(lab.handle(frame, LAN), LAN)[:6] == out[:6]
    assert len(lab.director.conns) == 1


def test_dr_keeps_a_vlan_tag_and_nat_keeps_ip_options():
    """A tag in the frame stays (the TTL is found past it); IP options survive NAT with
    the header checksum covering them."""
    lab = dr_lab()
    plain = dr_tcp(40000)
    tagged = bytearray(plain[:12] + b"\x81\x00\x00\x0a" + plain[12:])
    out = one_frame(lab.handle(tagged, LAN), LAN)
    assert out[12:16] == b"\x81\x00\x00\x0a"
    same_but_link_and_ttl(out, tagged, l3=18)
    assert_valid_ipv4_frame(out)

    nat = nat_lab()
    frame = nat_in_tcp(40000, options=b"\x07\x07\x04\x00\x00\x00\x00\x00", payload=b"opt")
    out = one_frame(nat.handle(frame, OUT), IN)
    pkt = assert_valid_ipv4_frame(out)
    assert pkt[0] == 0x47 and pkt[20:28] == b"\x07\x07\x04\x00\x00\x00\x00\x00"
    assert parse(out).get_protocol(tcp.tcp).dst_port == 8080


def test_frames_not_for_a_service_are_not_forwarded():
    """Other ports on the VIP are the kernel's; other addresses are no business of ours;
    protocols other than TCP, UDP and ICMP to the VIP are left alone; TTL 1 is dropped."""
    lab = dr_lab()
    assert lab.handle(dr_tcp(40000, dport=22), LAN) == {}
    assert (
        lab.handle(tcp_frame(CIP, "10.0.0.11", 40000, 80, eth_src=FW_MAC, eth_dst=LAN_MAC), LAN)
        == {}
    )
    assert lab.handle(tcp_frame(CIP, DIP, 40000, 80, eth_src=FW_MAC, eth_dst=LAN_MAC), LAN) == {}
    gre = bytearray(dr_tcp(40000))
    gre[14 + 9] = 47
    assert lab.handle(gre, LAN) == {}
    assert lab.handle(dr_tcp(40001, ttl=1), LAN) == {}
    assert lab.fwd.ignored == {
        "arp": 4,
        "no-service": 1,
        "not-for-a-service": 2,
        "unsupported-l4": 1,
    }
    assert lab.fwd.dropped == {"ttl-exceeded": 1}


# --- TUN -----------------------------------------------------------------------------------


def test_tun_sends_ip_in_ip_to_the_real_server_through_the_gateway():
    """-i: the packet, TTL one less, goes inside an IPv4 header (protocol 4) from the port's
    address to the real server, addressed to the gateway's MAC on the route."""
    lab = dr_lab()
    frame = dr_tcp(40000, dport=443, payload=b"tls")
    out = one_frame(lab.handle(frame, LAN), LAN)
    assert out[:6] == mac(FW_MAC) and out[6:12] == mac(LAN_MAC)
    outer = assert_valid_ipv4_frame(out)
    iph = parse(out).get_protocol(ipv4.ipv4)
    assert (iph.proto, iph.src, iph.dst, iph.ttl) == (4, DIP, TUN_RS, 63)
    assert iph.flags & 0b010  # DF copied from the inner header
    inner, sent_inner = outer[20:], ip_packet(frame)
    assert len(inner) == len(sent_inner)
    assert inner[8] == sent_inner[8] - 1
    assert inner[:8] == sent_inner[:8] and inner[9] == sent_inner[9]
    assert inner[12:] == sent_inner[12:]


def test_tun_packet_that_would_not_fit_the_mtu_is_dropped():
    """An inner packet over 1480 bytes would make an outer one over 1500: dropped."""
    lab = dr_lab()
    lab.handle(dr_tcp(40000, dport=443), LAN)
    big = dr_tcp(40000, ACK, dport=443, payload=bytes(1481 - 44))
    assert len(ip_packet(big)) == 1481
    assert lab.handle(big, LAN) == {}
    assert lab.fwd.dropped == {"tun-too-big": 1}


# --- NAT -----------------------------------------------------------------------------------


def test_nat_inbound_is_rewritten_to_the_real_server_and_routed_inside():
    """VIP:80 -> RIP:8080 with IP and TCP checksums right; sent out the inner port (the
    route's) to the real server's MAC; source, payload and the rest unchanged."""
    lab = nat_lab()
    frame = nat_in_tcp(40000, payload=b"GET /")
    out = one_frame(lab.handle(frame, OUT), IN)
    assert out[:6] in NRS_BY_MAC and out[6:12] == mac(IN_MAC)
    assert_valid_ipv4_frame(out)
    p = parse(out)
    iph, th = p.get_protocol(ipv4.ipv4), p.get_protocol(tcp.tcp)
    assert (iph.src, iph.dst, iph.ttl) == (NCIP, NRS_BY_MAC[out[:6]], 63)
    assert (th.src_port, th.dst_port, th.seq) == (40000, 8080, 1000)
    assert p.protocols[-1] == b"GET /"


@pytest.mark.parametrize("zero_checksum", [False, True])
def test_nat_udp_both_ways(zero_checksum):
    """UDP VIP:7 -> RIP:7007 and back; checksums right, and a zero (absent) one stays 0."""
    lab = nat_lab()
    frame = udp_frame(NCIP, NVIP, 5000, 7, payload=b"echo", eth_src=NCIP_MAC, eth_dst=OUT_MAC)
    if zero_checksum:
        frame[14 + 20 + 6 : 14 + 20 + 8] = b"\0\0"
    out = one_frame(lab.handle(frame, OUT), IN)
    assert out[:6] == mac(NRS["192.168.0.11"])
    assert_valid_ipv4_frame(out)
    uh = parse(out).get_protocol(udp.udp)
    assert (uh.src_port, uh.dst_port) == (5000, 7007)
    assert (uh.csum == 0) == zero_checksum

    reply = udp_frame(
        "192.168.0.11",
        NCIP,
        7007,
        5000,
        payload=b"echo",
        eth_src=NRS["192.168.0.11"],
        eth_dst=IN_MAC,
    )
    back = one_frame(lab.handle(reply, IN), OUT)
    assert back[:6] == mac(NCIP_MAC) and back[6:12] == mac(OUT_MAC)
    assert_valid_ipv4_frame(back)
    p = parse(back)
    assert (p.get_protocol(ipv4.ipv4).src, p.get_protocol(udp.udp).src_port) == (NVIP, 7)


def test_nat_reply_is_matched_and_rewritten_to_the_vip_for_the_client():
    """RIP:8080 -> CIP:cport becomes VIP:80 -> CIP:cport, out the outer port to the client."""
    lab = nat_lab()
    rip = NRS_BY_MAC[one_frame(lab.handle(nat_in_tcp(40000), OUT), IN)[:6]]
    out = one_frame(lab.handle(nat_reply_tcp(rip, 40000, payload=b"HTTP/1.0 200"), IN), OUT)
    assert out[:6] == mac(NCIP_MAC) and out[6:12] == mac(OUT_MAC)
    assert_valid_ipv4_frame(out)
    p = parse(out)
    iph, th = p.get_protocol(ipv4.ipv4), p.get_protocol(tcp.tcp)
    assert (iph.src, iph.dst, th.src_port, th.dst_port) == (NVIP, NCIP, 80, 40000)
    assert p.protocols[-1] == b"HTTP/1.0 200"
    conn = lab.director.lookup_in(6, ip(NCIP), 40000, ip(NVIP), 80)
    assert conn.state == SYN_RECV


def test_nat_reply_routed_to_an_unresolved_client_waits_for_arp_on_the_outer_port():
    """The reply's next hop is the client, asked for on the outer port with its address."""
    lab = nat_lab(learn=False)
    for addr, m in NRS.items():
        lab.learn(addr, m)
    rip = NRS_BY_MAC[one_frame(lab.handle(nat_in_tcp(40000), OUT), IN)[:6]]
    request = one_frame(lab.handle(nat_reply_tcp(rip, 40000), IN), OUT)
    a = parse(request).get_protocol(arp.arp)
    assert (a.opcode, a.src_mac, a.src_ip, a.dst_ip) == (1, OUT_MAC, OUT_IP, NCIP)
    out = one_frame(lab.handle(arp_frame(2, NCIP_MAC, NCIP, OUT_MAC, OUT_IP), OUT), OUT)
    assert out[:6] == mac(NCIP_MAC)
    assert parse(out).get_protocol(ipv4.ipv4).src == NVIP
    assert_valid_ipv4_frame(out)


def test_nat_reply_without_a_connection_is_not_relayed():
    """A real server's packet matching no connection (other client port, other source port,
    other client, UDP without a flow) is ignored: the director is no open relay."""
    lab = nat_lab()
    rip = NRS_BY_MAC[one_frame(lab.handle(nat_in_tcp(40000), OUT), IN)[:6]]
    stray = [
        nat_reply_tcp(rip, 40001),
        nat_reply_tcp(rip, 40000, rport=9999),
        nat_reply_tcp(rip, 40000, dst=NCIP2),
        udp_frame(rip, NCIP, 7007, 5000, eth_src=NRS[rip], eth_dst=IN_MAC),
        tcp_frame(rip, "8.8.8.8", 8080, 53, eth_src=NRS[rip], eth_dst=IN_MAC),
    ]
    for frame in stray:
        assert lab.handle(frame, IN) == {}
    assert lab.fwd.ignored["not-a-connection"] == len(stray)


def test_client_traffic_to_a_real_server_address_is_not_forwarded():
    """Clients reach real servers only through the VIP."""
    lab = nat_lab()
    for dport in (8080, 22):
        frame = tcp_frame(NCIP, "192.168.0.11", 40000, dport, eth_src=NCIP_MAC, eth_dst=OUT_MAC)
        assert lab.handle(frame, OUT) == {}
    assert lab.fwd.ignored["not-for-a-service"] == 2
    assert len(lab.director.conns) == 0


def test_packets_from_a_real_server_matching_a_dr_connection_are_not_nat_replies():
    """A real server that is DR for one service and NAT for another: its own packet from
    RIP:80 to a client with a DR connection is not a reply to translate (IPVS NATs only
    masqueraded connections), while the NAT service's replies still are."""
    rules = (
        "-A -t 10.0.0.100:80 -s rr\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1\n"
        "-A -t 10.0.0.100:8080 -s rr\n-a -t 10.0.0.100:8080 -r 10.0.0.11:80 -m -w 1\n"
    )
    lab = dr_lab(rules=rules)
    assert one_frame(lab.handle(dr_tcp(4000), LAN), LAN)[:6] == mac(RS["10.0.0.11"])
    own = tcp_frame("10.0.0.11", CIP, 80, 4000, SYN | ACK, eth_src=RS["10.0.0.11"], eth_dst=LAN_MAC)
    assert lab.handle(own, LAN) == {}
    assert lab.fwd.ignored["not-a-connection"] == 1
    conn = lab.director.lookup_in(6, ip(CIP), 4000, ip(VIP), 80)
    assert conn.flags & F_NOOUTPUT
    quote = tcp_frame(CIP, "10.0.0.11", 4000, 80, eth_src=FW_MAC, eth_dst=RS["10.0.0.11"])
    error = icmp_error_frame(
        "10.0.0.11", CIP, ip_packet(quote)[:28], eth_src=RS["10.0.0.11"], eth_dst=LAN_MAC
    )
    assert lab.handle(error, LAN) == {}
    assert lab.fwd.ignored["icmp-no-connection"] == 1

    assert one_frame(lab.handle(dr_tcp(4001, dport=8080), LAN), LAN)[:6] == mac(RS["10.0.0.11"])
    reply = tcp_frame(
        "10.0.0.11", CIP, 80, 4001, SYN | ACK, eth_src=RS["10.0.0.11"], eth_dst=LAN_MAC
    )
    out = one_frame(lab.handle(reply, LAN), LAN)
    assert out[:6] == mac(FW_MAC)
    th = parse(out).get_protocol(tcp.tcp)
    assert (parse(out).get_protocol(ipv4.ipv4).src, th.src_port) == (VIP, 8080)


# --- ICMP ----------------------------------------------------------------------------------


def nat_udp_flow(lab: Lab) -> tuple[bytes, bytes, bytes]:
    """A NAT UDP exchange; returns the client's datagram as the real server got it, the
    real server's reply as it sent it, and that reply as the client got it."""
    request = udp_frame(NCIP, NVIP, 5000, 7, payload=b"q" * 11, eth_src=NCIP_MAC, eth_dst=OUT_MAC)
    at_server = one_frame(lab.handle(request, OUT), IN)
    reply = udp_frame(
        "192.168.0.11",
        NCIP,
        7007,
        5000,
        payload=b"r" * 13,
        eth_src=NRS["192.168.0.11"],
        eth_dst=IN_MAC,
    )
    at_client = one_frame(lab.handle(reply, IN), OUT)
    return at_server, reply, at_client


def same_but_ttl_and_checksum(a: bytes, b: bytes) -> None:
    assert a[:8] == b[:8] and a[9] == b[9] and a[12:] == b[12:]


def test_icmp_error_from_the_client_side_is_translated_toward_the_real_server():
    """An error to the VIP quoting our reply (VIP:7 -> CIP) goes to the real server with
    the outer destination RIP and the quote as the real server sent it (RIP:7007); every
    checksum, the quoted header's and the quoted UDP one's included, verifies."""
    lab = nat_lab()
    _, reply, at_client = nat_udp_flow(lab)
    error = icmp_error_frame(NCIP, NVIP, ip_packet(at_client), eth_src=NCIP_MAC, eth_dst=OUT_MAC)
    out = one_frame(lab.handle(error, OUT), IN)
    assert out[:6] == mac(NRS["192.168.0.11"]) and out[6:12] == mac(IN_MAC)
    pkt = assert_valid_ipv4_frame(out)
    iph = parse(out).get_protocol(ipv4.ipv4)
    assert (iph.src, iph.dst, iph.ttl) == (NCIP, "192.168.0.11", 63)
    quoted = pkt[28:]
    assert quoted_l4_ok(pkt)
    same_but_ttl_and_checksum(quoted, ip_packet(reply))


def test_icmp_error_from_a_real_server_is_translated_toward_the_client():
    """An error from the real server quoting the client's datagram (CIP -> RIP:7007) goes
    to the client from the VIP, quoting CIP -> VIP:7 as the client sent it."""
    lab = nat_lab()
    at_server, _, _ = nat_udp_flow(lab)
    error = icmp_error_frame(
        "192.168.0.11", NCIP, ip_packet(at_server), eth_src=NRS["192.168.0.11"], eth_dst=IN_MAC
    )
    out = one_frame(lab.handle(error, IN), OUT)
    assert out[:6] == mac(NCIP_MAC) and out[6:12] == mac(OUT_MAC)
    pkt = assert_valid_ipv4_frame(out)
    iph = parse(out).get_protocol(ipv4.ipv4)
    assert (iph.src, iph.dst) == (NVIP, NCIP)
    assert quoted_l4_ok(pkt)
    request = udp_frame(NCIP, NVIP, 5000, 7, payload=b"q" * 11, eth_src=NCIP_MAC, eth_dst=OUT_MAC)
    same_but_ttl_and_checksum(pkt[28:], ip_packet(request))
    assert lab.stats_rows()["192.168.0.11:7007"][2] == 2  # the reply and the error went out


def test_icmp_error_quoting_only_8_bytes_of_tcp_is_translated():
    """RFC 792's minimum quote (header + 8 bytes) of a TCP segment: ports translated, the
    quoted header and the ICMP checksum right."""
    lab = nat_lab()
    at_server = one_frame(lab.handle(nat_in_tcp(40000, payload=b"x" * 40), OUT), IN)
    rip = NRS_BY_MAC[at_server[:6]]
    quote = ip_packet(at_server)[:28]
    error = icmp_error_frame(rip, NCIP, quote, type_=3, code=4, eth_src=NRS[rip], eth_dst=IN_MAC)
    out = one_frame(lab.handle(error, IN), OUT)
    pkt = assert_valid_ipv4_frame(out)
    quoted = pkt[28:]
    assert quoted[16:20] == bytes(map(int, NVIP.split(".")))
    assert int.from_bytes(quoted[22:24], "big") == 80
    assert int.from_bytes(quoted[20:22], "big") == 40000


def test_icmp_error_about_a_dr_connection_goes_to_its_real_server_unchanged():
    """DR: an error from a router quoting the real server's reply (VIP:80 -> CIP) follows
    the connection to its real server; only MACs and TTL change."""
    lab = dr_lab()
    rs_mac = one_frame(lab.handle(dr_tcp(40000), LAN), LAN)[:6]
    reply = tcp_frame(VIP, CIP, 80, 40000, SYN | ACK, eth_src=RS["10.0.0.11"], eth_dst=FW_MAC)
    error = icmp_error_frame(
        FW, VIP, ip_packet(reply)[:28], code=4, eth_src=FW_MAC, eth_dst=LAN_MAC
    )
    out = one_frame(lab.handle(error, LAN), LAN)
    assert out[:6] == rs_mac
    same_but_link_and_ttl(out, error)
    assert_valid_ipv4_frame(out)


def test_icmp_to_the_vip_that_is_not_about_a_connection_is_left_to_the_kernel():
    """Echo requests to the VIP are the kernel's to answer; errors quoting no connection
    are ignored."""
    lab = nat_lab()
    assert lab.handle(icmp_echo_frame(NCIP, NVIP, eth_src=NCIP_MAC, eth_dst=OUT_MAC), OUT) == {}
    stray = udp_frame(NVIP, NCIP, 7, 5999, eth_src=OUT_MAC, eth_dst=NCIP_MAC)
    error = icmp_error_frame(NCIP, NVIP, ip_packet(stray), eth_src=NCIP_MAC, eth_dst=OUT_MAC)
    assert lab.handle(error, OUT) == {}
    rs_error = icmp_error_frame(
        "192.168.0.11",
        NCIP,
        ip_packet(udp_frame(NCIP, "192.168.0.11", 5999, 7007, eth_src=OUT_MAC, eth_dst=IN_MAC)),
        eth_src=NRS["192.168.0.11"],
        eth_dst=IN_MAC,
    )
    assert lab.handle(rs_error, IN) == {}
    echo_reply = icmp_echo_frame("192.168.0.11", NCIP, eth_src=NRS["192.168.0.11"], eth_dst=IN_MAC)
    assert lab.handle(echo_reply, IN) == {}
    assert lab.fwd.ignored["icmp-to-vip"] == 1
    assert lab.fwd.ignored["icmp-no-connection"] == 2
    assert lab.fwd.ignored["not-a-connection"] == 1


# --- weights, deletion, no server, persistence ---------------------------------------------


def test_weight_0_quiesces_a_real_server():
    """After -e -w 0 a connection already on the real server continues there, and new
    connections go to the others."""
    lab = dr_lab()
    quiesced = one_frame(lab.handle(dr_tcp(1000), LAN), LAN)[:6]
    lab.ipvsadm("-e", "-t", f"{VIP}:80", "-r", f"{RS_BY_MAC[quiesced]}:80", "-g", "-w", "0")
    assert one_frame(lab.handle(dr_tcp(1000, ACK), LAN), LAN)[:6] == quiesced
    new = {one_frame(lab.handle(dr_tcp(2000 + i), LAN), LAN)[:6] for i in range(6)}
    assert quiesced not in new and len(new) == 2


def test_deleted_real_server_connections_are_dropped():
    """After -d, packets of the real server's connections are dropped ("real-server-deleted")
    as IPVS does by default; other connections continue and new ones avoid it."""
    lab = dr_lab()
    servers = [one_frame(lab.handle(dr_tcp(1000 + i), LAN), LAN)[:6] for i in range(3)]
    gone = RS_BY_MAC[servers[0]]
    lab.ipvsadm("-d", "-t", f"{VIP}:80", "-r", f"{gone}:80")
    assert lab.handle(dr_tcp(1000, ACK), LAN) == {}
    assert lab.fwd.dropped == {"real-server-deleted": 1}
    for i in (1, 2):
        assert one_frame(lab.handle(dr_tcp(1000 + i, ACK), LAN), LAN)[:6] == servers[i]
    new = {one_frame(lab.handle(dr_tcp(3000 + i), LAN), LAN)[:6] for i in range(4)}
    assert servers[0] not in new


def test_deleted_nat_real_server_replies_still_pass_but_its_client_packets_do_not():
    """IPVS keeps a deleted real server's connections (the trash): their replies are still
    translated, packets toward it are dropped."""
    lab = nat_lab()
    rip = NRS_BY_MAC[one_frame(lab.handle(nat_in_tcp(40000), OUT), IN)[:6]]
    lab.ipvsadm("-d", "-t", f"{NVIP}:80", "-r", f"{rip}:8080")
    assert lab.handle(nat_in_tcp(40000, ACK), OUT) == {}
    assert lab.fwd.dropped["real-server-deleted"] == 1
    out = one_frame(lab.handle(nat_reply_tcp(rip, 40000), IN), OUT)
    assert parse(out).get_protocol(ipv4.ipv4).src == NVIP


def test_replies_passing_while_a_real_server_is_deleted_are_not_counted():
    """As ip_vs_out_stats: only an available real server counts; a real server added back
    from the trash does not show what passed while it was deleted."""
    lab = nat_lab()
    rip = NRS_BY_MAC[one_frame(lab.handle(nat_in_tcp(40000), OUT), IN)[:6]]
    lab.ipvsadm("-d", "-t", f"{NVIP}:80", "-r", f"{rip}:8080")
    service_before = lab.stats_rows()[f"TCP {NVIP}:80"]
    one_frame(lab.handle(nat_reply_tcp(rip, 40000), IN), OUT)
    lab.ipvsadm("-a", "-t", f"{NVIP}:80", "-r", f"{rip}:8080", "-m")
    rows = lab.stats_rows()
    assert rows[f"{rip}:8080"] == [0, 0, 0, 0, 0]
    assert rows[f"TCP {NVIP}:80"] == service_before


def test_no_usable_real_server_drops_the_packet():
    """A service without real servers, or with all at weight 0: "no-real-server"."""
    lab = dr_lab()
    lab.ipvsadm("-A", "-t", f"{VIP}:8080", "-s", "rr")
    assert lab.handle(dr_tcp(1000, dport=8080), LAN) == {}
    for addr in RS:
        lab.ipvsadm("-e", "-t", f"{VIP}:80", "-r", f"{addr}:80", "-g", "-w", "0")
    assert lab.handle(dr_tcp(1001), LAN) == {}
    assert lab.fwd.dropped == {"no-real-server": 2}
    assert lab.director.drops["no_dest"] == 2


def test_persistence_keeps_a_client_on_one_real_server():
    """-p: every connection of a client goes where its first went; other clients are
    scheduled (rr) as usual."""
    lab = dr_lab()
    lab.ipvsadm("-E", "-t", f"{VIP}:80", "-s", "rr", "-p", "300")
    by_client = {}
    for client in (CIP, CIP2, CIP3):
        seen = {
            one_frame(lab.handle(dr_tcp(2000 + i, src=client), LAN, now=1.0 + i), LAN)[:6]
            for i in range(5)
        }
        assert len(seen) == 1
        by_client[client] = seen.pop()
    assert len(set(by_client.values())) == 3
    again = one_frame(lab.handle(dr_tcp(3000, src=CIP), LAN, now=200.0), LAN)[:6]
    assert again == by_client[CIP]


# --- counters ------------------------------------------------------------------------------


def test_dr_counters_as_ipvsadm_stats_shows_them():
    """DR: InPkts/InBytes (IP lengths) on the chosen real server and its service; OutPkts
    and OutBytes stay 0 (replies bypass the director)."""
    lab = dr_lab()
    frames = [dr_tcp(1000), dr_tcp(1000, ACK), dr_tcp(1000, PSH | ACK, payload=b"x" * 100)]
    rs = RS_BY_MAC[one_frame(lab.handle(frames[0], LAN), LAN)[:6]]
    for frame in frames[1:]:
        lab.handle(frame, LAN)
    size = sum(len(ip_packet(f)) for f in frames)
    rows = lab.stats_rows()
    assert rows[f"{rs}:80"] == [1, 3, 0, size, 0]
    assert rows[f"TCP {VIP}:80"] == [1, 3, 0, size, 0]
    assert all(rows[f"{a}:80"] == [0] * 5 for a in RS if a != rs)


def test_nat_counters_count_both_directions():
    """NAT: InPkts/InBytes for client packets, OutPkts/OutBytes for translated replies."""
    lab = nat_lab()
    ins = [nat_in_tcp(1000), nat_in_tcp(1000, ACK), nat_in_tcp(1000, PSH | ACK, payload=b"G")]
    rip = NRS_BY_MAC[one_frame(lab.handle(ins[0], OUT), IN)[:6]]
    outs = [nat_reply_tcp(rip, 1000), nat_reply_tcp(rip, 1000, PSH | ACK, payload=b"x" * 300)]
    lab.handle(outs[0], IN)
    lab.handle(ins[1], OUT)
    lab.handle(ins[2], OUT)
    lab.handle(outs[1], IN)
    in_bytes = sum(len(ip_packet(f)) for f in ins)
    out_bytes = sum(len(ip_packet(f)) for f in outs)
    assert lab.stats_rows()[f"{rip}:8080"] == [1, 3, 2, in_bytes, out_bytes]
    conn = lab.director.lookup_in(6, ip(NCIP), 1000, ip(NVIP), 80)
    assert conn.state == ESTABLISHED


# --- checksum completion -------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_partial_checksum_is_completed_before_nat(proto):
    """A frame whose TCP/UDP checksum field holds the pseudo-header sum (offload pending)
    leaves NAT, both ways, with a finished, right checksum."""
    lab = nat_lab()
    if proto == "tcp":
        frame = nat_in_tcp(1000, payload=b"abc")
    else:
        frame = udp_frame(NCIP, NVIP, 5000, 7, payload=b"abcde", eth_src=NCIP_MAC, eth_dst=OUT_MAC)
    partial = with_partial_checksum(bytearray(frame))
    assert partial != frame
    out = one_frame(lab.handle(partial, OUT, csum_partial=True), IN)
    assert_valid_ipv4_frame(out)
    rip = NRS_BY_MAC[out[:6]]
    if proto == "tcp":
        reply = nat_reply_tcp(rip, 1000, payload=b"response")
    else:
        reply = udp_frame(
            rip, NCIP, 7007, 5000, payload=b"abcdef", eth_src=NRS[rip], eth_dst=IN_MAC
        )
    back = one_frame(lab.handle(with_partial_checksum(reply), IN, csum_partial=True), OUT)
    assert_valid_ipv4_frame(back)


def test_partial_checksum_is_completed_for_dr_too():
    """DR sends the frame on the wire as is: a pending checksum must be finished first."""
    lab = dr_lab()
    out = one_frame(
        lab.handle(with_partial_checksum(dr_tcp(1000, payload=b"z")), LAN, csum_partial=True), LAN
    )
    assert_valid_ipv4_frame(out)


# --- connections the forwarder did not make ------------------------------------------------


def test_synced_connection_without_a_local_real_server_is_forwarded():
    """A connection synced from the master whose real server this director does not have
    (dest None) is forwarded to its address, as IPVS does, and nothing raises."""
    lab = dr_lab()
    lab.learn("10.0.0.50", "02:00:00:00:00:32")
    record = {
        "proto": 6,
        "caddr": ip(CIP),
        "cport": 3000,
        "vaddr": ip(VIP),
        "vport": 80,
        "daddr": ip("10.0.0.50"),
        "dport": 80,
        "state": ESTABLISHED,
        "flags": F_DROUTE,
        "timeout_s": 900,
    }
    conn = lab.director.sync_in(record, now=1.0)
    assert conn.dest is None
    out = one_frame(lab.handle(dr_tcp(3000, ACK), LAN), LAN)
    assert out[:6] == mac("02:00:00:00:00:32")
    assert not lab.fwd.dropped


def test_accounting_holds_over_a_mixed_sequence():
    """Every frame of a long mixed run ends in exactly one outcome."""
    lab = nat_lab(learn=False)
    now = 0.0
    for i in range(200):
        now += 0.3
        kind = i % 7
        if kind == 0:
            lab.handle(nat_in_tcp(10000 + i), OUT, now)
        elif kind == 1:
            lab.handle(nat_in_tcp(10000 + i - 1, ACK), OUT, now)
        elif kind == 2:
            lab.handle(nat_reply_tcp("192.168.0.11", 10000 + i - 2), IN, now)
        elif kind == 3:
            addr = list(NRS)[i % 2]
            lab.handle(arp_frame(2, NRS[addr], addr, IN_MAC, IN_IP), IN, now)
        elif kind == 4:
            lab.handle(arp_frame(2, NCIP_MAC, NCIP, OUT_MAC, OUT_IP), OUT, now)
        elif kind == 5:
            lab.handle(bytes(i % 60), OUT, now)
        else:
            lab.handle(icmp_echo_frame(NCIP, NVIP, eth_src=NCIP_MAC, eth_dst=OUT_MAC), OUT, now)
        assert accounted(lab.fwd)
    assert lab.fwd.rx == 200
    assert lab.fwd.forwarded and lab.fwd.queued and lab.fwd.ignored and lab.fwd.dropped


def test_a_new_syn_on_a_closing_connection_is_scheduled_afresh():
    """conn_reuse_mode=1: a client that reuses its port while the director still holds the old
    connection in TIME_WAIT/CLOSE gets a new connection (counted, rescheduled), not the old
    real server by accident. In DR the director sees only the client's side: FIN then RST
    takes the entry to CLOSE."""
    lab = dr_lab()
    first = one_frame(lab.handle(dr_tcp(5555), LAN), LAN)[:6]
    lab.handle(dr_tcp(5555, ACK), LAN)
    lab.handle(dr_tcp(5555, RST), LAN)

    def conns() -> int:
        return sum(d.stats.conns for svc in lab.director.services() for d in svc.dests)

    conns_before = conns()
    again = one_frame(lab.handle(dr_tcp(5555), LAN, now=2.0), LAN)[:6]
    assert conns() == conns_before + 1
    assert again != first  # rr moved on to the next real server
    assert len([c for c in lab.director.conns if not c.is_template]) == 1


def test_a_syn_on_an_established_connection_is_not_rescheduled():
    lab = dr_lab()
    first = one_frame(lab.handle(dr_tcp(6666), LAN), LAN)[:6]
    lab.handle(dr_tcp(6666, ACK), LAN)
    assert one_frame(lab.handle(dr_tcp(6666), LAN), LAN)[:6] == first


# --- the table's limit and defences on the packet path -----------------------------------------


def test_at_the_table_limit_a_new_connection_is_dropped_as_table_full():
    lab = dr_lab()
    lab.director.defense.set("drop_entry", 0)
    lab.director.defense.set("conn_max", 3)
    for sport in range(5000, 5003):
        assert "d1-eth0" in lab.handle(dr_tcp(sport), "d1-eth0")
    assert lab.handle(dr_tcp(5003), "d1-eth0") == {}
    assert lab.fwd.dropped["table-full"] == 1 and len(lab.director.conns) == 3
    assert "d1-eth0" in lab.handle(dr_tcp(5000, ACK), "d1-eth0")  # existing ones still pass


def test_drop_packet_drops_new_connections_not_established_ones():
    lab = dr_lab()
    assert "d1-eth0" in lab.handle(dr_tcp(5000), "d1-eth0")
    defense = lab.director.defense
    defense.set("drop_packet", 3)
    defense.set("am_droprate", 1)
    defense.update(len(lab.director.conns))  # the once-a-second timer
    assert lab.handle(dr_tcp(5001), "d1-eth0") == {}
    assert lab.fwd.dropped["drop-packet"] == 1 and defense.drops["drop_packet"] == 1
    assert "d1-eth0" in lab.handle(dr_tcp(5000, ACK), "d1-eth0")


def test_client_packets_are_counted_on_the_connection_without_sync():
    """drop_entry spares busy connections by their packet count (in_pkts), which the
    kernel keeps whether or not sync runs."""
    lab = dr_lab()
    lab.handle(dr_tcp(5000), "d1-eth0")
    lab.handle(dr_tcp(5000, ACK), "d1-eth0")
    lab.handle(dr_tcp(5000, ACK), "d1-eth0")
    conn = lab.director.lookup_in(6, ip(CIP), 5000, ip(VIP), 80)
    assert conn.in_pkts == 3
