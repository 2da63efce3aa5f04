"""Pure parts of the traffic tools: percentiles, IP-in-IP unwrapping, malformed frames, SYN
flood frames."""

import random
import struct

from testbed.director.packet import Drop, parse_ipv4, parse_l3, parse_ports
from testbed.traffic.ipipd import inner_packet
from testbed.traffic.loadgen import _percentiles
from testbed.traffic.rawsend import SynFrames, malformed_frame
from tests.unit.fakes import assert_valid_ipv4_frame


def test_latency_percentiles_are_nan_when_nothing_came_back():
    assert str(_percentiles([])["p99"]) == "nan"
    assert _percentiles([1.0, 3.0])["p50"] == 2.0


def ip_header(proto: int, total: int) -> bytes:
    return struct.pack("!BBHHHBBHII", 0x45, 0, total, 0, 0, 64, proto, 0, 0x0A000002, 0x0A00000B)


def test_inner_packet_unwraps_ipip_only():
    inner = ip_header(6, 40) + bytes(20)
    outer = ip_header(4, 20 + len(inner)) + inner
    assert inner_packet(outer) == inner
    assert inner_packet(ip_header(17, 48) + inner[:28]) is None  # not protocol 4
    assert inner_packet(outer[:30]) is None


def test_malformed_frames_are_all_refused_by_the_parser():
    """Every kind rawsend makes is malformed or not forwardable: none parses to TCP/UDP ports
    that a director would schedule."""
    rng = random.Random(7)
    mac = bytes(6)
    forwardable = 0
    for _ in range(2000):
        frame = malformed_frame(rng, mac, mac, 0x0A00010B, 0x0A000064)
        r = parse_l3(frame)
        if r.__class__ is Drop:
            continue
        l3, _ = r
        r = parse_ipv4(frame, l3)
        if r.__class__ is Drop:
            continue
        proto, _src, _dst, l4, ip_end = r
        if proto in (6, 17) and parse_ports(frame, l4, ip_end, proto).__class__ is not Drop:
            forwardable += 1
    assert forwardable < 2000 * 0.05


def test_longest_gap_counts_the_longest_unanswered_run():
    from testbed.traffic.loadgen import longest_gap

    assert longest_gap([0, 1, 2, 3], 4) == 0
    assert longest_gap([0, 1, 7, 8, 9], 10) == 5
    assert longest_gap([3, 4], 6) == 3  # the first three never came back
    assert longest_gap([], 5) == 5


def test_syn_flood_frames_are_valid_syns_from_the_given_sources():
    """Each frame a well-formed SYN (checksums right, so a real server answers it) from the
    source asked for, to the service, with a fresh port and sequence number."""
    rng = random.Random(3)
    frames = SynFrames(rng, b"\x02" * 6, b"\x04" * 6, 0x0A000164, 80)
    seen = set()
    for src in (0x64400001, 0x647FFFFE, 0x64400001):
        frame = bytes(frames.make(src))
        pkt = assert_valid_ipv4_frame(frame)
        l3 = parse_l3(frame)
        proto, got_src, dst, l4, end = parse_ipv4(frame, l3[0])
        sport, dport, flags = parse_ports(frame, l4, end, proto)
        assert (proto, got_src, dst, dport, flags) == (6, src, 0x0A000164, 80, 0x02)
        assert len(pkt) == 40
        seen.add((sport, frame[38:42]))
    assert len(seen) == 3


def test_tcp_crr_takes_its_source_addresses_in_turn():
    """Each --src carries its share of the connections (loopback: 127.0.0.0/8 is all local)."""
    import socket
    import threading

    from testbed.traffic.loadgen import tcp_crr

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(2)
    peers: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, (addr, _port) = server.accept()
            except OSError:  # no more connections (timeout) or closed
                return
            with conn:
                conn.recv(100)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nok")
            peers.append(addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        out = tcp_crr(
            "127.0.0.1",
            server.getsockname()[1],
            rate_cps=20,
            duration_s=0.3,
            timeout_s=5,
            sources=("127.0.0.2", "127.0.0.3"),
        )
        thread.join(5)
    finally:
        server.close()
    assert out["failed"] == 0 and out["completed"] == out["started"] == len(peers) >= 2
    assert abs(peers.count("127.0.0.2") - peers.count("127.0.0.3")) <= 1


def test_source_ports_run_in_sequence_on_each_address_and_wrap():
    import random

    from testbed.traffic.loadgen import FIRST_PORT, LAST_PORT, SourcePorts

    ports = SourcePorts(("10.0.1.11", "10.0.1.254"), random.Random(1))
    ports.next["10.0.1.11"] = LAST_PORT - 1
    assert [ports.take("10.0.1.11") for _ in range(3)] == [LAST_PORT - 1, LAST_PORT, FIRST_PORT]
    start = ports.next["10.0.1.254"]
    assert [ports.take("10.0.1.254") for _ in range(2)] == [start, start + 1]
