"""Send crafted Ethernet frames from inside a host: malformed floods and hand-made packets.

    python -m testbed.traffic.rawsend --iface c1-eth0 --dst-mac 02:..:01 \
        --kind malformed --count 10000

``malformed`` frames are addressed to the given MAC and carry broken IPv4 (bad IHL and lengths,
truncated headers, fragments, options, wrong versions, garbage L4) aimed at ``--dst-ip`` so
they reach the director's service path; the director must count and drop every one and go
on serving. Uses a seeded generator so a run can be repeated.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.traffic.rawsend")
    parser.add_argument("--iface", required=True)
    parser.add_argument("--dst-mac", required=True)
    parser.add_argument("--dst-ip", required=True)
    parser.add_argument("--src-ip", default="10.0.1.11")
    parser.add_argument("--kind", choices=["malformed"], default="malformed")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with open(f"/sys/class/net/{args.iface}/address") as f:
        src_mac = bytes.fromhex(f.read().strip().replace(":", ""))
    dst_mac = bytes.fromhex(args.dst_mac.replace(":", ""))
    src_ip = struct.unpack("!I", socket.inet_aton(args.src_ip))[0]
    dst_ip = struct.unpack("!I", socket.inet_aton(args.dst_ip))[0]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
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
