"""Open-loop load generators that run inside a client host and print a JSON summary.

- ``udp-rr``: small UDP requests at a set rate, each echoed by a real server (so inbound and
  outbound packet rates are equal, as in the seed's 3000 in / 3000 out), with loss and RTT
  percentiles. Requests carry a sequence number and a send timestamp.
- ``tcp-crr``: short TCP connections at a set rate (connect, small request, small reply,
  close), enough to build the seed's ~62,000 table entries at ~2,000 connections/s.

Open loop: sends are scheduled at start + i/rate whatever the answers do, so an overloaded
director shows up as loss, not as a slower sender; the rate actually sent is measured and
reported (the fidelity check compares it with the target). Rates use measured elapsed time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
import sys
import time

from testbed.measure.analysis import percentiles

HEADER = struct.Struct("!Qd")  # sequence number, send time (monotonic seconds)


def _percentiles(values: list[float]) -> dict[str, float]:
    """RTT/latency percentiles; NaN when nothing came back (overload shows as loss)."""
    if not values:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    return percentiles(values)


def udp_rr(
    dst: str,
    port: int,
    rate_pps: float,
    duration_s: float,
    payload_bytes: int = 64,
    drain_s: float = 0.5,
) -> dict:
    """Send ``rate_pps`` requests per second for ``duration_s``; count echoes and RTTs."""
    payload_bytes = max(payload_bytes, HEADER.size)
    pad = b"\0" * (payload_bytes - HEADER.size)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.connect((dst, port))
    sock.setblocking(False)
    interval = 1.0 / rate_pps
    sent = received = send_errors = 0
    rtts_ms: list[float] = []
    answered: list[int] = []  # sequence numbers that came back, for the longest outage
    pack, unpack, clock = HEADER.pack, HEADER.unpack_from, time.monotonic
    start = clock()
    end = start + duration_s
    next_send = start
    while True:
        now = clock()
        if now >= end:
            break
        # Send what is due (catching up in a burst if we fell behind), then read replies.
        while next_send <= now and next_send < end:
            try:
                sock.send(pack(sent, clock()) + pad)
            except (BlockingIOError, OSError):
                send_errors += 1
            sent += 1
            next_send = start + sent * interval
        for _ in range(64):
            try:
                data = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # ICMP unreachable reported on the connected socket
            received += 1
            seq, t_sent = unpack(data)
            answered.append(seq)
            rtts_ms.append((clock() - t_sent) * 1000)
        if next_send > clock():
            time.sleep(min(0.0002, max(0.0, next_send - clock())))
    send_elapsed = clock() - start
    deadline = clock() + drain_s
    while clock() < deadline:
        try:
            data = sock.recv(2048)
            received += 1
            seq, t_sent = unpack(data)
            answered.append(seq)
            rtts_ms.append((clock() - t_sent) * 1000)
        except (BlockingIOError, InterruptedError):
            time.sleep(0.001)
        except OSError:
            break
    sock.close()
    return {
        "workload": "udp-rr",
        "target_pps": rate_pps,
        "sent": sent - send_errors,
        "send_errors": send_errors,
        "received": received,
        "elapsed_s": send_elapsed,
        "sent_pps": (sent - send_errors) / send_elapsed,
        "received_pps": received / send_elapsed,
        "loss_pct": 100.0 * (1 - received / sent) if sent else 0.0,
        "rtt_ms": _percentiles(rtts_ms),
        "max_gap_ms": longest_gap(answered, sent) * interval * 1000,
    }


def longest_gap(answered: list[int], sent: int) -> int:
    """The longest run of consecutive requests that got no answer (an outage, in requests)."""
    if not answered:
        return sent
    seqs = sorted(set(answered))
    gaps = (
        [seqs[0]]
        + [b - a - 1 for a, b in zip(seqs, seqs[1:], strict=False)]
        + [sent - 1 - seqs[-1]]
    )
    return max(gaps)


FIRST_PORT, LAST_PORT = 1024, 65535
BIND_TRIES = 64  # ports tried past one in use before a connection counts as failed


class SourcePorts:
    """Source ports for connections from given addresses: on each address the ports in
    sequence from a random start (the caller takes the addresses in turn), so a (source,
    port) pair comes round again only after ``len(sources)`` x 64,512 connections. The
    kernel's own choice (near random over half its range per destination) repeats pairs far
    sooner, and a repeated pair takes over the director's entry of the old connection: a
    table that should hold the last two minutes' 240,000 connections held 80% of them
    (2,000/s from 16 addresses)."""

    def __init__(self, sources: tuple[str, ...], rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self.next = {s: rng.randrange(FIRST_PORT, LAST_PORT + 1) for s in sources}

    def take(self, src: str) -> int:
        """The next port of ``src``'s sequence."""
        port = self.next[src]
        self.next[src] = port + 1 if port < LAST_PORT else FIRST_PORT
        return port


def _bound_socket(src: str, ports: SourcePorts) -> socket.socket:
    """A non-blocking TCP socket bound to ``src`` and the next free port of its sequence."""
    for _ in range(BIND_TRIES):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((src, ports.take(src)))
            sock.setblocking(False)
            return sock
        except OSError:
            sock.close()
    raise OSError(f"no free port on {src} in {BIND_TRIES} tries")


async def _open(dst: str, port: int, src: str | None, ports: SourcePorts | None):
    if src is None or ports is None:
        return await asyncio.open_connection(dst, port)
    sock = _bound_socket(src, ports)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (dst, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def _one_conn(
    dst: str,
    port: int,
    timeout_s: float,
    stats: dict,
    lat_ms: list[float],
    src: str | None = None,
    ports: SourcePorts | None = None,
) -> None:
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(_open(dst, port, src, ports), timeout_s)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        await asyncio.wait_for(reader.read(), timeout_s)
        writer.close()
        stats["ok"] += 1
        lat_ms.append((time.monotonic() - t0) * 1000)
    except (OSError, asyncio.TimeoutError):
        stats["failed"] += 1


async def _tcp_crr(
    dst: str,
    port: int,
    rate_cps: float,
    duration_s: float,
    timeout_s: float,
    sources: tuple[str, ...] = (),
) -> dict:
    stats = {"ok": 0, "failed": 0}
    source_ports = SourcePorts(sources) if sources else None
    lat_ms: list[float] = []
    tasks = set()
    start = time.monotonic()
    started = 0
    while True:
        now = time.monotonic()
        if now - start >= duration_s:
            break
        due = int((now - start) * rate_cps) + 1
        while started < due:
            src = sources[started % len(sources)] if sources else None
            task = asyncio.create_task(
                _one_conn(dst, port, timeout_s, stats, lat_ms, src, source_ports)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            started += 1
        await asyncio.sleep(min(0.001, 1 / rate_cps))
    elapsed = time.monotonic() - start
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s + 1)
    return {
        "workload": "tcp-crr",
        "target_cps": rate_cps,
        "started": started,
        "completed": stats["ok"],
        "failed": stats["failed"],
        "elapsed_s": elapsed,
        "started_cps": started / elapsed,
        "completed_cps": stats["ok"] / elapsed,
        "latency_ms": _percentiles(lat_ms),
    }


def tcp_crr(
    dst: str,
    port: int,
    rate_cps: float,
    duration_s: float,
    timeout_s: float = 3.0,
    sources: tuple[str, ...] = (),
) -> dict:
    """Open ``rate_cps`` short connections per second for ``duration_s``, from ``sources`` in
    turn when given (the host's own addresses: each one multiplies the client ports available
    towards the VIP, and so how long before a client port, and its table entry, is reused)."""
    return asyncio.run(_tcp_crr(dst, port, rate_cps, duration_s, timeout_s, sources))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.traffic.loadgen")
    sub = parser.add_subparsers(dest="workload", required=True)
    u = sub.add_parser("udp-rr", help="UDP request/response at a set rate (open loop)")
    u.add_argument("dst")
    u.add_argument("--port", type=int, default=7)
    u.add_argument("--rate-pps", type=float, required=True)
    u.add_argument("--duration-s", type=float, default=5)
    u.add_argument("--payload-bytes", type=int, default=64)
    u.add_argument(
        "--drain-s",
        type=float,
        default=0.5,
        help="Seconds to keep counting replies after the last request.",
    )
    t = sub.add_parser("tcp-crr", help="short TCP connections at a set rate (open loop)")
    t.add_argument("dst")
    t.add_argument("--port", type=int, default=80)
    t.add_argument("--rate-cps", type=float, required=True)
    t.add_argument("--duration-s", type=float, default=5)
    t.add_argument("--timeout-s", type=float, default=3)
    t.add_argument(
        "--src",
        action="append",
        default=[],
        help="Source address to connect from (repeat: connections take them in turn).",
    )
    args = parser.parse_args(argv)
    if args.workload == "udp-rr":
        out = udp_rr(
            args.dst, args.port, args.rate_pps, args.duration_s, args.payload_bytes, args.drain_s
        )
    else:
        out = tcp_crr(
            args.dst, args.port, args.rate_cps, args.duration_s, args.timeout_s, tuple(args.src)
        )
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
