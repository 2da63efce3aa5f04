"""--capture: every link of a layout into a pcap file that Wireshark opens, holding the packets
that crossed that link (and only those: in DR the real server's reply bypasses the director).
From `lvs-testbed up` and from `experiment run`."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from os_ken.lib.packet import ethernet, icmp, ipv4, packet, tcp, udp

CLI = [sys.executable, "-m", "testbed"]
VIP = "10.0.0.100"
PCAP_MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1


def read_pcap(path: Path) -> list[packet.Packet]:
    """The frames of a classic pcap file, checking its header as Wireshark would."""
    data = path.read_bytes()
    magic, major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, linktype) == (PCAP_MAGIC_US, 2, 4, LINKTYPE_ETHERNET), path
    assert snaplen > 0
    frames, offset = [], 24
    while offset < len(data):
        _sec, _usec, incl_len, orig_len = struct.unpack_from("<IIII", data, offset)
        assert incl_len <= min(orig_len, snaplen), path
        frames.append(packet.Packet(data[offset + 16 : offset + 16 + incl_len]))
        offset += 16 + incl_len
    assert offset == len(data), f"{path}: a truncated record"
    return frames


def matching(frames: list[packet.Packet], **want) -> list[packet.Packet]:
    """Frames with an IPv4 header whose fields (and TCP/UDP destination port) match."""
    out = []
    for f in frames:
        ip = f.get_protocol(ipv4.ipv4)
        if ip is None or any(getattr(ip, k) != v for k, v in want.items() if k != "dport"):
            continue
        l4 = f.get_protocol(tcp.tcp) or f.get_protocol(udp.udp)
        if "dport" in want and (l4 is None or l4.dst_port != want["dport"]):
            continue
        out.append(f)
    return out


def test_up_captures_every_link_and_each_pcap_holds_that_links_packets(tmp_path, no_leftovers):
    script = tmp_path / "commands"
    script.write_text(f"c1 ping -c 2 -i 0.2 {VIP}\nc1 curl -s -m 5 http://{VIP}/\n")
    res = subprocess.run(
        [
            *CLI,
            "up",
            "dr",
            "--rs",
            "2",
            "--clients",
            "1",
            "--capture",
            "--capture-dir",
            str(tmp_path / "captures"),
            "--script",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("packet captures: "))
    (run_dir,) = (tmp_path / "captures").iterdir()
    assert str(run_dir) in line
    pcaps = {p.name: read_pcap(p) for p in sorted(run_dir.iterdir())}
    # one file per link: c1, fw (two NICs), d1, rs1, rs2
    assert sorted(pcaps) == [
        f"{i}.pcap" for i in ("c1-eth0", "d1-eth0", "fw-eth0", "fw-eth1", "rs1-eth0", "rs2-eth0")
    ]
    client = pcaps["c1-eth0.pcap"]
    pings = [f.get_protocol(icmp.icmp) for f in matching(client, dst=VIP)]
    # our 2 and the self-check's, each answered: the capture ran before the layout was ready
    requests = [p for p in pings if p is not None and p.type == icmp.ICMP_ECHO_REQUEST]
    assert len(requests) >= 2
    replies = [f.get_protocol(icmp.icmp) for f in matching(client, src=VIP, proto=1)]
    assert len(replies) == len(requests)
    assert matching(client, dst=VIP, dport=80), "the HTTP request leaves c1 for the VIP"
    assert matching(client, src=VIP, proto=6), "and its answer comes back from the VIP"
    # DR: the request crosses the director's link, the answer does not (it bypasses it).
    director = pcaps["d1-eth0.pcap"]
    assert matching(director, dst=VIP, dport=80)
    assert not matching(director, src=VIP, proto=6)
    served = [n for n in ("rs1-eth0.pcap", "rs2-eth0.pcap") if matching(pcaps[n], src=VIP)]
    assert served, "one real server answered from the VIP on its own link"
    macs = {f.get_protocol(ethernet.ethernet).dst for f in matching(director, dst=VIP, dport=80)}
    assert len(macs) >= 2, "the director's link sees the request to it and forwarded by it"


def test_experiment_run_captures_into_each_points_directory(tmp_path, no_leftovers):
    res = subprocess.run(
        [
            *CLI,
            "experiment",
            "run",
            "capacity",
            "-p",
            "kind=dr",
            "-p",
            "rate_pps=500",
            "-p",
            "duration_s=1",
            "--results",
            str(tmp_path),
            "--no-progress",
            "--no-report",
            "--capture",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (run_dir,) = (tmp_path / "capacity").iterdir()
    assert json.loads((run_dir / "params.json").read_text())["capture"] is True
    (point,) = (run_dir / "points").iterdir()
    (layout_run,) = (point / "pcaps").iterdir()
    frames = read_pcap(layout_run / "c1-eth0.pcap")
    assert matching(frames, dst=VIP, dport=7), "the load generator's UDP requests to the VIP"
