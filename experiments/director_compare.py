"""director-compare: kernel IPVS, the Python director (ring and frame I/O), the OpenFlow
director and plain kernel forwarding, on the same layout, switches and traffic.

Per director: capacity (UDP echo requests, as in `capacity`), first-packet latency (the time
to open a new TCP connection through the VIP at a light rate, which for the OpenFlow director
includes the trip of the first packet to the controller and the installation of its flows),
and CPU per request: the whole machine's busy CPU over a window in the middle of a fixed,
light rate (the same load generators, servers and switches for every director, so differences
are the director's), over the requests answered in that window, taken ``cpu_trials`` times
(median and range). The report gives capacity and CPU as ratios to kernel IPVS when it ran.
Kernel IPVS needs a full kernel (`sudo lvs-testbed vm run -- lvs-testbed experiment run
director-compare ...`); under software emulation (TCG) absolute figures mean little, ratios
measured side by side are what the report shows. The kernel baseline routes the clients
straight to a real server's address through the director host.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import (
    capacity_invalid,
    capacity_summary,
    find_capacity,
    machine_cpu_trial,
)
from testbed.report import Figure, Section

DIRECTORS = ("ipvs", "python", "python-frame", "openflow", "kernel")
LAYOUT_DIRECTOR = {
    "kernel": "none",
    "ipvs": "ipvs",
    "python": "python",
    "python-frame": "python",
    "openflow": "openflow",
}
LABELS = {
    "ipvs": "kernel IPVS (NAT)",
    "python": "Python director (NAT, ring I/O)",
    "python-frame": "Python director (NAT, frame I/O)",
    "openflow": "OpenFlow director (NAT)",
    "kernel": "kernel forwarding (no balancing)",
}


@dataclass(frozen=True)
class Params:
    director: Literal[DIRECTORS] = field(
        default="python",
        metadata={
            "help": "ipvs (kernel IPVS: a full kernel), python (ring I/O), python-frame, "
            "openflow, or kernel (the director host routes)."
        },
    )
    latency_rate_cps: float = field(
        default=50.0, metadata={"help": "New TCP connections/s for the latency trial."}
    )
    cpu_rate_pps: float = field(
        default=500.0,
        metadata={"help": "Requests/s of the CPU trial (below every director's capacity)."},
    )
    duration_s: float = field(
        default=2.0, metadata={"help": "Seconds per trial (and per CPU trial's window)."}
    )
    cpu_trials: int = field(
        default=3, metadata={"help": "CPU trials per point (their median and range)."}
    )
    layout: Literal["nat1", "nat"] = field(
        default="nat1", metadata={"help": "nat1 (one NIC per director) or nat (two)."}
    )
    switch: Literal["ovs", "bridge"] = field(
        default="ovs",
        metadata={
            "help": "ovs (userspace datapath; the OpenFlow director needs it) or bridge "
            "(Linux bridges)."
        },
    )

    def __post_init__(self) -> None:
        for name in ("latency_rate_cps", "cpu_rate_pps", "duration_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.cpu_trials < 1:
            raise ValueError(f"cpu_trials must be at least 1, got {self.cpu_trials}")
        if self.director == "openflow" and self.switch != "ovs":
            raise ValueError("the OpenFlow director needs switch=ovs")


def machine_us_per_request(busy_frac: float, cpus: int, answered_pps: float) -> float | None:
    """The whole machine's CPU time per answered request, microseconds."""
    return busy_frac * cpus * 1e6 / answered_pps if answered_pps > 0 else None


def cpu_summary(trials: list[dict], cpus: int, rate_pps: float) -> tuple[dict, list[str]]:
    """The CPU trials' figures (median, and the range of CPU per request) and why the point is
    invalid, if it is: a trial whose rate was not carried, or whose fidelity check failed."""
    per_request = [
        us
        for t in trials
        if (us := machine_us_per_request(t["busy_frac"], cpus, t["answered_pps"])) is not None
    ]
    invalid = []
    for t in trials:
        if t["answered_pps"] < 0.95 * rate_pps:
            invalid.append(f"a CPU trial's rate was not carried ({t['answered_pps']:.0f}/s)")
        invalid += [f"CPU trial: {r}" for r in t["invalid_reasons"]]
    summary = {
        "cpu_trials": len(trials),
        "cpu_trial_answered_pps": statistics.median(t["answered_pps"] for t in trials),
        "cpu_trial_busy_frac": statistics.median(t["busy_frac"] for t in trials),
        "machine_us_per_request": statistics.median(per_request) if per_request else None,
        "machine_us_per_request_min": min(per_request, default=None),
        "machine_us_per_request_max": max(per_request, default=None),
    }
    return summary, invalid


def run_point(p: Params, ctx: PointContext) -> PointResult:
    from testbed.net.network import Testbed
    from testbed.topo.plan import LayoutParams

    params = LayoutParams(
        n_rs=2,
        n_clients=1,
        switch=p.switch,
        ha="none",
        director=LAYOUT_DIRECTOR[p.director],
        io_mode="frame" if p.director == "python-frame" else "ring",
    )
    with Testbed(p.layout, params, kind=f"exp-{ctx.point_id}"[:60]) as tb:
        tb.wait_ready(10)
        target = None
        director = {"python": "d1", "python-frame": "d1", "ipvs": "d1", "openflow": "of"}.get(
            p.director
        )
        if p.director == "kernel":
            tb.net["d1"].set_sysctls({"net.ipv4.ip_forward": 1})
            for c in tb.plan.clients:
                tb.net[c.name].cmd(f"ip route replace 192.168.0.0/24 via {tb.plan.node('d1').ip}")
            target = tb.plan.realservers[0].ip
        c1 = tb.net["c1"]
        out = c1.cmd(
            f"{sys.executable} -m testbed.traffic.loadgen tcp-crr {target or tb.plan.vip} "
            f"--rate-cps {p.latency_rate_cps:g} --duration-s 3"
        )
        latency = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        light = []
        for _ in range(p.cpu_trials):
            light.append(machine_cpu_trial(tb, p.cpu_rate_pps, p.duration_s, target=target))
            ctx.log.info(
                "CPU trial at %.0f requests/s: answered %.0f in %.2f s, machine %.1f%% busy",
                p.cpu_rate_pps,
                light[-1]["answered_pps"],
                light[-1]["window_s"],
                100 * light[-1]["busy_frac"],
            )
        cap = find_capacity(
            tb,
            start_pps=2000,
            duration_s=p.duration_s,
            log=ctx.log,
            director=director,
            target=target,
        )
    summary = capacity_summary(cap)
    lat = latency.get("latency_ms", {})
    cpu, cpu_invalid = cpu_summary(light, os.cpu_count() or 1, p.cpu_rate_pps)
    summary.update(
        first_packet_ms_p50=lat.get("p50"),
        first_packet_ms_p99=lat.get("p99"),
        latency_failed=latency.get("failed"),
        # The trial that set the capacity fell short of its rate or saturated the machine:
        # the director may carry more than this machine could offer it.
        capacity_is_lower_bound=1.0 if capacity_invalid(cap) else 0.0,
        **cpu,
    )
    invalid = capacity_invalid(cap) + cpu_invalid
    return PointResult(
        summary=summary, samples=[t.row() for t in cap.trials], invalid_reasons=invalid
    )


def combine(summaries: list[dict]) -> dict:
    """Each figure over the repeats that have it: the mean, but the least of ``*_min``
    figures and the greatest of ``*_max`` ones (None where no repeat has it)."""
    out = {}
    for key in summaries[0]:
        vals = [s[key] for s in summaries if isinstance(s.get(key), int | float)]
        if not vals:
            out[key] = None
        elif key.endswith("_min"):
            out[key] = min(vals)
        elif key.endswith("_max"):
            out[key] = max(vals)
        else:
            out[key] = sum(vals) / len(vals)
    return out


def ratio_table(by: dict[str, dict], base: str = "ipvs") -> list[dict]:
    """One row per director in `DIRECTORS` order: capacity, first-packet p50, CPU per request,
    and each as a ratio to ``base`` (None where ``base`` or the figure is missing); the CPU
    ratio also with the bounds its trials' ranges allow (lowest over highest, and back)."""
    ref = by.get(base, {})
    rows = []
    for d in (d for d in DIRECTORS if d in by):
        s = by[d]

        def ratio(key: str, ref_key: str | None = None, s: dict = s) -> float | None:
            mine, theirs = s.get(key), ref.get(ref_key or key)
            return mine / theirs if mine is not None and theirs else None

        rows.append(
            {
                "director": d,
                "capacity_pps": s["capacity_pps"],
                "capacity_ratio": ratio("capacity_pps"),
                "first_packet_ms_p50": s.get("first_packet_ms_p50"),
                "capacity_is_lower_bound": bool(s.get("capacity_is_lower_bound")),
                "machine_us_per_request": s.get("machine_us_per_request"),
                "machine_us_per_request_min": s.get("machine_us_per_request_min"),
                "machine_us_per_request_max": s.get("machine_us_per_request_max"),
                "cpu_ratio": ratio("machine_us_per_request"),
                "cpu_ratio_lo": ratio("machine_us_per_request_min", "machine_us_per_request_max"),
                "cpu_ratio_hi": ratio("machine_us_per_request_max", "machine_us_per_request_min"),
            }
        )
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _span(mid: float | None, lo: float | None, hi: float | None, spec: str) -> str:
    """``mid (lo-hi)``, or the parts that are known."""
    if mid is None:
        return "-"
    if lo is None or hi is None:
        return format(mid, spec)
    return f"{mid:{spec}} ({lo:{spec}}-{hi:{spec}})"


def table_lines(rows: list[dict]) -> list[str]:
    """The side-by-side table: a capacity the machine could not load fully is marked as a
    lower bound; CPU per request with its trials' range, its ratio with the range's bounds."""
    lines = [
        "| director | capacity (requests/s) | vs kernel IPVS | new TCP connection, p50 | "
        "machine CPU per request (us, range) | vs kernel IPVS (bounds) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        bound = ">= " if r["capacity_is_lower_bound"] else ""
        lines.append(
            f"| {LABELS[r['director']]} | {bound}{r['capacity_pps']:,.0f} | "
            f"{_fmt(r['capacity_ratio'], '.2f')} | {_fmt(r['first_packet_ms_p50'], '.2f')} ms | "
            + _span(
                r["machine_us_per_request"],
                r["machine_us_per_request_min"],
                r["machine_us_per_request_max"],
                ",.0f",
            )
            + " | "
            + _span(r["cpu_ratio"], r["cpu_ratio_lo"], r["cpu_ratio_hi"], ".2f")
            + " |"
        )
    return lines


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    every: dict[str, list[dict]] = {}
    for pt in run.measured():
        every.setdefault(pt.params.director, []).append(pt.summary)
    by = {d: combine(summaries) for d, summaries in every.items()}
    rows = ratio_table(by)
    order = [r["director"] for r in rows]
    emulated = "QEMU" in str(run.env.get("cpu_model") or "")
    base = "kernel IPVS" if "ipvs" in by else "nothing (kernel IPVS did not run)"
    lines = table_lines(rows)
    caveat = (
        "This run was in a software-emulated CPU (qemu TCG): absolute figures are far below "
        "real hardware's; only the ratios, measured side by side, mean something."
        if emulated
        else "Figures from this machine; compare ratios rather than absolute rates."
    )

    def draw(fig) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        for ax, figure in ((ax1, "capacity_pps"), (ax2, "machine_us_per_request")):
            style.plot_bars(
                ax,
                {d: [s[figure] for s in every[d] if s.get(figure) is not None] for d in order},
            )
        ax1.set_ylabel("capacity (requests/s)")
        ax2.set_ylabel("machine CPU per request (us)")
        ax1.legend()

    return [
        Figure(
            "director-compare",
            "Kernel IPVS, the Python director, the OpenFlow director, kernel forwarding",
            draw,
            f"Ratios to {base}. {caveat}",
        ),
        Section("Side by side", "\n".join(lines) + "\n\n" + caveat),
        Section(
            "Method",
            f"{'/'.join(sorted({p.params.layout for p in run.measured()}))} layout on "
            f"{'/'.join(sorted({p.params.switch for p in run.measured()}))} switches "
            "(ovs: Open vSwitch's userspace datapath; bridge: Linux bridges), no CPU quota, "
            "no failover, one client and two real servers; capacity by a UDP echo capacity "
            "search (marked >= where the trial that set it fell short of its rate or "
            "saturated the machine: the director may carry more); latency from short TCP "
            "connections at a light rate; CPU per request from the machine's busy time "
            "(/proc/stat) over a window in the middle of a fixed light rate, senders' "
            "start-up and drain left out, over the replies the client received in that "
            "window, several times (median, range; the ratio's bounds are lowest over "
            "highest and back). Kernel IPVS works in the kernel's softirq, which no cgroup "
            "of the director's sees, so the whole machine is measured for every director "
            "alike.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="director-compare",
        description="Kernel IPVS vs Python (ring, frame) vs OpenFlow director vs kernel "
        "forwarding: capacity, latency, CPU per request.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=900,
    )
)
