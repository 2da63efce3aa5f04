"""IP-in-IP decapsulation in user space, for real servers on kernels without ``ipip``.

A TUN real server (``ipvsadm ... -i``) receives each client packet inside an outer IPv4 header
(protocol 4) and normally unwraps it on the kernel's ``tunl0``. Small VM kernels (like the one
these tests run on) have no ipip module, so this process does what tunl0 would: it reads
protocol-4 packets on a raw socket and writes the inner packet into a TUN device, where the
kernel receives it as if it had arrived there. The VIP lives on ``lo``, so the inner packet
is delivered locally and answered directly to the client, as with a real tunnel. Reverse-path
filtering is turned off for the device, as the LVS-HOWTO does for tunl0.

    python -m testbed.traffic.ipipd --dev lvs-ipip
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4


def kernel_has_ipip() -> bool:
    """Can this kernel create ipip tunnels? Probed in a throwaway network namespace."""
    res = subprocess.run(
        ["unshare", "--net", "ip", "link", "add", "probe0", "type", "ipip", "remote", "192.0.2.1"],
        capture_output=True,
        check=False,
    )
    return res.returncode == 0


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def inner_packet(outer: bytes) -> bytes | None:
    """The packet inside an IP-in-IP datagram, or None if it is not one."""
    if len(outer) < 40 or outer[0] >> 4 != 4 or outer[9] != IPPROTO_IPIP:
        return None
    ihl = (outer[0] & 0x0F) * 4
    inner = outer[ihl:]
    if len(inner) < 20 or inner[0] >> 4 != 4:
        return None
    return inner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.traffic.ipipd")
    parser.add_argument("--dev", default="lvs-ipip", help="name of the TUN device to create")
    args = parser.parse_args(argv)
    tun = open_tun(args.dev)
    for cmd in (
        ["ip", "link", "set", args.dev, "up"],
        ["sysctl", "-qw", f"net.ipv4.conf.{args.dev}.rp_filter=0"],
        ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
    ):
        subprocess.run(cmd, check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"decapsulating IP-in-IP into {args.dev}", flush=True)
    while True:
        inner = inner_packet(sock.recv(65535))
        if inner is not None:
            try:
                os.write(tun, inner)
            except OSError:
                pass  # the kernel refused the packet (e.g. malformed): as a tunnel would drop it


if __name__ == "__main__":
    sys.exit(main())
