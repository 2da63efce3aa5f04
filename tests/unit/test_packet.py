"""Parsers and rewrites of testbed.director.packet, checked against os-ken's packet library.

os-ken builds the input frames and, with the addresses and ports the rewrite should have
produced, the expected frames, computing every checksum itself; a rewrite is right when its
output equals that expectation byte for byte. Malformed headers are made with struct.
"""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.lib.packet import arp, ethernet, icmp, ipv4, packet, tcp, udp, vlan

from testbed.director.packet import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    IGNORED,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MALFORMED,
    Drop,
    arp_reply,
    arp_request,
    complete_l4_checksum,
    decrement_ttl,
    dnat,
    gratuitous_arp,
    icmp_embedded_flow,
    icmp_error_dnat,
    icmp_error_snat,
    ip_to_int,
    ip_to_str,
    ipip_encapsulate,
    mac_to_bytes,
    mac_to_str,
    parse_arp,
    parse_icmp,
    parse_ipv4,
    parse_l3,
    parse_ports,
    set_macs,
    snat,
    verify_ipv4_checksum,
)
from tests.unit.test_checksum import ref_sum

CLIENT_MAC, DIRECTOR_MAC, SERVER_MAC = "02:00:00:00:01:0b", "02:00:00:00:01:02", "02:00:00:00:00:0b"
CIP, VIP, RIP, ROUTER = "10.0.1.11", "10.0.1.100", "192.168.0.11", "10.0.1.1"
CPORT, VPORT, RPORT = 40000, 80, 8080
OPTIONS = b"\x07\x07\x04\x00\x00\x00\x00\x00"  # record route with one empty slot, then EOL
# (tpid, vid) tags outermost first, as parse_l3 meets them.
VLANS = {"untagged": [], "dot1q": [(0x8100, 10)], "qinq": [(0x88A8, 20), (0x8100, 10)]}


def ip(text: str) -> int:
    return ip_to_int(text)


def build(
    src: str,
    dst: str,
    l4,
    payload: bytes = b"some payload",
    *,
    proto: int | None = None,
    tags=(),
    options: bytes = b"",
    ttl: int = 64,
    tos: int = 0,
    flags: int = 0,
    ident: int = 0x1234,
    eth_dst: str = DIRECTOR_MAC,
    eth_src: str = CLIENT_MAC,
) -> bytearray:
    """An Ethernet frame made by os-ken; l4 is an os-ken header object or None."""
    p = packet.Packet()
    types = [tpid for tpid, _ in tags] + [ETH_P_IP]
    p.add_protocol(ethernet.ethernet(dst=eth_dst, src=eth_src, ethertype=types[0]))
    for (tpid, vid), inner in zip(tags, types[1:], strict=True):
        tag = vlan.svlan if tpid == 0x88A8 else vlan.vlan
        p.add_protocol(tag(vid=vid, ethertype=inner))
    if proto is None:
        proto = {tcp.tcp: 6, udp.udp: 17, icmp.icmp: 1}[type(l4)]
    p.add_protocol(
        ipv4.ipv4(
            src=src,
            dst=dst,
            proto=proto,
            ttl=ttl,
            tos=tos,
            flags=flags,
            identification=ident,
            header_length=5 + len(options) // 4,
            option=options or None,
        )
    )
    if l4 is not None:
        p.add_protocol(l4)
    p.add_protocol(payload)
    p.serialize()
    return bytearray(p.data)


def tcp_frame(src, dst, sport, dport, **kw) -> bytearray:
    header = tcp.tcp(
        src_port=sport,
        dst_port=dport,
        seq=0x01020304,
        ack=0x0A0B0C0D,
        bits=0x18,
        window_size=512,
        option=[tcp.TCPOptionMaximumSegmentSize(max_seg_size=1460), tcp.TCPOptionNoOperation()],
    )
    return build(src, dst, header, **kw)


def udp_frame(src, dst, sport, dport, **kw) -> bytearray:
    return build(src, dst, udp.udp(src_port=sport, dst_port=dport), **kw)


def l4_frame(proto, src, dst, sport, dport, **kw) -> bytearray:
    return (tcp_frame if proto == IPPROTO_TCP else udp_frame)(src, dst, sport, dport, **kw)


def offsets(frame):
    """(l3, l4, ip_end, proto) of a frame the parsers must accept."""
    l3, ethertype = parse_l3(frame)
    assert ethertype == ETH_P_IP
    proto, _, _, l4, ip_end = parse_ipv4(frame, l3)
    return l3, l4, ip_end, proto


def zero_udp_checksum(frame: bytearray) -> bytearray:
    l3, l4, _, proto = offsets(frame)
    assert proto == IPPROTO_UDP
    frame[l4 + 6 : l4 + 8] = b"\0\0"
    return frame


def l4_sum_ok(frame) -> bool:
    """TCP/UDP checksum verification written out independently, via the RFC 1071 loop."""
    l3, l4, ip_end, proto = offsets(frame)
    pseudo = frame[l3 + 12 : l3 + 20] + bytes([0, proto]) + (ip_end - l4).to_bytes(2, "big")
    return ref_sum(bytes(pseudo) + bytes(frame[l4:ip_end])) == 0xFFFF


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VLANS)
def test_parse_l3_ipv4_and_vlan_tags(name):
    frame = udp_frame(CIP, VIP, CPORT, VPORT, tags=VLANS[name])
    assert parse_l3(frame) == (14 + 4 * len(VLANS[name]), ETH_P_IP)


def test_parse_l3_arp():
    assert parse_l3(arp_request(mac_to_bytes(CLIENT_MAC), ip(CIP), ip(VIP))) == (14, ETH_P_ARP)


def test_parse_l3_reasons():
    ipv6 = bytes(12) + b"\x86\xdd" + bytes(40)
    assert parse_l3(ipv6) is Drop.NOT_IPV4
    assert parse_l3(bytes(12) + b"\x81\x00\x00\x0a\x86\xdd" + bytes(40)) is Drop.NOT_IPV4
    assert parse_l3(bytes(13)) is Drop.SHORT_FRAME
    assert parse_l3(b"") is Drop.SHORT_FRAME
    assert parse_l3(bytes(12) + b"\x81\x00\x00\x0a\x08") is Drop.BAD_VLAN  # cut in the tag
    three_tags = bytes(12) + b"\x88\xa8\x00\x01\x81\x00\x00\x02\x81\x00\x00\x03\x08\x00"
    assert parse_l3(three_tags + bytes(20)) is Drop.BAD_VLAN


@pytest.mark.parametrize("name", VLANS)
@pytest.mark.parametrize("options", [b"", OPTIONS])
def test_parse_ipv4_matches_os_ken(name, options):
    frame = tcp_frame(CIP, VIP, CPORT, VPORT, tags=VLANS[name], options=options)
    l3, _ = parse_l3(frame)
    ref = packet.Packet(bytes(frame)).get_protocol(ipv4.ipv4)
    proto, src, dst, l4, ip_end = parse_ipv4(frame, l3)
    assert (proto, src, dst) == (6, ip(ref.src), ip(ref.dst))
    assert l4 == l3 + 4 * ref.header_length
    assert ip_end == l3 + ref.total_length
    assert ip_end <= len(frame)
    assert verify_ipv4_checksum(frame, l3, l4)


def test_parse_ipv4_excludes_link_padding():
    frame = udp_frame(CIP, VIP, CPORT, VPORT, payload=b"x")  # os-ken pads to 60 bytes
    assert len(frame) == 60
    _, _, ip_end, _ = offsets(frame)
    assert ip_end == 14 + 20 + 8 + 1


def ipv4_header(
    *, ver_ihl=0x45, total_len=40, flags_frag=0, proto=6, options=b"", src=CIP, dst=VIP
) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        ver_ihl,
        0,
        total_len,
        1,
        flags_frag,
        64,
        proto,
        0,
        bytes(map(int, src.split("."))),
        bytes(map(int, dst.split("."))),
    )
    return header + options


def eth(l3: bytes, ethertype: int = ETH_P_IP) -> bytearray:
    return bytearray(b"\x02" * 6 + b"\x04" * 6 + ethertype.to_bytes(2, "big") + l3)


@pytest.mark.parametrize(
    ("l3", "reason"),
    [
        (ipv4_header()[:19], Drop.SHORT_IP),
        (ipv4_header(ver_ihl=0x65) + bytes(20), Drop.BAD_IP_VERSION),
        (ipv4_header(ver_ihl=0x44) + bytes(20), Drop.BAD_IHL),
        (ipv4_header(ver_ihl=0x4F, total_len=60) + bytes(20), Drop.BAD_IHL),  # past the frame
        (ipv4_header(total_len=41) + bytes(20), Drop.BAD_TOTAL_LENGTH),  # past the frame
        (ipv4_header(total_len=19) + bytes(20), Drop.BAD_TOTAL_LENGTH),  # below IHL
        (
            ipv4_header(ver_ihl=0x46, total_len=22, options=bytes(4)) + bytes(20),
            Drop.BAD_TOTAL_LENGTH,
        ),
        (ipv4_header(flags_frag=0x2000) + bytes(20), Drop.FRAGMENT),  # MF
        (ipv4_header(flags_frag=0x0001) + bytes(20), Drop.FRAGMENT),  # offset 8
        (ipv4_header(flags_frag=0x4001) + bytes(20), Drop.FRAGMENT),  # DF and an offset
    ],
)
def test_parse_ipv4_reasons(l3, reason):
    assert parse_ipv4(eth(l3), 14) is reason


def test_parse_ipv4_accepts_df_and_exact_lengths():
    assert parse_ipv4(eth(ipv4_header(flags_frag=0x4000) + bytes(20)), 14)[3:] == (34, 54)
    assert parse_ipv4(eth(ipv4_header(total_len=20)), 14)[3:] == (34, 34)


def test_verify_ipv4_checksum_catches_a_flipped_bit():
    frame = udp_frame(CIP, VIP, CPORT, VPORT, options=OPTIONS)
    l3, l4, _, _ = offsets(frame)
    assert verify_ipv4_checksum(frame, l3, l4)
    frame[l3 + 22] ^= 0x10  # inside the options
    assert not verify_ipv4_checksum(frame, l3, l4)


@pytest.mark.parametrize("name", VLANS)
def test_parse_ports_tcp_with_options(name):
    frame = tcp_frame(CIP, VIP, CPORT, VPORT, tags=VLANS[name], options=OPTIONS)
    _, l4, ip_end, proto = offsets(frame)
    ref = packet.Packet(bytes(frame)).get_protocol(tcp.tcp)
    assert ref.offset == 7  # the options made the header longer than 20 bytes
    assert parse_ports(frame, l4, ip_end, proto) == (CPORT, VPORT, ref.bits)


def test_parse_ports_udp():
    frame = udp_frame(CIP, VIP, CPORT, 7, options=OPTIONS)
    _, l4, ip_end, proto = offsets(frame)
    assert parse_ports(frame, l4, ip_end, proto) == (CPORT, 7, 0)


def tcp_header(data_offset: int) -> bytes:
    return struct.pack("!HHIIBBHHH", CPORT, VPORT, 1, 0, data_offset << 4, 0x02, 512, 0, 0)


@pytest.mark.parametrize(
    ("proto", "l4", "reason"),
    [
        (6, tcp_header(5)[:19], Drop.SHORT_L4),
        (6, tcp_header(4), Drop.BAD_TCP_OFFSET),
        (6, tcp_header(6), Drop.BAD_TCP_OFFSET),  # 24-byte header in 20 bytes
        (6, tcp_header(15) + bytes(39), Drop.BAD_TCP_OFFSET),
        (17, struct.pack("!HHHH", CPORT, 7, 8, 0)[:7], Drop.SHORT_L4),
        (17, struct.pack("!HHHH", CPORT, 7, 7, 0), Drop.BAD_UDP_LENGTH),
        (17, struct.pack("!HHHH", CPORT, 7, 9, 0), Drop.BAD_UDP_LENGTH),
        (47, bytes(8), Drop.UNSUPPORTED_L4),
    ],
)
def test_parse_ports_reasons(proto, l4, reason):
    frame = eth(ipv4_header(total_len=20 + len(l4), proto=proto) + l4)
    proto, _, _, l4_at, ip_end = parse_ipv4(frame, 14)
    assert parse_ports(frame, l4_at, ip_end, proto) is reason


def test_parse_ports_accepts_udp_length_shorter_than_payload():
    l4 = struct.pack("!HHHH", CPORT, 7, 8, 0) + b"trailer"
    frame = eth(ipv4_header(total_len=20 + len(l4), proto=17) + l4)
    assert parse_ports(frame, 34, 34 + len(l4), 17) == (CPORT, 7, 0)


def test_parse_ports_full_tcp_offset_fits():
    l4 = tcp_header(15) + bytes(40)
    frame = eth(ipv4_header(total_len=20 + len(l4)) + l4)
    assert parse_ports(frame, 34, 34 + len(l4), 6) == (CPORT, VPORT, 0x02)


def test_parse_icmp_echo_has_no_quote():
    frame = build(CIP, VIP, icmp.icmp(type_=8, code=0, data=icmp.echo(id_=1, seq=1)), b"")
    _, l4, ip_end, proto = offsets(frame)
    assert proto == 1
    assert parse_icmp(frame, l4, ip_end) == (8, 0, 0)


def quote_of(frame: bytearray, extra: int = 8) -> bytes:
    """What an ICMP error quotes: the IP header and `extra` bytes after it (all if None)."""
    l3, l4, ip_end, _ = offsets(frame)
    return bytes(frame[l3 : ip_end if extra is None else l4 + extra])


def icmp_error(src, dst, quoted: bytes, *, type_=3, code=3, **kw) -> bytearray:
    body = icmp.TimeExceeded(data=quoted) if type_ == 11 else icmp.dest_unreach(data=quoted)
    return build(src, dst, icmp.icmp(type_=type_, code=code, data=body), b"", **kw)


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
def test_parse_icmp_error_and_its_quote(proto):
    seen_by_server = l4_frame(proto, CIP, RIP, CPORT, RPORT, options=OPTIONS)
    frame = icmp_error(RIP, CIP, quote_of(seen_by_server), tags=VLANS["dot1q"])
    _, l4, ip_end, _ = offsets(frame)
    icmp_type, code, inner_l3 = parse_icmp(frame, l4, ip_end)
    assert (icmp_type, code, inner_l3) == (3, 3, l4 + 8)
    assert icmp_embedded_flow(frame, inner_l3) == (proto, ip(CIP), CPORT, ip(RIP), RPORT)


def test_icmp_embedded_flow_without_ports():
    quoted = quote_of(build(CIP, RIP, None, bytes(8), proto=47))
    frame = icmp_error(RIP, CIP, quoted)
    _, l4, ip_end, _ = offsets(frame)
    inner_l3 = parse_icmp(frame, l4, ip_end)[2]
    assert icmp_embedded_flow(frame, inner_l3) == (47, ip(CIP), 0, ip(RIP), 0)


def icmp_frame(icmp_bytes: bytes) -> bytearray:
    return eth(ipv4_header(total_len=20 + len(icmp_bytes), proto=1) + icmp_bytes)


@pytest.mark.parametrize(
    ("icmp_bytes", "reason"),
    [
        (bytes([8, 0, 0, 0, 0, 0, 0]), Drop.SHORT_L4),
        (bytes([3, 1, 0, 0, 0, 0, 0, 0]) + ipv4_header()[:20] + bytes(7), Drop.BAD_ICMP),
        (bytes([11, 0, 0, 0, 0, 0, 0, 0]) + ipv4_header(ver_ihl=0x65) + bytes(8), Drop.BAD_ICMP),
        (bytes([12, 0, 0, 0, 0, 0, 0, 0]) + ipv4_header(ver_ihl=0x43) + bytes(8), Drop.BAD_ICMP),
        # The quote's IHL claims options that are not there.
        (bytes([3, 4, 0, 0, 0, 0, 0, 0]) + ipv4_header(ver_ihl=0x47) + bytes(8), Drop.BAD_ICMP),
        (
            bytes([3, 3, 0, 0, 0, 0, 0, 0]) + ipv4_header(flags_frag=0x0010) + bytes(8),
            Drop.FRAGMENT,
        ),
    ],
)
def test_parse_icmp_reasons(icmp_bytes, reason):
    frame = icmp_frame(icmp_bytes)
    assert parse_icmp(frame, 34, 34 + len(icmp_bytes)) is reason


def test_parse_icmp_accepts_a_quoted_first_fragment():
    icmp_bytes = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + ipv4_header(flags_frag=0x2000) + bytes(8)
    assert parse_icmp(icmp_frame(icmp_bytes), 34, 34 + len(icmp_bytes)) == (3, 3, 42)


def arp_frame(opcode, src_mac, src_ip, dst_mac, dst_ip, **kw) -> bytearray:
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=ETH_P_ARP))
    p.add_protocol(
        arp.arp(opcode=opcode, src_mac=src_mac, src_ip=src_ip, dst_mac=dst_mac, dst_ip=dst_ip, **kw)
    )
    p.serialize()
    return bytearray(p.data)


def test_parse_arp_matches_os_ken():
    frame = arp_frame(ARP_REPLY, SERVER_MAC, RIP, DIRECTOR_MAC, "192.168.0.2")
    l3, _ = parse_l3(frame)
    assert parse_arp(frame, l3) == (
        ARP_REPLY,
        mac_to_bytes(SERVER_MAC),
        ip(RIP),
        mac_to_bytes(DIRECTOR_MAC),
        ip("192.168.0.2"),
    )


def test_parse_arp_reasons():
    frame = arp_frame(ARP_REQUEST, CLIENT_MAC, CIP, "00:00:00:00:00:00", VIP)
    assert parse_arp(frame[:41], 14) is Drop.SHORT_ARP
    assert parse_arp(arp_frame(3, CLIENT_MAC, CIP, CLIENT_MAC, CIP), 14) is Drop.UNSUPPORTED_ARP
    assert (
        parse_arp(arp_frame(1, CLIENT_MAC, CIP, CLIENT_MAC, VIP, hwtype=6), 14)
        is Drop.UNSUPPORTED_ARP
    )
    bad_hlen = bytearray(frame)
    bad_hlen[18] = 8
    assert parse_arp(bad_hlen, 14) is Drop.UNSUPPORTED_ARP


def test_parsers_read_memoryviews():
    frame = tcp_frame(CIP, VIP, CPORT, VPORT, tags=VLANS["dot1q"], options=OPTIONS)
    view = memoryview(bytes(frame))
    l3, _ = parse_l3(view)
    proto, src, dst, l4, ip_end = parse_ipv4(view, l3)
    assert parse_ipv4(view, l3) == parse_ipv4(frame, l3)
    assert parse_ports(view, l4, ip_end, proto) == parse_ports(frame, l4, ip_end, proto)
    assert verify_ipv4_checksum(view, l3, l4)


def test_drop_reasons_split_into_ignored_and_malformed():
    assert set(Drop) == IGNORED | MALFORMED
    assert not IGNORED & MALFORMED
    assert Drop.NOT_IPV4 in IGNORED and Drop.FRAGMENT in IGNORED
    assert Drop.BAD_IHL in MALFORMED


# --- DR, NAT, TTL ------------------------------------------------------------------------------


def test_set_macs_is_all_dr_changes():
    frame = tcp_frame(CIP, VIP, CPORT, VPORT)
    expected = tcp_frame(CIP, VIP, CPORT, VPORT, eth_dst=SERVER_MAC, eth_src=DIRECTOR_MAC)
    set_macs(frame, mac_to_bytes(SERVER_MAC), mac_to_bytes(DIRECTOR_MAC))
    assert frame == expected


def test_set_macs_never_resizes():
    frame = tcp_frame(CIP, VIP, CPORT, VPORT)
    size = len(frame)
    set_macs(frame, b"\x01\x02", b"\x03" * 9)
    assert len(frame) == size and frame[:12] == b"\x01\x02" + bytes(4) + b"\x03" * 6


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
@pytest.mark.parametrize("name", VLANS)
@pytest.mark.parametrize("options", [b"", OPTIONS])
def test_dnat_inbound(proto, name, options):
    kw = {"tags": VLANS[name], "options": options}
    frame = l4_frame(proto, CIP, VIP, CPORT, VPORT, **kw)
    expected = l4_frame(proto, CIP, RIP, CPORT, RPORT, **kw)
    l3, l4, _, proto = offsets(frame)
    dnat(frame, l3, l4, proto, ip(RIP), RPORT)
    assert frame == expected
    assert l4_sum_ok(frame)


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
@pytest.mark.parametrize("name", VLANS)
@pytest.mark.parametrize("options", [b"", OPTIONS])
def test_snat_outbound(proto, name, options):
    kw = {"tags": VLANS[name], "options": options, "eth_src": SERVER_MAC}
    frame = l4_frame(proto, RIP, CIP, RPORT, CPORT, **kw)
    expected = l4_frame(proto, VIP, CIP, VPORT, CPORT, **kw)
    l3, l4, _, proto = offsets(frame)
    snat(frame, l3, l4, proto, ip(VIP), VPORT)
    assert frame == expected
    assert l4_sum_ok(frame)


def test_nat_keeps_udp_checksum_zero_as_none():
    frame = zero_udp_checksum(udp_frame(CIP, VIP, CPORT, VPORT, options=OPTIONS))
    expected = zero_udp_checksum(udp_frame(CIP, RIP, CPORT, RPORT, options=OPTIONS))
    l3, l4, _, proto = offsets(frame)
    dnat(frame, l3, l4, proto, ip(RIP), RPORT)
    assert frame == expected
    snat(frame, l3, l4, proto, ip(VIP), VPORT)
    assert frame == zero_udp_checksum(udp_frame(VIP, RIP, VPORT, RPORT, options=OPTIONS))


def test_nat_sends_a_computed_udp_zero_as_ffff():
    frame = udp_frame(CIP, VIP, CPORT, VPORT)
    l3, l4, ip_end, proto = offsets(frame)
    # Find the new port for which the full UDP checksum comes out 0.
    csum = int.from_bytes(frame[l4 + 6 : l4 + 8], "big")
    port = next(
        p
        for p in range(0x10000)
        if (csum ^ 0xFFFF) + (ip(VIP) ^ 0xFFFFFFFF) + ip(RIP) + (VPORT ^ 0xFFFF) + p
        and ((csum ^ 0xFFFF) + (ip(VIP) ^ 0xFFFFFFFF) + ip(RIP) + (VPORT ^ 0xFFFF) + p) % 0xFFFF
        == 0
    )
    dnat(frame, l3, l4, proto, ip(RIP), port)
    assert frame[l4 + 6 : l4 + 8] == b"\xff\xff"
    assert l4_sum_ok(frame)
    expected = udp_frame(CIP, RIP, CPORT, port)
    assert expected[l4 + 6 : l4 + 8] in (b"\0\0", b"\xff\xff")  # os-ken leaves the 0
    assert frame[: l4 + 6] == expected[: l4 + 6] and frame[l4 + 8 :] == expected[l4 + 8 :]


def test_nat_of_other_protocols_changes_only_the_address():
    frame = build(CIP, VIP, None, b"GRE-ish payload", proto=47, options=OPTIONS)
    expected = build(CIP, RIP, None, b"GRE-ish payload", proto=47, options=OPTIONS)
    l3, l4, _, proto = offsets(frame)
    dnat(frame, l3, l4, proto, ip(RIP), RPORT)
    assert frame == expected
    snat(frame, l3, l4, proto, ip(VIP), VPORT)
    assert frame == build(VIP, RIP, None, b"GRE-ish payload", proto=47, options=OPTIONS)


@settings(max_examples=150, deadline=None)
@given(
    proto=st.sampled_from([IPPROTO_TCP, IPPROTO_UDP]),
    addrs=st.lists(st.integers(1, 0xFFFFFFFE), min_size=3, max_size=3),
    ports=st.lists(st.integers(0, 0xFFFF), min_size=3, max_size=3),
    payload=st.binary(max_size=64),
)
def test_nat_both_ways_matches_os_ken(proto, addrs, ports, payload):
    cip, vip, rip = map(ip_to_str, addrs)
    cport, vport, rport = ports
    frame = l4_frame(proto, cip, vip, cport, vport, payload=payload)
    expected = l4_frame(proto, cip, rip, cport, rport, payload=payload)
    if proto == IPPROTO_UDP and expected[34 + 6 : 34 + 8] == b"\0\0":
        expected[34 + 6 : 34 + 8] = b"\xff\xff"  # os-ken's 0 would mean "no checksum"
    dnat(frame, 14, 34, proto, ip(rip), rport)
    assert frame == expected
    reply = l4_frame(proto, rip, cip, rport, cport, payload=payload)
    snat(reply, 14, 34, proto, ip(vip), vport)
    assert l4_sum_ok(reply) and verify_ipv4_checksum(reply, 14, 34)
    assert parse_ports(reply, 34, offsets(reply)[2], proto)[:2] == (vport, cport)


def test_decrement_ttl():
    frame = tcp_frame(CIP, VIP, CPORT, VPORT, ttl=64, options=OPTIONS)
    l3, _, _, _ = offsets(frame)
    assert decrement_ttl(frame, l3)
    assert frame == tcp_frame(CIP, VIP, CPORT, VPORT, ttl=63, options=OPTIONS)
    for ttl in (0, 1):
        frame = tcp_frame(CIP, VIP, CPORT, VPORT, ttl=ttl)
        before = bytes(frame)
        assert not decrement_ttl(frame, 14)
        assert frame == before


# --- ICMP errors under NAT ---------------------------------------------------------------------


QUOTES = {"8 bytes": 8, "whole packet": None}


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
@pytest.mark.parametrize("quote", QUOTES)
@pytest.mark.parametrize("payload", [b"even payload", b"odd payload"])
def test_icmp_error_from_the_server_side(proto, quote, payload):
    """A real server refuses a client's packet: the client must see its own packet quoted."""
    kw = {"payload": payload, "options": OPTIONS}
    as_sent = l4_frame(proto, CIP, VIP, CPORT, VPORT, **kw)
    as_received = l4_frame(proto, CIP, RIP, CPORT, RPORT, **kw)
    frame = icmp_error(RIP, CIP, quote_of(as_received, QUOTES[quote]), tags=VLANS["dot1q"])
    expected = icmp_error(VIP, CIP, quote_of(as_sent, QUOTES[quote]), tags=VLANS["dot1q"])
    l3, l4, ip_end, _ = offsets(frame)
    _, _, inner_l3 = parse_icmp(frame, l4, ip_end)
    assert icmp_embedded_flow(frame, inner_l3) == (proto, ip(CIP), CPORT, ip(RIP), RPORT)
    icmp_error_snat(frame, l3, l4, inner_l3, ip_end, ip(VIP), VPORT)
    assert frame == expected


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
@pytest.mark.parametrize("quote", QUOTES)
def test_icmp_error_from_the_client_side(proto, quote):
    """A router on the client side drops a reply: the real server must see its own packet."""
    kw = {"payload": b"reply", "ttl": 1}
    as_sent = l4_frame(proto, RIP, CIP, RPORT, CPORT, **kw)
    as_forwarded = l4_frame(proto, VIP, CIP, VPORT, CPORT, **kw)
    frame = icmp_error(ROUTER, VIP, quote_of(as_forwarded, QUOTES[quote]), type_=11, code=0)
    expected = icmp_error(ROUTER, RIP, quote_of(as_sent, QUOTES[quote]), type_=11, code=0)
    l3, l4, ip_end, _ = offsets(frame)
    _, _, inner_l3 = parse_icmp(frame, l4, ip_end)
    assert icmp_embedded_flow(frame, inner_l3) == (proto, ip(VIP), VPORT, ip(CIP), CPORT)
    icmp_error_dnat(frame, l3, l4, inner_l3, ip_end, ip(RIP), RPORT)
    assert frame == expected


def test_icmp_error_keeps_a_quoted_udp_checksum_of_zero():
    as_sent = zero_udp_checksum(udp_frame(CIP, VIP, CPORT, 7))
    as_received = zero_udp_checksum(udp_frame(CIP, RIP, CPORT, 7007))
    frame = icmp_error(RIP, CIP, quote_of(as_received))
    l3, l4, ip_end, _ = offsets(frame)
    icmp_error_snat(frame, l3, l4, ip_end - 28, ip_end, ip(VIP), 7)
    assert frame == icmp_error(VIP, CIP, quote_of(as_sent))


def test_icmp_error_stays_corrupt_when_it_came_corrupt():
    frame = icmp_error(RIP, CIP, quote_of(udp_frame(CIP, RIP, CPORT, RPORT)))
    l3, l4, ip_end, _ = offsets(frame)
    frame[ip_end - 1] ^= 0x01  # damage the quoted UDP checksum
    assert ref_sum(bytes(frame[l4:ip_end])) != 0xFFFF
    icmp_error_snat(frame, l3, l4, l4 + 8, ip_end, ip(VIP), VPORT)
    assert ref_sum(bytes(frame[l4:ip_end])) != 0xFFFF
    assert verify_ipv4_checksum(frame, l3, l4)


# --- CHECKSUM_PARTIAL ------------------------------------------------------------------------


def linux_partial(frame: bytearray) -> bytearray:
    """The frame as a sender leaves it for offload: ~csum_tcpudp_magic() in the field."""
    l3, l4, ip_end, proto = offsets(frame)
    pseudo = bytes(frame[l3 + 12 : l3 + 20]) + bytes([0, proto]) + (ip_end - l4).to_bytes(2, "big")
    at = l4 + (16 if proto == IPPROTO_TCP else 6)
    partial = bytearray(frame)
    partial[at : at + 2] = ref_sum(pseudo).to_bytes(2, "big")  # folded, not complemented
    return partial


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
@pytest.mark.parametrize("name", VLANS)
def test_complete_partial_checksum(proto, name):
    frame = l4_frame(
        proto, CIP, VIP, CPORT, VPORT, tags=VLANS[name], options=OPTIONS, payload=b"odd"
    )
    partial = linux_partial(frame)
    assert partial != frame
    _, l4, ip_end, _ = offsets(partial)
    complete_l4_checksum(partial, l4, ip_end, proto)
    assert partial == frame


@settings(max_examples=200, deadline=None)
@given(
    proto=st.sampled_from([IPPROTO_TCP, IPPROTO_UDP]),
    src=st.integers(0, 0xFFFFFFFF),
    dst=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=100),
)
def test_completed_checksum_verifies_then_survives_nat(proto, src, dst, payload):
    frame = l4_frame(proto, ip_to_str(src), ip_to_str(dst), CPORT, VPORT, payload=payload)
    partial = linux_partial(frame)
    l3, l4, ip_end, _ = offsets(partial)
    complete_l4_checksum(partial, l4, ip_end, proto)
    assert l4_sum_ok(partial)
    at = l4 + (16 if proto == IPPROTO_TCP else 6)
    assert partial[at : at + 2] != b"\0\0"  # skb_checksum_help sends 0 as 0xFFFF
    dnat(partial, l3, l4, proto, ip(RIP), RPORT)
    assert l4_sum_ok(partial)


def test_complete_l4_checksum_leaves_other_protocols():
    frame = build(CIP, VIP, None, b"payload", proto=47)
    before = bytes(frame)
    complete_l4_checksum(frame, 34, len(frame), 47)
    assert frame == before


# --- TUN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VLANS)
def test_ipip_encapsulation(name):
    inner_frame = tcp_frame(CIP, VIP, CPORT, VPORT, tags=VLANS[name], tos=0x10, flags=0b010, ttl=61)
    l3, _, ip_end, _ = offsets(inner_frame)
    inner = bytes(inner_frame[l3:ip_end])
    out = ipip_encapsulate(
        inner_frame,
        l3,
        ip_end,
        mac_to_bytes(SERVER_MAC),
        mac_to_bytes(DIRECTOR_MAC),
        ip("10.0.0.2"),
        ip("10.0.0.11"),
        ip_id=0x1_0005,
    )
    expected = build(
        "10.0.0.2",
        "10.0.0.11",
        None,
        inner,
        proto=4,
        tos=0x10,
        flags=0b010,
        ttl=61,
        ident=5,
        eth_dst=SERVER_MAC,
        eth_src=DIRECTOR_MAC,
    )
    assert out == expected[: len(out)] and len(out) == 34 + len(inner)
    assert parse_ipv4(out, 14) == (4, ip("10.0.0.2"), ip("10.0.0.11"), 34, len(out))


def test_ipip_takes_a_given_ttl_and_leaves_df_clear():
    inner_frame = udp_frame(CIP, VIP, CPORT, VPORT, payload=b"x", ttl=9)
    _, _, ip_end, _ = offsets(inner_frame)
    out = ipip_encapsulate(inner_frame, 14, ip_end, b"\x01" * 6, b"\x02" * 6, 1, 2, 7, ttl=64)
    header = packet.Packet(bytes(out)).get_protocol(ipv4.ipv4)
    assert (header.ttl, header.flags, header.identification) == (64, 0, 7)
    assert verify_ipv4_checksum(out, 14, 34)
    assert out[34:] == inner_frame[14:ip_end]  # os-ken's link padding left behind


def test_ipip_too_big():
    frame = eth(ipv4_header(total_len=0xFFFF - 19) + bytes(0xFFFF - 39))
    assert (
        ipip_encapsulate(frame, 14, len(frame), BROADCAST_MAC, BROADCAST_MAC, 1, 2, 3)
        is Drop.TOO_BIG
    )
    frame = eth(ipv4_header(total_len=0xFFFF - 20) + bytes(0xFFFF - 40))
    assert (
        len(ipip_encapsulate(frame, 14, len(frame), BROADCAST_MAC, BROADCAST_MAC, 1, 2, 3))
        == 0xFFFF + 14
    )


# --- ARP and helpers ---------------------------------------------------------------------------


def test_arp_request():
    frame = arp_request(mac_to_bytes(DIRECTOR_MAC), ip("192.168.0.2"), ip(RIP))
    expected = arp_frame(ARP_REQUEST, DIRECTOR_MAC, "192.168.0.2", "00:00:00:00:00:00", RIP)
    expected[:6] = BROADCAST_MAC
    assert len(frame) == 42 and frame == expected[:42]


def test_arp_reply():
    frame = arp_reply(mac_to_bytes(DIRECTOR_MAC), ip(VIP), mac_to_bytes(CLIENT_MAC), ip(CIP))
    assert frame == arp_frame(ARP_REPLY, DIRECTOR_MAC, VIP, CLIENT_MAC, CIP)[:42]
    assert parse_arp(frame, 14) == (
        ARP_REPLY,
        mac_to_bytes(DIRECTOR_MAC),
        ip(VIP),
        mac_to_bytes(CLIENT_MAC),
        ip(CIP),
    )


def test_gratuitous_arp_is_keepalived_form():
    frame = gratuitous_arp(mac_to_bytes(DIRECTOR_MAC), ip(VIP))
    ref = packet.Packet(bytes(frame))
    assert ref.get_protocol(ethernet.ethernet).dst == "ff:ff:ff:ff:ff:ff"
    request = ref.get_protocol(arp.arp)
    assert (request.opcode, request.src_mac, request.src_ip) == (ARP_REQUEST, DIRECTOR_MAC, VIP)
    assert (request.dst_mac, request.dst_ip) == ("ff:ff:ff:ff:ff:ff", VIP)


def test_mac_helpers():
    assert mac_to_bytes("02:00:00:00:01:0B") == b"\x02\x00\x00\x00\x01\x0b"
    assert mac_to_str(b"\x02\x00\x00\x00\x01\x0b") == "02:00:00:00:01:0b"
    for bad in ("02:00:00:00:01", "02:00:00:00:01:0g", "2:00:00:00:01:0b:", " 2:00:00:00:01:0b"):
        with pytest.raises(ValueError):
            mac_to_bytes(bad)


def test_ip_helpers():
    assert ip_to_int("10.0.1.100") == 0x0A000164
    assert ip_to_str(0x0A000164) == "10.0.1.100"
    with pytest.raises(ValueError):
        ip_to_int("10.1")
