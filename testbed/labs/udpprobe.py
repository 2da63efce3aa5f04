"""Send one UDP datagram from each of several fixed source ports; report which were echoed.

For: lab checks that need new flows with known source ports (a scheduler's choice per flow,
``ipvsadm -L -n -c`` then tells where each went). Run inside a client host::

    python -m testbed.labs.udpprobe 10.0.0.100 7 --sports 41001,41002 --timeout-s 1

prints one JSON object: source port -> whether its datagram came back.

Not for: load (see `testbed.traffic.loadgen`).
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time


def probe(dst: str, port: int, sports: list[int], timeout_s: float) -> dict[int, bool]:
    """Send from every port at once, then wait up to ``timeout_s`` for the echoes."""
    sel = selectors.DefaultSelector()
    answered = dict.fromkeys(sports, False)
    socks = []
    try:
        for sport in sports:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            try:
                s.bind(("", sport))
            except OSError:
                continue  # the port is taken here: reported as not answered
            s.setblocking(False)
            s.sendto(f"lab probe {sport}".encode(), (dst, port))
            sel.register(s, selectors.EVENT_READ, sport)
        deadline = time.monotonic() + timeout_s
        while sel.get_map():
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                break
            for key, _ in sel.select(timeout=left_s):
                sel.unregister(key.fileobj)
                try:
                    key.fileobj.recv(2048)
                except OSError:
                    continue  # an ICMP error for this flow: not answered
                answered[key.data] = True
    finally:
        for s in socks:
            s.close()
    return answered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.labs.udpprobe")
    parser.add_argument("dst")
    parser.add_argument("port", type=int)
    parser.add_argument("--sports", required=True, help="comma-separated source ports")
    parser.add_argument("--timeout-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    sports = [int(p) for p in args.sports.split(",") if p]
    print(
        json.dumps(
            {str(k): v for k, v in probe(args.dst, args.port, sports, args.timeout_s).items()}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
