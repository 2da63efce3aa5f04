"""Fuzz: random and mutated frames through every parser and, where accepted, every rewrite.

No exception may escape and every frame must end in exactly one outcome: accepted (with
offsets inside the frame) or one `Drop` reason. Accepted frames then go through the rewrites
on copies, which must keep the frame's length, change exactly what they claim (the parsers
read the new values back), and keep each checksum exactly as valid or invalid as it was.
Seed frames are built here with struct, independently of the module under test; the bulk is
driven by a seeded random.Random so a failure replays.
"""

import random
import struct
from collections import Counter

from testbed.director.checksum import checksum, pseudo_header_sum
from testbed.director.packet import (
    ETH_P_ARP,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
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
    set_macs,
    snat,
    verify_ipv4_checksum,
)
from tests.unit.test_checksum import ref_sum

SEED = 2003
CIP, VIP, RIP = bytes([10, 0, 1, 11]), bytes([10, 0, 1, 100]), bytes([192, 168, 0, 11])
IP_OPTIONS = b"\x07\x07\x04\x00\x00\x00\x00\x00"
TCP_OPTIONS = b"\x02\x04\x05\xb4\x01\x01\x04\x02"  # MSS, NOP, NOP, SACK permitted


def put_csum(data: bytes, at: int, covered: bytes) -> bytes:
    return data[:at] + (~ref_sum(covered) & 0xFFFF).to_bytes(2, "big") + data[at + 2 :]


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return src + dst + bytes([0, proto]) + length.to_bytes(2, "big")


def ip_packet(proto, src, dst, payload, *, options=b"", flags_frag=0x4000, ttl=64) -> bytes:
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        4 * ihl + len(payload),
        0x1234,
        flags_frag,
        ttl,
        proto,
        0,
        src,
        dst,
    )
    header += options
    return put_csum(header, 10, header) + payload


def tcp_segment(
    src, dst, sport, dport, data=b"GET / HTTP/1.0\r\n\r\n", options=TCP_OPTIONS
) -> bytes:
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, 7, 9, (5 + len(options) // 4) << 4, 0x18, 512, 0, 0
    )
    segment = header + options + data
    return put_csum(segment, 16, pseudo(src, dst, IPPROTO_TCP, len(segment)) + segment)


def udp_datagram(src, dst, sport, dport, data=b"echo me", *, no_checksum=False) -> bytes:
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    if no_checksum:
        return datagram
    return put_csum(datagram, 6, pseudo(src, dst, IPPROTO_UDP, len(datagram)) + datagram)


def icmp_message(icmp_type, code, body) -> bytes:
    message = bytes([icmp_type, code, 0, 0, 0, 0, 0, 0]) + body
    return put_csum(message, 2, message)


def frame(l3: bytes, ethertype=0x0800, tags=(), pad_to=0) -> bytes:
    out = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    for tpid, vid in tags:
        out += struct.pack("!HH", tpid, vid)
    out += ethertype.to_bytes(2, "big") + l3
    return out + bytes(max(0, pad_to - len(out)))


def seed_frames() -> list[bytes]:
    tcp_in = ip_packet(6, CIP, VIP, tcp_segment(CIP, VIP, 40000, 80))
    udp_in = ip_packet(17, CIP, RIP, udp_datagram(CIP, RIP, 40000, 7), options=IP_OPTIONS)
    tcp_to_rs = ip_packet(6, CIP, RIP, tcp_segment(CIP, RIP, 40000, 8080), options=IP_OPTIONS)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, b"\x02" * 6, CIP, bytes(6), VIP)
    return [
        frame(tcp_in),
        frame(tcp_in, tags=[(0x8100, 10)]),
        frame(
            ip_packet(6, RIP, CIP, tcp_segment(RIP, CIP, 8080, 40000, b"odd")),
            tags=[(0x88A8, 2), (0x8100, 3)],
        ),
        frame(udp_in),
        frame(
            ip_packet(17, CIP, VIP, udp_datagram(CIP, VIP, 1, 7, b"x", no_checksum=True)), pad_to=60
        ),
        frame(ip_packet(1, CIP, VIP, icmp_message(8, 0, b"ping data")), pad_to=60),
        frame(ip_packet(1, RIP, CIP, icmp_message(3, 3, udp_in[:36])), tags=[(0x8100, 5)]),
        frame(ip_packet(1, RIP, CIP, icmp_message(3, 1, tcp_to_rs))),
        frame(ip_packet(1, CIP, VIP, icmp_message(11, 0, tcp_in[:28]), options=IP_OPTIONS)),
        frame(ip_packet(47, CIP, VIP, b"\x00\x00\x08\x00" + tcp_in)),
        frame(ip_packet(17, CIP, VIP, udp_in[20:], flags_frag=0x2000)),
        frame(ip_packet(6, CIP, VIP, tcp_segment(CIP, VIP, 1, 80), ttl=1)),
        frame(arp, ethertype=ETH_P_ARP, pad_to=60),
        frame(bytes(40), ethertype=0x86DD),
    ]


# Offsets of header fields worth setting to edge values, from l3 (untagged seeds).
FIELD_OFFSETS = [12, 13, 14, 16, 17, 20, 21, 23, 34, 35, 38, 39, 42, 43, 46, 47]
EDGE_BYTES = [
    0x00,
    0x01,
    0x04,
    0x05,
    0x06,
    0x0F,
    0x11,
    0x20,
    0x3F,
    0x40,
    0x45,
    0x4F,
    0x50,
    0x7F,
    0x80,
    0xF0,
    0xFF,
]


def corpus(rng: random.Random):
    """Yield about 110,000 frames: truncations, mutations and random bytes."""
    seeds = seed_frames()
    for seed in seeds:
        for length in range(len(seed) + 1):
            yield seed[:length]
    for _ in range(60_000):
        mutated = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        yield bytes(mutated)
    for _ in range(30_000):
        mutated = bytearray(rng.choice(seeds))
        at = rng.choice(FIELD_OFFSETS)
        if at < len(mutated):
            mutated[at] = rng.choice(EDGE_BYTES)
        if rng.random() < 0.3:
            del mutated[rng.randrange(len(mutated)) :]
        yield bytes(mutated)
    for _ in range(20_000):
        prefix = rng.choice([b"", b"\x08\x00", b"\x08\x06", b"\x81\x00", b"\x88\xa8"])
        random_bytes = rng.randbytes(rng.randrange(120))
        yield (random_bytes[:12] + prefix + random_bytes[12:]) if prefix else random_bytes


def is_drop(result) -> bool:
    if result.__class__ is Drop:
        return True
    assert type(result) is tuple and all(type(v) in (int, bytes) for v in result), result
    return False


def l4_valid(buf, src, dst, proto, l4, ip_end) -> bool:
    return checksum(buf[l4:ip_end], pseudo_header_sum(src, dst, proto, ip_end - l4)) == 0


def icmp_valid(buf, l4, ip_end) -> bool:
    return checksum(buf[l4:ip_end]) == 0


def exercise_ports(frame, l3, l4, ip_end, proto, src, dst, rng) -> None:
    """Every TCP/UDP rewrite on a copy, with what it must and must not change."""
    ip_ok = verify_ipv4_checksum(frame, l3, l4)
    l4_ok = l4_valid(frame, src, dst, proto, l4, ip_end)
    csum_at = l4 + (16 if proto == IPPROTO_TCP else 6)
    no_udp_sum = proto == IPPROTO_UDP and frame[csum_at : csum_at + 2] == b"\0\0"
    sport, dport, flags = parse_ports(frame, l4, ip_end, proto)
    new_ip, new_port = rng.getrandbits(32), rng.getrandbits(16)

    for rewrite in (dnat, snat):
        out = bytearray(frame)
        rewrite(out, l3, l4, proto, new_ip, new_port)
        assert len(out) == len(frame)
        out_src, out_dst = (src, new_ip) if rewrite is dnat else (new_ip, dst)
        assert parse_ipv4(out, l3) == (proto, out_src, out_dst, l4, ip_end)
        ports = (sport, new_port) if rewrite is dnat else (new_port, dport)
        assert parse_ports(out, l4, ip_end, proto) == (*ports, flags)
        assert verify_ipv4_checksum(out, l3, l4) == ip_ok
        if no_udp_sum:
            assert out[csum_at : csum_at + 2] == b"\0\0"
        else:
            assert l4_valid(out, out_src, out_dst, proto, l4, ip_end) == l4_ok

    out = bytearray(frame)
    set_macs(out, b"\x0a" * 6, b"\x0b" * 6)
    assert out[12:] == frame[12:] and out[:12] == b"\x0a" * 6 + b"\x0b" * 6

    out = bytearray(frame)
    if decrement_ttl(out, l3):
        assert out[l3 + 8] == frame[l3 + 8] - 1
        assert verify_ipv4_checksum(out, l3, l4) == ip_ok
    else:
        assert frame[l3 + 8] <= 1 and out == frame

    # As Linux leaves it for offload: the pseudo-header sum in the field.
    out = bytearray(frame)
    out[csum_at : csum_at + 2] = pseudo_header_sum(src, dst, proto, ip_end - l4).to_bytes(2, "big")
    complete_l4_checksum(out, l4, ip_end, proto)
    assert l4_valid(out, src, dst, proto, l4, ip_end)

    tunnelled = ipip_encapsulate(
        frame, l3, ip_end, b"\x0c" * 6, b"\x0d" * 6, 1, 2, rng.getrandbits(20)
    )
    assert parse_l3(tunnelled) == (14, 0x0800)
    assert parse_ipv4(tunnelled, 14) == (4, 1, 2, 34, len(tunnelled))
    assert verify_ipv4_checksum(tunnelled, 14, 34)
    assert tunnelled[34:] == frame[l3:ip_end]


def exercise_icmp_error(frame, l3, l4, ip_end, inner_l3, rng) -> None:
    """Both NAT translations of an ICMP error on copies: sums keep their validity."""
    flow = icmp_embedded_flow(frame, inner_l3)
    assert len(flow) == 5 and all(type(v) is int for v in flow)
    ip_ok = verify_ipv4_checksum(frame, l3, l4)
    icmp_ok = icmp_valid(frame, l4, ip_end)
    icmp_head = parse_icmp(frame, l4, ip_end)
    inner_l4 = inner_l3 + ((frame[inner_l3] & 0x0F) << 2)
    proto = flow[0]
    new_ip, new_port = rng.getrandbits(32), rng.getrandbits(16)
    for translate in (icmp_error_snat, icmp_error_dnat):
        out = bytearray(frame)
        translate(out, l3, l4, inner_l3, ip_end, new_ip, new_port)
        assert len(out) == len(frame)
        assert parse_icmp(out, l4, ip_end) == icmp_head
        assert verify_ipv4_checksum(out, l3, l4) == ip_ok
        assert icmp_valid(out, l4, ip_end) == icmp_ok
        assert verify_ipv4_checksum(out, inner_l3, inner_l4)
        out_flow = icmp_embedded_flow(out, inner_l3)
        has_ports = proto in (IPPROTO_TCP, IPPROTO_UDP)
        if translate is icmp_error_snat:
            assert out_flow[3:] == (new_ip, new_port if has_ports else 0)
            assert struct.unpack_from("!I", out, l3 + 12)[0] == new_ip
        else:
            assert out_flow[1:3] == (new_ip, new_port if has_ports else 0)
            assert struct.unpack_from("!I", out, l3 + 16)[0] == new_ip


def outcome(frame, rng):
    """Run the parsers as the forwarding loop would; return the outcome for this frame."""
    view = memoryview(frame) if rng.random() < 0.25 else frame  # read-only views too
    result = parse_l3(view)
    if is_drop(result):
        return result
    l3, ethertype = result
    assert 14 <= l3 <= len(frame)
    if ethertype == ETH_P_ARP:
        result = parse_arp(view, l3)
        return result if is_drop(result) else "arp"
    result = parse_ipv4(view, l3)
    if is_drop(result):
        return result
    proto, src, dst, l4, ip_end = result
    assert l3 + 20 <= l4 <= ip_end <= len(frame)
    verify_ipv4_checksum(view, l3, l4)
    if proto == IPPROTO_ICMP:
        result = parse_icmp(view, l4, ip_end)
        if is_drop(result):
            return result
        inner_l3 = result[2]
        if not inner_l3:
            return "icmp"
        assert inner_l3 == l4 + 8
        exercise_icmp_error(frame, l3, l4, ip_end, inner_l3, rng)
        return "icmp-error"
    result = parse_ports(view, l4, ip_end, proto)
    if is_drop(result):
        return result
    exercise_ports(frame, l3, l4, ip_end, proto, src, dst, rng)
    return "tcp" if proto == IPPROTO_TCP else "udp"


def test_fuzz_every_frame_has_one_outcome():
    rng = random.Random(SEED)
    outcomes = Counter()
    frames = 0
    for data in corpus(rng):
        frames += 1
        try:
            outcomes[outcome(data, rng)] += 1
        except Exception as error:  # name the frame that broke it
            raise AssertionError(f"frame {frames}: {data.hex()}") from error
    assert frames >= 100_000
    assert sum(outcomes.values()) == frames
    # The corpus reaches every reason a parser can give, and every kind of acceptance.
    unreachable_here = {Drop.BAD_IP_CHECKSUM, Drop.TTL_EXCEEDED, Drop.TOO_BIG}
    assert set(Drop) - unreachable_here <= set(outcomes), outcomes
    assert {"arp", "icmp", "icmp-error", "tcp", "udp"} <= set(outcomes), outcomes
