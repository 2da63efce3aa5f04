"""Send crafted Ethernet frames from inside a host: malformed floods and hand-made packets.

    python -m testbed.traffic.rawsend --iface c1-eth0 --dst-mac 02:..:01 \
        --kind malformed --count 10000

``malformed`` frames are addressed to the given MAC and carry broken IPv4 (bad IHL and lengths,
truncated headers, fragments, options, wrong versions, garbage L4) aimed at ``--dst-ip`` so
they reach the director's service path; the director must count and drop every one and go
on serving. ``syn-flood`` frames are well-formed TCP SYNs to ``--dst-ip:--dst-port`` from
random sources in ``--src-net`` (spoofed: nobody there answers), each a new connection for
the director, at ``--rate-pps`` (0: as fast as it goes); it prints what it sent as JSON.
Uses a seeded generator so a run can be repeated.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def _ipv4(rng: random.Random, src: int, dst: int) -> bytes:
    payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
    ihl = 5
    proto = rng.choice((6, 17, 1, 4, 47))
    header = struct.pack(
        "!BBHHHBBHII", 0x45, 0, 20 + len(payload), rng.getrandbits(16), 0, 64, proto, 0, src, dst
    )
    return header[: ihl * 4] + payload


def malformed_frame(
    rng: random.Random, dst_mac: bytes, src_mac: bytes, src_ip: int, dst_ip: int
) -> bytes:
    """One broken frame, of a randomly chosen kind."""
    eth = dst_mac + src_mac + b"\x08\x00"
    ip = bytearray(_ipv4(rng, src_ip, dst_ip))
    kind = rng.randrange(8)
    if kind == 0:  # truncated inside the IP header
        ip = ip[: rng.randrange(0, 20)]
    elif kind == 1:  # IHL below 5 or past the end
        ip[0] = 0x40 | rng.choice((0, 1, 4, 15))
    elif kind == 2:  # total length past the frame or below the header
        struct.pack_into("!H", ip, 2, rng.choice((0, 10, 19, 1500, 65535)))
    elif kind == 3:  # a fragment
        struct.pack_into("!H", ip, 6, rng.choice((0x2000, 0x0001, 0x1FFF)))
    elif kind == 4:  # not version 4
        ip[0] = (rng.choice((0, 5, 6, 15)) << 4) | 5
    elif kind == 5:  # TCP/UDP header cut short
        ip[9] = rng.choice((6, 17))
        ip = ip[:20] + ip[20 : 20 + rng.randrange(0, 8)]
        struct.pack_into("!H", ip, 2, len(ip))
    elif kind == 6:  # random bytes after a valid Ethernet header
        ip = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
    else:  # bad TCP data offset
        ip[9] = 6
        tcp = bytearray(20)
        struct.pack_into(
            "!HHIIBBHHH", tcp, 0, 1234, 80, 0, 0, rng.choice((0x00, 0x40, 0xF0)), 0x02, 0, 0, 0
        )
        ip = ip[:20] + tcp
        struct.pack_into("!H", ip, 2, len(ip))
    return eth + bytes(ip)


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class SynFrames:
    """TCP SYN frames from random sources, checksums right (so a real server answers)."""

    def __init__(
        self, rng: random.Random, dst_mac: bytes, src_mac: bytes, dst_ip: int, dst_port: int
    ) -> None:
        self.rng = rng
        self.frame = bytearray(54)
        self.frame[0:14] = dst_mac + src_mac + b"\x08\x00"
        struct.pack_into("!BBHHHBBHII", self.frame, 14, 0x45, 0, 40, 0, 0x4000, 64, 6, 0, 0, dst_ip)
        # TCP: dport, ack 0, data offset 5, SYN, window 64240; sport, seq, checksum per frame
        struct.pack_into("!HHIIBBHHH", self.frame, 34, 0, dst_port, 0, 0, 0x50, 0x02, 64240, 0, 0)
        self.dst_port = dst_port
        # Sums of everything but the source address (and, for TCP, port and sequence).
        self.ip_base = 0x4500 + 40 + 0x4000 + (64 << 8 | 6) + (dst_ip >> 16) + (dst_ip & 0xFFFF)
        self.tcp_base = (dst_ip >> 16) + (dst_ip & 0xFFFF) + 6 + 20 + dst_port + 0x5002 + 64240

    def make(self, src: int) -> bytearray:
        sport = self.rng.randrange(1024, 65536)
        seq = self.rng.getrandbits(32)
        src_sum = (src >> 16) + (src & 0xFFFF)
        ip_csum = ~_fold(self.ip_base + src_sum) & 0xFFFF
        tcp_csum = ~_fold(self.tcp_base + src_sum + sport + (seq >> 16) + (seq & 0xFFFF)) & 0xFFFF
        frame = self.frame
        struct.pack_into("!HI", frame, 24, ip_csum, src)
        struct.pack_into("!HHI", frame, 34, sport, self.dst_port, seq)
        struct.pack_into("!H", frame, 50, tcp_csum)
        return frame


def syn_flood(
    sock: socket.socket,
    frames: SynFrames,
    rng: random.Random,
    src_net: ipaddress.IPv4Network,
    count: int,
    rate_pps: float,
) -> dict:
    """Send ``count`` SYNs from random addresses of ``src_net``, paced to ``rate_pps``."""
    base, span = int(src_net.network_address), src_net.num_addresses
    sent = errors = 0
    start = time.monotonic()
    for i in range(count):
        if rate_pps and not i % 256:
            ahead = start + i / rate_pps - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        try:
            sock.send(frames.make(base + rng.randrange(span)))
            sent += 1
        except OSError:
            errors += 1  # a full device queue: counted, not retried
    elapsed = time.monotonic() - start
    return {
        "sent": sent,
        "send_errors": errors,
        "elapsed_s": round(elapsed, 3),
        "rate_pps": round(sent / elapsed) if elapsed > 0 else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.traffic.rawsend")
    parser.add_argument("--iface", required=True)
    parser.add_argument("--dst-mac", required=True)
    parser.add_argument("--dst-ip", required=True)
    parser.add_argument("--src-ip", default="10.0.1.11")
    parser.add_argument("--kind", choices=["malformed", "syn-flood"], default="malformed")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dst-port", type=int, default=80, help="syn-flood: the service port")
    parser.add_argument(
        "--src-net", default="100.64.0.0/10", help="syn-flood: spoofed sources come from here"
    )
    parser.add_argument(
        "--rate-pps", type=float, default=0.0, help="syn-flood: frames/s (0: unpaced)"
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with open(f"/sys/class/net/{args.iface}/address") as f:
        src_mac = bytes.fromhex(f.read().strip().replace(":", ""))
    dst_mac = bytes.fromhex(args.dst_mac.replace(":", ""))
    src_ip = struct.unpack("!I", socket.inet_aton(args.src_ip))[0]
    dst_ip = struct.unpack("!I", socket.inet_aton(args.dst_ip))[0]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    if args.kind == "syn-flood":
        frames = SynFrames(rng, dst_mac, src_mac, dst_ip, args.dst_port)
        net = ipaddress.IPv4Network(args.src_net)
        print(json.dumps(syn_flood(sock, frames, rng, net, args.count, args.rate_pps)))
        return 0
    sent = 0
    for _ in range(args.count):
        frame = malformed_frame(rng, dst_mac, src_mac, src_ip, dst_ip)
        try:
            sock.send(frame)
            sent += 1
        except OSError:
            pass  # the kernel refuses some frames (too short for the device): not sent
    print(sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
