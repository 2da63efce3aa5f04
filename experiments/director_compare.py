"""director-compare: the Python director against the OpenFlow director and against plain
kernel forwarding, on the same layout and the same switches (Open vSwitch).

Capacity (UDP echo requests, as in `capacity`) and first-packet latency: the time to open a
new TCP connection through the VIP at a light rate, which for the OpenFlow director includes
the trip of the first packet to the controller and the installation of its flows. The kernel
baseline routes the clients straight to a real server's address through the director host.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import capacity_invalid, capacity_summary, find_capacity
from testbed.report import Figure, Section


@dataclass(frozen=True)
class Params:
    director: Literal["kernel", "python", "openflow"] = field(
        default="python",
        metadata={"help": "kernel (the director host routes), python or openflow."},
    )
    latency_rate_cps: float = field(
        default=50.0, metadata={"help": "New TCP connections/s for the latency trial."}
    )
    duration_s: float = field(default=2.0, metadata={"help": "Seconds per trial."})


def run_point(p: Params, ctx: PointContext) -> PointResult:
    from testbed.net.network import Testbed
    from testbed.topo.plan import LayoutParams

    params = LayoutParams(
        n_rs=2,
        n_clients=1,
        switch="ovs",
        ha="none",
        director={"kernel": "none", "python": "python", "openflow": "openflow"}[p.director],
    )
    with Testbed("nat1", params, kind=f"exp-{ctx.point_id}"[:60]) as tb:
        tb.wait_ready(10)
        target, director = None, {"python": "d1", "openflow": "of"}.get(p.director)
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
    summary.update(
        first_packet_ms_p50=lat.get("p50"),
        first_packet_ms_p99=lat.get("p99"),
        latency_failed=latency.get("failed"),
    )
    return PointResult(
        summary=summary,
        samples=[t.row() for t in cap.trials],
        invalid_reasons=capacity_invalid(cap),
    )


def _means(summaries: list[dict]) -> dict:
    """Each figure's mean over the repeats that have it (None where none has it)."""
    out = {}
    for key in summaries[0]:
        vals = [s[key] for s in summaries if isinstance(s.get(key), int | float)]
        out[key] = sum(vals) / len(vals) if vals else None
    return out


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    every: dict[str, list[dict]] = {}
    for pt in run.measured():
        every.setdefault(pt.params.director, []).append(pt.summary)
    by = {d: _means(summaries) for d, summaries in every.items()}
    order = [d for d in ("kernel", "python", "openflow") if d in by]
    base = by.get("kernel", {}).get("capacity_pps")
    text = "; ".join(
        f"{d}: {by[d]['capacity_pps']:,.0f} requests/s"
        + (f" ({by[d]['capacity_pps'] / base:.2f}x kernel)" if base else "")
        + f", new connection {by[d]['first_packet_ms_p50'] or float('nan'):.2f} ms (p50)"
        for d in order
    )

    def draw(fig) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        for ax, figure in ((ax1, "capacity_pps"), (ax2, "first_packet_ms_p50")):
            style.plot_bars(
                ax,
                {d: [s[figure] for s in every[d] if s.get(figure) is not None] for d in order},
            )
        ax1.set_ylabel("capacity (requests/s)")
        ax2.set_ylabel("TCP connect + request, p50 (ms)")
        ax1.legend()

    return [
        Figure(
            "director-compare",
            "Python director, OpenFlow director and kernel forwarding",
            draw,
            text + "." if text else "",
        ),
        Section(
            "Method",
            "nat1 layout on Open vSwitch (userspace datapath), no CPU quota; capacity by "
            "a UDP echo capacity search, latency from short TCP connections at a light rate.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="director-compare",
        description="Python vs OpenFlow director vs kernel forwarding: capacity, latency.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=600,
    )
)
