"""Fakes and oracles for the forwarder tests: recording ports, a small lab around a Forwarder,
frames built with os-ken, and checksum checks written here (RFC 1071 over struct-unpacked
words), independently of testbed.director's own checksum code.

Not tests: imported by test_forwarder*.py and test_neighbours.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from os_ken.lib.packet import arp, ethernet, icmp, ipv4, packet, tcp, udp

from testbed.director import ipvsadm
from testbed.director.forwarder import Forwarder
from testbed.director.model import Director
from testbed.director.neighbours import Neighbours, Route

ETH_P_IP, ETH_P_ARP = 0x0800, 0x0806
VLAN_TPIDS = (0x8100, 0x88A8)
BROADCAST = b"\xff" * 6
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
ICMP_ERRORS = (3, 4, 5, 11, 12)


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ip(text: str) -> int:
    a, b, c, d = map(int, text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def route(cidr: str, port: str, gateway: str | None = None) -> Route:
    net, prefix = cidr.split("/")
    return Route(ip(net), int(prefix), port, ip(gateway) if gateway else None)


@dataclass
class FakePort:
    """A director port that records what it was sent (as bytes, since callers reuse buffers)."""

    name: str
    mac_text: str
    ip_text: str
    sent: list[bytes] = field(default_factory=list)
    flushes: int = 0

    def __post_init__(self) -> None:
        self.mac = mac(self.mac_text)
        self.ip = ip(self.ip_text)

    def send(self, frame) -> None:
        self.sent.append(bytes(frame))

    def flush(self) -> None:
        self.flushes += 1

    def take(self) -> list[bytes]:
        sent, self.sent = self.sent, []
        return sent


def accounted(fwd: Forwarder) -> bool:
    """The forwarder's invariant: every received frame ended in exactly one outcome."""
    return fwd.rx == (
        fwd.forwarded + fwd.queued + sum(fwd.ignored.values()) + sum(fwd.dropped.values())
    )


LABS: list[Lab] = []
"""Every Lab made, so a test module's fixture can check the invariant after each test."""


class Lab:
    """A Director configured by `ipvsadm -R`, fake ports, routes, and the Forwarder over them."""

    def __init__(
        self, ports: list[FakePort], routes: list[Route], rules: str, *, seed: int = 7
    ) -> None:
        self.director = Director(seed=seed)
        res = ipvsadm.run(["-R"], self.director, rules, now=0.0)
        assert res.rc == 0, res.err
        self.ports = {p.name: p for p in ports}
        self.neigh = Neighbours(self.ports, routes)
        self.fwd = Forwarder(self.director, self.neigh)
        LABS.append(self)

    def ipvsadm(self, *argv: str, stdin: str | None = None) -> str:
        """Run ipvsadm, require success, and tell the forwarder (as the daemon does)."""
        res = ipvsadm.run(list(argv), self.director, stdin)
        assert res.rc == 0, res.err
        self.fwd.refresh_services()
        return res.out

    def handle(
        self, frame, port: str, now: float = 1.0, *, csum_partial: bool = False
    ) -> dict[str, list[bytes]]:
        """Feed a copy of ``frame`` in on ``port``; return what each port sent meanwhile."""
        for p in self.ports.values():
            p.take()
        self.fwd.handle(bytearray(frame), self.ports[port], csum_partial, now)
        return {name: p.take() for name, p in self.ports.items() if p.sent}

    def learn(self, who_ip: str, who_mac: str, now: float = 0.0) -> None:
        """Resolve ``who_ip`` as the daemon does: ask (our ARP request), then feed the reply."""
        hop = self.neigh.hop_for(ip(who_ip))
        assert hop is not None and hop.ip == ip(who_ip), f"{who_ip} is not a neighbour"
        self.neigh.solicit(hop, now)
        port = hop.port
        self.fwd.handle(
            arp_frame(2, who_mac, who_ip, port.mac_text, port.ip_text), port, False, now
        )
        assert hop.mac == mac(who_mac)
        port.take()

    def stats_rows(self) -> dict[str, list[int]]:
        """`ipvsadm -L -n --stats --exact` as {address:port: [conns, inpkts, outpkts,
        inbytes, outbytes]}, keyed "TCP 10.0.0.100:80" for services and "10.0.0.11:80" for
        real servers."""
        out = ipvsadm.run(["-L", "-n", "--stats", "--exact"], self.director).out
        rows = {}
        for line in out.splitlines()[3:]:
            words = line.split()
            if words[0] == "->":
                rows[words[1]] = [int(w) for w in words[2:]]
            else:
                rows[f"{words[0]} {words[1]}"] = [int(w) for w in words[2:]]
        return rows


# --- frames, built by os-ken ---------------------------------------------------------------


def _frame(eth_src: str, eth_dst: str, header: ipv4.ipv4, l4, payload: bytes) -> bytearray:
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet(dst=eth_dst, src=eth_src, ethertype=ETH_P_IP))
    p.add_protocol(header)
    if l4 is not None:
        p.add_protocol(l4)
    if payload:
        p.add_protocol(payload)
    p.serialize()
    return bytearray(p.data)


def _ip(src: str, dst: str, proto: int, ttl: int, options: bytes = b"") -> ipv4.ipv4:
    return ipv4.ipv4(
        src=src,
        dst=dst,
        proto=proto,
        ttl=ttl,
        identification=0x1234,
        flags=0b010,
        header_length=5 + len(options) // 4,
        option=options or None,
    )


def tcp_frame(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    bits: int = SYN,
    *,
    payload: bytes = b"",
    ttl: int = 64,
    eth_src: str,
    eth_dst: str,
    seq: int = 1000,
    ack_no: int = 0,
    options: bytes = b"",
) -> bytearray:
    header = tcp.tcp(
        src_port=sport,
        dst_port=dport,
        seq=seq,
        ack=ack_no,
        bits=bits,
        window_size=29200,
        option=[tcp.TCPOptionMaximumSegmentSize(max_seg_size=1460)],
    )
    return _frame(eth_src, eth_dst, _ip(src, dst, 6, ttl, options), header, payload)


def udp_frame(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    payload: bytes = b"ping",
    ttl: int = 64,
    eth_src: str,
    eth_dst: str,
) -> bytearray:
    return _frame(
        eth_src, eth_dst, _ip(src, dst, 17, ttl), udp.udp(src_port=sport, dst_port=dport), payload
    )


def icmp_echo_frame(src: str, dst: str, *, eth_src: str, eth_dst: str) -> bytearray:
    body = icmp.icmp(type_=8, code=0, data=icmp.echo(id_=7, seq=1, data=b"abcdefgh"))
    return _frame(eth_src, eth_dst, _ip(src, dst, 1, 64), body, b"")


def icmp_error_frame(
    src: str,
    dst: str,
    quoted: bytes,
    *,
    type_: int = 3,
    code: int = 3,
    ttl: int = 64,
    eth_src: str,
    eth_dst: str,
) -> bytearray:
    """An ICMP error from ``src`` to ``dst`` quoting the IPv4 packet ``quoted``."""
    body = icmp.icmp(type_=type_, code=code, data=icmp.dest_unreach(data=bytes(quoted)))
    return _frame(eth_src, eth_dst, _ip(src, dst, 1, ttl), body, b"")


def ip_packet(frame: bytes, l3: int = 14) -> bytes:
    """The IPv4 packet inside an Ethernet frame, without link padding."""
    total = struct.unpack_from("!H", frame, l3 + 2)[0]
    return bytes(frame[l3 : l3 + total])


def arp_frame(
    op: int, src_mac: str, src_ip: str, dst_mac: str, dst_ip: str, eth_dst: str | None = None
) -> bytearray:
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet(dst=eth_dst or dst_mac, src=src_mac, ethertype=ETH_P_ARP))
    p.add_protocol(
        arp.arp(opcode=op, src_mac=src_mac, src_ip=src_ip, dst_mac=dst_mac, dst_ip=dst_ip)
    )
    p.serialize()
    return bytearray(p.data)


def parse(frame: bytes) -> packet.Packet:
    return packet.Packet(bytes(frame))


# --- checksum oracle -----------------------------------------------------------------------


def ones_sum(data: bytes) -> int:
    """RFC 1071: the 16-bit one's-complement sum of ``data`` (odd length padded with 0)."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo_sum(packet_: bytes, proto: int, length: int) -> int:
    """The IPv4 pseudo-header sum (folded, not complemented) of a TCP/UDP segment."""
    return ones_sum(bytes(packet_[12:20]) + struct.pack("!BBH", 0, proto, length))


def internet_checksum(data: bytes, initial: int = 0) -> int:
    total = ones_sum(data) + initial
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def l3_offset(frame: bytes) -> tuple[int, int]:
    """(l3, ethertype) past up to two VLAN tags, read independently of packet.py."""
    l3 = 14
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    while ethertype in VLAN_TPIDS and l3 < 22:
        ethertype = struct.unpack_from("!H", frame, l3 + 2)[0]
        l3 += 4
    return l3, ethertype


def ipv4_problems(pkt: bytes, *, quoted: bool = False) -> list[str]:
    """What is wrong with an IPv4 packet's checksums (empty when all verify).

    Checks the header checksum, and the TCP, UDP (unless 0) and ICMP checksum of the
    payload; an ICMP error's quoted header checksum when the whole quoted header is there;
    the inner packet of IP-in-IP recursively. ``quoted`` checks the header only.
    """
    problems = []
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return ["not IPv4"]
    ihl = (pkt[0] & 15) * 4
    total = struct.unpack_from("!H", pkt, 2)[0]
    if ihl < 20 or len(pkt) < ihl:
        return ["bad IHL"]
    if ones_sum(pkt[:ihl]) != 0xFFFF:
        problems.append("IP header checksum")
    if quoted:
        return problems
    if total != len(pkt):
        return [*problems, f"total length {total} != {len(pkt)}"]
    proto, payload = pkt[9], pkt[ihl:total]
    if proto == 6:
        if internet_checksum(payload, pseudo_sum(pkt, 6, len(payload))):
            problems.append("TCP checksum")
    elif proto == 17:
        udp_len, csum = struct.unpack_from("!HH", payload, 4)
        if csum and internet_checksum(payload[:udp_len], pseudo_sum(pkt, 17, udp_len)):
            problems.append("UDP checksum")
    elif proto == 1:
        if internet_checksum(payload):
            problems.append("ICMP checksum")
        if payload[0] in ICMP_ERRORS and len(payload) >= 28:
            inner = payload[8:]
            inner_ihl = (inner[0] & 15) * 4
            if inner[0] >> 4 == 4 and 20 <= inner_ihl <= len(inner):
                problems += [f"quoted {p}" for p in ipv4_problems(inner, quoted=True)]
    elif proto == 4:
        problems += [f"inner {p}" for p in ipv4_problems(payload)]
    return problems


def assert_valid_ipv4_frame(frame: bytes) -> bytes:
    """Assert the frame carries IPv4 with every checksum right; return the IP packet."""
    l3, ethertype = l3_offset(frame)
    assert ethertype == ETH_P_IP, f"ethertype {ethertype:#06x}"
    pkt = ip_packet(frame, l3)
    problems = ipv4_problems(pkt)
    assert not problems, problems
    return pkt


def quoted_l4_ok(pkt: bytes) -> bool:
    """Whether a whole TCP/UDP packet quoted in an ICMP error has a right checksum."""
    ihl = (pkt[0] & 15) * 4
    quoted = pkt[ihl + 8 :]
    return not ipv4_problems(quoted)


def with_partial_checksum(frame: bytearray, l3: int = 14) -> bytearray:
    """The frame as a local sender hands it over with checksum offload pending: the TCP/UDP
    checksum field holds the folded pseudo-header sum (Linux's CHECKSUM_PARTIAL)."""
    pkt = ip_packet(frame, l3)
    ihl = (pkt[0] & 15) * 4
    proto = pkt[9]
    at = l3 + ihl + (16 if proto == 6 else 6)
    struct.pack_into("!H", frame, at, pseudo_sum(pkt, proto, len(pkt) - ihl))
    return frame
