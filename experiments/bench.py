"""bench: the director's forwarding rate against the kernel's (``lvs-testbed bench``).

One layout per variant (``nat1``: client, director and real server on one segment, so the
same hosts serve every variant), 64-byte UDP payloads offered above capacity by iperf3 (C,
through libiperf) for a few seconds:

- ``kernel``: the director host as a plain kernel IPv4 router (ip_forward=1, no director);
- ``dr-frame`` / ``dr-ring``: the userspace director in DR, one system call per frame or
  PACKET_MMAP rings (batched); the real server answers the client directly;
- ``nat-frame`` / ``nat-ring``: the same in NAT.

The director daemon is pinned to one core (taskset). Figures: offered and delivered packets
per second, each variant's ratio to the kernel baseline measured in the same run, and the
director's CPU time per forwarded packet (from its own rusage), whose NAT/DR ratio is the
extra cost of rewriting addresses. Figures, not a pass/fail test: the machine is noisy, so
compare variants of one run (``--repeat`` for more than one figure each).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.report import Figure, Section

VARIANTS = ("kernel", "dr-frame", "dr-ring", "nat-frame", "nat-ring")
PAYLOAD_BYTES = 64
PORT = 5201
DIRECTOR_CPU = 1  # the core the director daemon is pinned to


@dataclass(frozen=True)
class Params:
    variant: Literal[VARIANTS] = field(
        default="kernel", metadata={"help": "What forwards: " + ", ".join(VARIANTS) + "."}
    )
    duration_s: int = field(default=5, metadata={"help": "Seconds of traffic."})

    def __post_init__(self) -> None:
        if not 1 <= self.duration_s <= 600:
            raise ValueError(f"duration_s must be 1..600, got {self.duration_s}")


def _director_stats(tb) -> dict:
    return tb.director_request({"op": "stats"}).get("stats", {})


def _pin_director(tb) -> None:
    index = json.loads((tb.run.dir / "d1.director.json").read_text())
    subprocess.run(
        ["taskset", "-pc", str(DIRECTOR_CPU), str(index["pid"])],
        capture_output=True,
        check=False,
        timeout=10,
    )


def run_point(p: Params, ctx: PointContext) -> PointResult:
    from testbed.net.network import Testbed
    from testbed.topo.plan import LayoutParams
    from testbed.traffic.iperf import iperf_between

    kind, _, io_mode = p.variant.partition("-")
    params = LayoutParams(
        n_rs=1,
        n_clients=1,
        director="none" if kind == "kernel" else "python",
        io_mode=io_mode or "ring",
    )
    with Testbed("nat1", params, kind=f"exp-{ctx.point_id}"[:60]) as tb:
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
                tb.ipvsadm(f"-A {flag} {vip}:{PORT} -s rr")
                tb.ipvsadm(f"-a {flag} {vip}:{PORT} -r {rip}:{PORT} {fwd}")
            if kind == "dr":
                # A DR real server holds the VIP silently and answers clients directly.
                rs1.set_sysctls(
                    {"net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2}
                )
                rs1.cmd(f"ip addr add {vip}/32 dev lo")
                rs1.cmd("ip route replace 10.0.1.0/24 dev rs1-eth0")
                server_bind = vip
            _pin_director(tb)
            target = vip
        tb.wait_ready()
        before = _director_stats(tb) if kind != "kernel" else None
        t0 = time.monotonic()
        res = iperf_between(
            rs1,
            c1,
            target,
            port=PORT,
            server_bind=server_bind,
            udp=True,
            blksize=PAYLOAD_BYTES,
            bandwidth_bps=0,
            duration_s=p.duration_s,
        )
        ctx.log.info("%s: iperf3 ran %.1f s", p.variant, time.monotonic() - t0)
        after = _director_stats(tb) if kind != "kernel" else None
    if "error" in res:
        raise RuntimeError(f"iperf3: {res['error']}")
    summary = {
        "offered_pps": res["sent_pps"],
        "delivered_pps": res["received_pps"],
        "loss_pct": res.get("lost_percent") or 0.0,
        "director_cpu_us_per_pkt": None,
        "forwarded": None,
    }
    if before is not None:
        forwarded = after["frames"]["forwarded"] - before["frames"]["forwarded"]
        cpu_s = after["cpu_s"] - before["cpu_s"]
        summary["forwarded"] = forwarded
        summary["director_cpu_us_per_pkt"] = cpu_s / forwarded * 1e6 if forwarded else None
    return PointResult(summary=summary)


def ratios(by_variant: dict[str, dict]) -> dict[str, float]:
    """Delivered pps of each variant over the kernel's, and NAT/DR cost per packet (pure)."""
    out = {}
    kernel = by_variant.get("kernel", {}).get("delivered_pps")
    if kernel:
        for variant, s in by_variant.items():
            out[f"{variant}/kernel"] = s["delivered_pps"] / kernel
    for io in ("frame", "ring"):
        dr = by_variant.get(f"dr-{io}", {}).get("director_cpu_us_per_pkt")
        nat = by_variant.get(f"nat-{io}", {}).get("director_cpu_us_per_pkt")
        if dr and nat:
            out[f"nat/dr cost per packet ({io})"] = nat / dr
    return out


def by_variant(run: RunData) -> dict[str, dict]:
    """Each variant's figures, averaged over its repeats."""
    groups: dict[str, list[dict]] = {}
    for point in run.measured():
        groups.setdefault(point.params.variant, []).append(point.summary)
    out = {}
    for variant in VARIANTS:
        rows = groups.get(variant)
        if rows:
            out[variant] = {
                k: (
                    sum(r[k] for r in rows) / len(rows)
                    if all(isinstance(r.get(k), int | float) for r in rows)
                    else rows[0].get(k)
                )
                for k in rows[0]
            }
    return out


def table(run: RunData) -> str:
    """The bench table (markdown): every variant with its ratio to the kernel baseline."""
    figures = by_variant(run)
    rat = ratios(figures)
    lines = [
        "| variant | offered pps | delivered pps | loss | vs kernel | director CPU µs/packet |",
        "|---|---|---|---|---|---|",
    ]
    for variant, s in figures.items():
        cost = s.get("director_cpu_us_per_pkt")
        lines.append(
            f"| {variant} | {s['offered_pps']:,.0f} | {s['delivered_pps']:,.0f} | "
            f"{s['loss_pct']:.1f}% | "
            f"{rat.get(f'{variant}/kernel', float('nan')):.2f} | {f'{cost:.2f}' if cost else '-'} |"
        )
    lines += [f"\n{k}: {v:.2f}" for k, v in rat.items() if k.startswith("nat/dr")]
    return "\n".join(lines)


def report(run: RunData) -> list[Figure | Section]:
    return [
        Section("Delivered packets per second", table(run)),
        Section("Method", __doc__.split("\n\n", 1)[1].strip()),
    ]


EXPERIMENT = register(
    Experiment(
        name="bench",
        description=(
            "The director's forwarding rate against kernel forwarding (64-byte UDP, iperf3)."
        ),
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=300,
    )
)
