"""Fuzz: over 100,000 random and mutated frames through the whole per-frame path.

One Forwarder serves DR, TUN and NAT services (and a persistent one) over three fake ports.
Frames: valid seeds built with os-ken (DR, TUN and NAT flows, NAT replies, ICMP errors both
ways, echo, ARP, VLAN tags, IP options), each truncated at every length, with every IHL, a
sweep of total lengths and fragment flags; then, seeded, random mutations of the seeds,
random IPv4 over random payloads, VLAN stacks, other ethertypes, ARP garbage and random
bytes, some passed with the checksum left to offload. Checksums of each input are made right
here (independently of testbed.director), so every frame sent must verify.

Per frame: nothing escapes `handle`; exactly one outcome counter moves; nothing lands in the
catch-all (``error:*``). Every frame sent is an ARP request from its port or IPv4 from its
port with every checksum right, and either goes toward a VIP or a real server (inbound), or
comes from a VIP (a translated reply). Real servers are quiesced, deleted and re-added
midway. Runs in a few seconds; the seed makes a failure replay.
"""

import random
import struct

from testbed.director.conntable import F_TEMPLATE
from tests.unit.fakes import (
    ACK,
    FIN,
    ICMP_ERRORS,
    PSH,
    SYN,
    FakePort,
    Lab,
    accounted,
    arp_frame,
    assert_valid_ipv4_frame,
    icmp_echo_frame,
    icmp_error_frame,
    internet_checksum,
    ip,
    ip_packet,
    l3_offset,
    ones_sum,
    route,
    tcp_frame,
    udp_frame,
)

SEED = 2003
FRAMES = 105_000

LAN = FakePort("d1-eth0", "02:00:00:00:00:02", "10.0.0.2")
OUT = FakePort("d1-eth1", "02:00:00:00:01:02", "10.0.1.2")
IN = FakePort("d1-eth2", "02:00:00:00:02:02", "192.168.0.2")
PORTS = (LAN, OUT, IN)
DVIP, NVIP = "10.0.0.100", "10.0.1.100"
FW = ("10.0.0.1", "02:00:00:00:00:01")
DR_RS = {
    "10.0.0.11": "02:00:00:00:00:0b",
    "10.0.0.12": "02:00:00:00:00:0c",
    "10.0.0.13": "02:00:00:00:00:0d",
}
NAT_RS = {"192.168.0.11": "02:00:00:00:02:0b", "192.168.0.12": "02:00:00:00:02:0c"}
CLIENTS = {f"10.0.1.{i}": f"02:00:00:00:01:{i:02x}" for i in (11, 12, 13, 14)}
TUN_RS = "10.0.2.21"
RULES = "".join(
    ["-A -t 10.0.0.100:80 -s rr\n"]
    + [f"-a -t 10.0.0.100:80 -r {a}:80 -g -w 1\n" for a in DR_RS]
    + [
        "-A -u 10.0.0.100:7 -s wrr\n",
        "-a -u 10.0.0.100:7 -r 10.0.0.11:7 -g -w 2\n",
        "-a -u 10.0.0.100:7 -r 10.0.0.12:7 -g -w 1\n",
    ]
    + [
        "-A -t 10.0.0.100:443 -s wlc\n",
        f"-a -t 10.0.0.100:443 -r {TUN_RS}:443 -i -w 1\n",
        "-a -t 10.0.0.100:443 -r 10.0.0.13:443 -i -w 1\n",
    ]
    + ["-A -t 10.0.1.100:80 -s rr\n"]
    + [f"-a -t 10.0.1.100:80 -r {a}:8080 -m -w 1\n" for a in NAT_RS]
    + [
        "-A -u 10.0.1.100:7 -s rr\n",
        "-a -u 10.0.1.100:7 -r 192.168.0.11:7007 -m -w 1\n",
        "-A -t 10.0.1.100:21 -s rr -p 60\n",
        "-a -t 10.0.1.100:21 -r 192.168.0.11:21 -m\n",
        "-a -t 10.0.1.100:21 -r 192.168.0.12:21 -m\n",
    ]
)
VIPS = {ip(DVIP), ip(NVIP)}
INBOUND_DSTS = VIPS | {ip(a) for a in (*DR_RS, *NAT_RS, TUN_RS)}
VLAN_TPIDS = (0x8100, 0x88A8)


def make_lab() -> Lab:
    lab = Lab(
        list(PORTS),
        [
            route("10.0.0.0/24", LAN.name),
            route("10.0.1.0/24", OUT.name),
            route("192.168.0.0/24", IN.name),
            route("0.0.0.0/0", LAN.name, FW[0]),
        ],
        RULES,
        seed=SEED,
    )
    for addr, m in [FW, *DR_RS.items(), *NAT_RS.items(), *CLIENTS.items()]:
        lab.learn(addr, m)
    return lab


# --- seeds ---------------------------------------------------------------------------------


def seeds() -> list[tuple[bytearray, FakePort]]:
    """Valid frames, in an order that makes the connections the later ones belong to."""
    c1, c2 = "10.0.1.11", "10.0.1.12"
    fw_mac, c1_mac, c2_mac = FW[1], CLIENTS[c1], CLIENTS[c2]
    lan, out, inn = LAN.mac_text, OUT.mac_text, IN.mac_text
    rs1, rs2 = "192.168.0.11", "192.168.0.12"
    frames = [
        (tcp_frame(c1, DVIP, 1111, 80, SYN, eth_src=fw_mac, eth_dst=lan), LAN),
        (tcp_frame(c1, DVIP, 1111, 80, ACK, eth_src=fw_mac, eth_dst=lan), LAN),
        (
            tcp_frame(
                c1,
                DVIP,
                1111,
                80,
                PSH | ACK,
                payload=b"GET / HTTP/1.0\r\n\r\n",
                eth_src=fw_mac,
                eth_dst=lan,
            ),
            LAN,
        ),
        (udp_frame(c1, DVIP, 2222, 7, payload=b"echo", eth_src=fw_mac, eth_dst=lan), LAN),
        (tcp_frame(c2, DVIP, 3333, 443, SYN, eth_src=fw_mac, eth_dst=lan), LAN),
        (
            tcp_frame(
                c2,
                DVIP,
                3333,
                443,
                PSH | ACK,
                payload=b"\x16\x03\x01" * 30,
                eth_src=fw_mac,
                eth_dst=lan,
            ),
            LAN,
        ),
        (tcp_frame(c1, NVIP, 4444, 80, SYN, eth_src=c1_mac, eth_dst=out), OUT),
        (
            tcp_frame(c1, NVIP, 4444, 80, PSH | ACK, payload=b"GET /", eth_src=c1_mac, eth_dst=out),
            OUT,
        ),
        (tcp_frame(c2, NVIP, 4445, 21, SYN, eth_src=c2_mac, eth_dst=out), OUT),
        (udp_frame(c1, NVIP, 5555, 7, payload=b"q" * 11, eth_src=c1_mac, eth_dst=out), OUT),
    ]
    for rs in NAT_RS:  # one of them holds the connection
        frames.append(
            (tcp_frame(rs, c1, 8080, 4444, SYN | ACK, eth_src=NAT_RS[rs], eth_dst=inn), IN)
        )
        frames.append(
            (
                tcp_frame(
                    rs,
                    c1,
                    8080,
                    4444,
                    FIN | ACK,
                    payload=b"HTTP/1.0 200 OK",
                    eth_src=NAT_RS[rs],
                    eth_dst=inn,
                ),
                IN,
            )
        )
        frames.append((tcp_frame(rs, c2, 21, 4445, SYN | ACK, eth_src=NAT_RS[rs], eth_dst=inn), IN))
    reply = udp_frame(rs1, c1, 7007, 5555, payload=b"r" * 13, eth_src=NAT_RS[rs1], eth_dst=inn)
    frames.append((reply, IN))
    seen_by_client = udp_frame(NVIP, c1, 7, 5555, payload=b"r" * 13, eth_src=out, eth_dst=c1_mac)
    seen_by_server = udp_frame(
        c1, rs1, 5555, 7007, payload=b"q" * 11, eth_src=inn, eth_dst=NAT_RS[rs1]
    )
    dr_reply = tcp_frame(DVIP, c1, 80, 1111, SYN | ACK, eth_src=DR_RS["10.0.0.11"], eth_dst=fw_mac)
    frames += [
        (icmp_error_frame(c1, NVIP, ip_packet(seen_by_client), eth_src=c1_mac, eth_dst=out), OUT),
        (
            icmp_error_frame(rs1, c1, ip_packet(seen_by_server), eth_src=NAT_RS[rs1], eth_dst=inn),
            IN,
        ),
        (
            icmp_error_frame(
                rs2, c1, ip_packet(seen_by_server)[:28], code=1, eth_src=NAT_RS[rs2], eth_dst=inn
            ),
            IN,
        ),
        (
            icmp_error_frame(
                FW[0], DVIP, ip_packet(dr_reply)[:28], code=4, eth_src=fw_mac, eth_dst=lan
            ),
            LAN,
        ),
        (
            icmp_error_frame(
                FW[0],
                NVIP,
                ip_packet(seen_by_client),
                type_=11,
                code=0,
                eth_src=fw_mac,
                eth_dst=out,
            ),
            OUT,
        ),
        (icmp_echo_frame(c1, NVIP, eth_src=c1_mac, eth_dst=out), OUT),
        (icmp_echo_frame(c1, DVIP, eth_src=fw_mac, eth_dst=lan), LAN),
        (arp_frame(2, NAT_RS[rs1], rs1, inn, IN.ip_text), IN),
        (
            arp_frame(1, c1_mac, c1, "00:00:00:00:00:00", OUT.ip_text, eth_dst="ff:ff:ff:ff:ff:ff"),
            OUT,
        ),
        (arp_frame(2, DR_RS["10.0.0.12"], "10.0.0.12", lan, LAN.ip_text), LAN),
    ]
    tagged = []
    for frame, port in frames[:10] + frames[-8:-3]:
        tagged.append((with_tags(frame, [(0x8100, 10)]), port))
        tagged.append((with_tags(frame, [(0x88A8, 20), (0x8100, 10)]), port))
        tagged.append((with_ip_options(frame), port))
    return frames + tagged


def with_tags(frame: bytes, tags) -> bytearray:
    return bytearray(
        frame[:12] + b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in tags) + frame[12:]
    )


def with_ip_options(frame: bytes) -> bytearray:
    """The frame with 8 bytes of IP options (record route, then end of list)."""
    out = bytearray(frame)
    if out[12:14] != b"\x08\x00":
        return out
    options = b"\x07\x07\x04\x00\x00\x00\x00\x00"
    ihl = (out[14] & 15) * 4
    total = struct.unpack_from("!H", out, 16)[0]
    out[14 + ihl : 14 + ihl] = options
    out[14] = 0x40 | (ihl + 8) // 4
    struct.pack_into("!H", out, 16, total + 8)
    fix_checksums(out)
    return out


# --- checksums, made right independently ---------------------------------------------------


def _put(frame: bytearray, at: int, value: int) -> None:
    frame[at] = value >> 8
    frame[at + 1] = value & 0xFF


def fix_checksums(frame: bytearray, partial: bool = False) -> bool:
    """Make the IPv4 header checksum right and, where the packet holds them, the TCP, UDP
    (unless 0) and ICMP ones, and an ICMP error's quoted header checksum. With ``partial``,
    leave a TCP/UDP checksum as Linux hands it over for offload (the pseudo-header sum);
    returns whether it did, i.e. whether the frame is to be passed with csum_partial."""
    size = len(frame)
    if size < 14:
        return False
    l3, ethertype = 14, frame[12] << 8 | frame[13]
    while ethertype in VLAN_TPIDS and l3 < 22 and size >= l3 + 4:
        ethertype = frame[l3 + 2] << 8 | frame[l3 + 3]
        l3 += 4
    if ethertype != 0x0800 or size < l3 + 20 or frame[l3] >> 4 != 4:
        return False
    ihl = (frame[l3] & 15) * 4
    if ihl < 20 or l3 + ihl > size:
        return False
    _put(frame, l3 + 10, 0)
    _put(frame, l3 + 10, internet_checksum(bytes(frame[l3 : l3 + ihl])))
    total = frame[l3 + 2] << 8 | frame[l3 + 3]
    if total < ihl or l3 + total > size or (frame[l3 + 6] << 8 | frame[l3 + 7]) & 0x3FFF:
        return False
    l4, end, proto = l3 + ihl, l3 + total, frame[l3 + 9]
    addrs = bytes(frame[l3 + 12 : l3 + 20])
    if proto == 6 and end - l4 >= 18:
        pseudo = ones_sum(addrs + struct.pack("!HH", 6, end - l4))
        _put(frame, l4 + 16, 0)
        if partial:
            _put(frame, l4 + 16, pseudo)
            return True
        _put(frame, l4 + 16, internet_checksum(bytes(frame[l4:end]), pseudo))
    elif proto == 17 and end - l4 >= 8:
        udp_len = frame[l4 + 4] << 8 | frame[l4 + 5]
        if not 8 <= udp_len <= end - l4 or frame[l4 + 6 : l4 + 8] == b"\0\0":
            return False
        pseudo = ones_sum(addrs + struct.pack("!HH", 17, udp_len))
        _put(frame, l4 + 6, 0)
        if partial and udp_len == end - l4:
            _put(frame, l4 + 6, pseudo)
            return True
        _put(frame, l4 + 6, internet_checksum(bytes(frame[l4 : l4 + udp_len]), pseudo) or 0xFFFF)
    elif proto == 1 and end - l4 >= 4:
        inner = l4 + 8
        if frame[l4] in ICMP_ERRORS and end - inner >= 20 and frame[inner] >> 4 == 4:
            inner_ihl = (frame[inner] & 15) * 4
            if inner_ihl >= 20 and inner + inner_ihl <= end:
                _put(frame, inner + 10, 0)
                _put(frame, inner + 10, internet_checksum(bytes(frame[inner : inner + inner_ihl])))
        _put(frame, l4 + 2, 0)
        _put(frame, l4 + 2, internet_checksum(bytes(frame[l4:end])))
    return False


# --- frame generators ----------------------------------------------------------------------


def systematic(seed_frames):
    """Each seed cut at every length, with every IHL, a sweep of total lengths, and each
    fragment flag combination."""
    for frame, port in seed_frames:
        for cut in range(len(frame) + 1):
            yield bytearray(frame[:cut]), port
        l3, ethertype = l3_offset(frame)
        if ethertype != 0x0800:
            continue
        for ihl in range(16):
            f = bytearray(frame)
            f[l3] = 0x40 | ihl
            yield f, port
        for total in range(0, len(frame) - l3 + 9):
            f = bytearray(frame)
            _put(f, l3 + 2, total)
            yield f, port
        for flags_frag in (0x2000, 0x0001, 0x6000, 0x1FFF, 0x8000, 0x4000, 0x3FFF):
            f = bytearray(frame)
            _put(f, l3 + 6, flags_frag)
            yield f, port


def interesting_offsets(frame: bytes) -> list[int]:
    """Header bytes worth hitting: ethertype, IP header, the first L4 and quoted bytes."""
    l3 = 14
    return [12, 13, *range(l3, min(len(frame), l3 + 20 + 8 + 28 + 20))]


def mutate(rng: random.Random, frame: bytes) -> bytearray:
    f = bytearray(frame)
    targets = interesting_offsets(f)
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if not f:
            break
        if kind < 0.45:
            f[rng.choice(targets) % len(f)] ^= 1 << rng.randrange(8)
        elif kind < 0.75:
            f[rng.choice(targets) % len(f)] = rng.randrange(256)
        elif kind < 0.85:
            f[rng.randrange(len(f))] = rng.randrange(256)
        elif kind < 0.92:
            del f[rng.randrange(len(f) + 1) :]
        else:
            f += rng.randbytes(rng.randrange(1, 64))
    return f


def random_ipv4(rng: random.Random) -> bytearray:
    """Random IPv4 between the lab's addresses, with a random transport of random bytes."""
    everyone = [DVIP, NVIP, *DR_RS, *NAT_RS, *CLIENTS, TUN_RS, "8.8.8.8"]
    src, dst = ip(rng.choice(everyone)), ip(rng.choice(everyone))
    proto = rng.choice((1, 6, 17, 6, 17, 4, 47, rng.randrange(256)))
    payload = bytearray(rng.randbytes(rng.choice((0, 4, 8, 12, 20, 28, 40, 60, 200))))
    if proto in (6, 17) and len(payload) >= 4:
        struct.pack_into(
            "!HH",
            payload,
            0,
            rng.choice((1111, 4444, 5555, 8080, 7007)),
            rng.choice((80, 7, 443, 21, 8080, 7007, 4444, 5555)),
        )
    if proto == 17 and len(payload) >= 8:
        _put(payload, 4, rng.choice((len(payload), 8, rng.randrange(65536))))
    header = struct.pack(
        "!BBHHHBBHII",
        0x45,
        0,
        20 + len(payload),
        rng.randrange(65536),
        rng.choice((0, 0x4000)),
        rng.choice((64, 1, 2, 255)),
        proto,
        0,
        src,
        dst,
    )
    eth = rng.choice((LAN, OUT, IN)).mac + bytes(6) + b"\x08\x00"
    return bytearray(eth + header + payload)


def arp_garbage(rng: random.Random) -> bytearray:
    if rng.random() < 0.5:
        return bytearray(b"\xff" * 6 + bytes(6) + b"\x08\x06" + rng.randbytes(rng.randrange(60)))
    who = rng.choice([*DR_RS, *NAT_RS, *CLIENTS, FW[0], "10.9.9.9"])
    body = struct.pack(
        "!HHBBH6sI6sI",
        rng.choice((1, 1, 6, rng.randrange(65536))),
        rng.choice((0x0800, 0x0800, 0x86DD)),
        rng.choice((6, 6, 8)),
        rng.choice((4, 4, 16)),
        rng.choice((1, 2, 3, rng.randrange(65536))),
        bytes([2]) + rng.randbytes(5),
        ip(who),
        bytes(6),
        rng.randrange(1 << 32),
    )
    return bytearray(b"\xff" * 6 + bytes(6) + b"\x08\x06" + body[: rng.randrange(20, 29)])


def randomised(rng: random.Random, seed_frames, count: int):
    for _ in range(count):
        roll = rng.random()
        frame, port = rng.choice(seed_frames)
        if roll < 0.62:
            frame = mutate(rng, frame)
        elif roll < 0.78:
            frame = random_ipv4(rng)
        elif roll < 0.84:
            tags = [
                (rng.choice((0x8100, 0x88A8, 0x9100)), rng.randrange(4096))
                for _ in range(rng.randrange(4))
            ]
            frame = with_tags(frame, tags)
        elif roll < 0.88:
            frame = bytearray(frame)
            frame[12:14] = rng.choice((b"\x86\xdd", b"\x88\xcc", b"\x81\x00", rng.randbytes(2)))
        elif roll < 0.94:
            frame = arp_garbage(rng)
        elif roll < 0.97:
            frame = bytearray(rng.randbytes(rng.choice((0, 1, 13, 14, 33, 34, 60, 1514))))
        else:
            frame = bytearray(frame)  # the seed itself, so its connections live on
        if rng.random() < 0.15:
            port = rng.choice(PORTS)
        yield frame, port


# --- the run -------------------------------------------------------------------------------


def check_sent(port: FakePort, frame: bytes) -> None:
    """An ARP request from this port, or IPv4 from it with right checksums going in to a
    VIP or real server, or out from a VIP (or IP-in-IP from the port to a TUN server)."""
    assert frame[6:12] == port.mac
    if frame[12:14] == b"\x08\x06":
        op, sender_mac, sender_ip = struct.unpack_from("!6xH6sI", frame, 14)
        assert (frame[:6], op, sender_mac, sender_ip) == (b"\xff" * 6, 1, port.mac, port.ip)
        return
    pkt = assert_valid_ipv4_frame(frame)
    src, dst = struct.unpack_from("!II", pkt, 12)
    if pkt[9] == 4:
        assert src == port.ip and dst in (ip(TUN_RS), ip("10.0.0.13"))
        assert struct.unpack_from("!I", pkt, 20 + 16)[0] in VIPS
    else:
        assert dst in INBOUND_DSTS or src in VIPS, (src, dst)


def test_fuzz_the_per_frame_path():
    rng = random.Random(SEED)
    lab = make_lab()
    fwd, director = lab.fwd, lab.director
    seed_frames = [(bytearray(f), p) for f, p in seeds()]
    frames = [(bytearray(f), p) for f, p in seed_frames]
    frames += list(systematic(seed_frames))
    frames += randomised(rng, seed_frames, FRAMES - len(frames))
    assert len(frames) >= 100_000

    now, partials, sent = 10.0, 0, 0
    outcomes = fwd.forwarded + fwd.queued + sum(fwd.ignored.values()) + sum(fwd.dropped.values())
    quarter = len(frames) // 4
    for i, (frame, port) in enumerate(frames):
        now += 0.0005
        partial = fix_checksums(frame, partial=rng.random() < 0.1)
        partials += partial
        rx = fwd.rx
        fwd.handle(frame, port, partial, now)
        assert fwd.rx == rx + 1
        after = fwd.forwarded + fwd.queued + sum(fwd.ignored.values()) + sum(fwd.dropped.values())
        assert after == outcomes + 1, (i, bytes(frame).hex())
        outcomes = after
        for p in PORTS:
            for out in p.take():
                check_sent(p, out)
                sent += 1
        if i % 5000 == 4999:
            director.expire(now)
            director.tick(now)
            lab.neigh.refresh(now)
        if i == quarter:
            lab.ipvsadm("-e", "-t", f"{DVIP}:80", "-r", "10.0.0.12:80", "-g", "-w", "0")
        elif i == 2 * quarter:
            lab.ipvsadm("-d", "-t", f"{NVIP}:80", "-r", "192.168.0.11:8080")
            lab.ipvsadm("-d", "-t", f"{DVIP}:80", "-r", "10.0.0.11:80")
        elif i == 3 * quarter:
            lab.ipvsadm("-a", "-t", f"{NVIP}:80", "-r", "192.168.0.11:8080", "-m")

    assert accounted(fwd)
    assert not [k for k in fwd.dropped if k.startswith("error:")], fwd.dropped
    reasons = set(fwd.ignored) | set(fwd.dropped)
    for expected in (
        "short-frame",
        "bad-vlan",
        "short-ip",
        "bad-ip-version",
        "bad-ihl",
        "bad-total-length",
        "fragment",
        "not-ipv4",
        "short-l4",
        "bad-tcp-offset",
        "bad-udp-length",
        "bad-icmp",
        "short-arp",
        "unsupported-arp",
        "arp",
        "tcp-no-connection",
        "not-a-connection",
        "not-for-a-service",
        "no-service",
        "icmp-to-vip",
        "icmp-no-connection",
        "unsupported-l4",
        "ttl-exceeded",
        "real-server-deleted",
    ):
        assert expected in reasons, expected
    assert fwd.forwarded > 10_000 and sent > 10_000 and partials > 1000
    director.refresh_stats()
    assert director.stats.outpkts > 100 and director.stats.inpkts > 1000
    assert any(c.flags & F_TEMPLATE for c in director.conns)
    assert lab.neigh.arp_sent > 0
