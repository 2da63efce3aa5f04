"""``lvs-testbed bench`` / ``make bench``: the director's forwarding rate against the kernel's.

One run, one layout (``nat1``: clients, director and real server on one segment, so the
same hosts serve every variant), 64-byte UDP payloads offered above capacity by iperf3 (C,
through libiperf) for a few seconds each, a fresh topology per variant:

- ``kernel``: the director host as a plain kernel IPv4 router (ip_forward=1, no director);
- ``dr-frame`` / ``dr-ring``: the userspace director in DR, one system call per frame or
  PACKET_MMAP rings (batched); the real server answers the client directly;
- ``nat-frame`` / ``nat-ring``: the same in NAT.

The director daemon is pinned to one core (taskset). Figures: offered and delivered packets
per second, each variant's ratio to the kernel baseline measured in the same run, and the
director's CPU time per forwarded packet (from its own rusage), whose NAT/DR ratio is the
extra cost of rewriting addresses. Figures, not a pass/fail test: the machine is noisy.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams
from testbed.traffic.iperf import iperf_between

VARIANTS = ("kernel", "dr-frame", "dr-ring", "nat-frame", "nat-ring")
PAYLOAD_BYTES = 64
PORT = 5201
DIRECTOR_CPU = 1  # the core the director daemon is pinned to


@dataclass
class BenchResult:
    variant: str
    offered_pps: float
    delivered_pps: float
    loss_pct: float
    director_cpu_us_per_pkt: float | None
    forwarded: int | None
    error: str | None = None


def _director_stats(tb: Testbed) -> dict:
    out = tb.net["d1"].cmd("lvs-testbed director stats --json")
    return json.loads(out)


def _pin_director(tb: Testbed) -> None:
    index = json.loads((tb.run.dir / "d1.director.json").read_text())
    subprocess.run(["taskset", "-pc", str(DIRECTOR_CPU), str(index["pid"])], capture_output=True, check=False)


def run_variant(variant: str, duration_s: int) -> BenchResult:
    kind, _, io_mode = variant.partition("-")
    params = LayoutParams(n_rs=1, n_clients=1, director="none" if kind == "kernel" else "python",
                          io_mode=io_mode or "ring")
    with Testbed("nat1", params, kind=f"bench-{variant}") as tb:
        c1, d1, rs1 = tb.net["c1"], tb.net["d1"], tb.net["rs1"]
        rip, vip = tb.plan.node("rs1").ip, tb.plan.vip
        server_bind = None
        if kind == "kernel":
            d1.set_sysctls({"net.ipv4.ip_forward": 1})
            c1.cmd(f"ip route replace 192.168.0.0/24 via {tb.plan.node('d1').ip}")
            target = rip
        else:
            fwd = "-g" if kind == "dr" else "-m"
            for flag in ("-t", "-u"):
                d1.cmd(f"ipvsadm -A {flag} {vip}:{PORT} -s rr")
                d1.cmd(f"ipvsadm -a {flag} {vip}:{PORT} -r {rip}:{PORT} {fwd}")
            if kind == "dr":
                # A DR real server holds the VIP silently and answers clients directly.
                rs1.set_sysctls({"net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2})
                rs1.cmd(f"ip addr add {vip}/32 dev lo")
                rs1.cmd("ip route replace 10.0.1.0/24 dev rs1-eth0")
                server_bind = vip
            _pin_director(tb)
            target = vip
        tb.wait_ready()
        before = _director_stats(tb) if kind != "kernel" else None
        res = iperf_between(rs1, c1, target, port=PORT, server_bind=server_bind, udp=True,
                            blksize=PAYLOAD_BYTES, bandwidth_bps=0, duration_s=duration_s)
        after = _director_stats(tb) if kind != "kernel" else None
    if "error" in res:
        return BenchResult(variant, 0, 0, 100, None, None, res["error"])
    cpu_us = forwarded = None
    if before is not None:
        forwarded = after["frames"]["forwarded"] - before["frames"]["forwarded"]
        cpu_s = after["cpu_s"] - before["cpu_s"]
        cpu_us = cpu_s / forwarded * 1e6 if forwarded else None
    return BenchResult(variant, res["sent_pps"], res["received_pps"], res.get("lost_percent") or 0.0,
                       cpu_us, forwarded)


def run_bench(duration_s: int = 5, variants: tuple[str, ...] = VARIANTS, out_dir: Path = Path("results/bench")) -> list[BenchResult]:
    results = [run_variant(v, duration_s) for v in variants]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / time.strftime("bench-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


def ratios(results: list[BenchResult]) -> dict[str, float]:
    """Delivered pps of each variant over the kernel's, and NAT/DR cost per packet (ring)."""
    by = {r.variant: r for r in results}
    out = {}
    kernel = by.get("kernel")
    if kernel and kernel.delivered_pps:
        for r in results:
            out[f"{r.variant}/kernel"] = r.delivered_pps / kernel.delivered_pps
    for io in ("frame", "ring"):
        dr, nat = by.get(f"dr-{io}"), by.get(f"nat-{io}")
        if dr and nat and dr.director_cpu_us_per_pkt and nat.director_cpu_us_per_pkt:
            out[f"nat/dr cost per packet ({io})"] = nat.director_cpu_us_per_pkt / dr.director_cpu_us_per_pkt
    return out
