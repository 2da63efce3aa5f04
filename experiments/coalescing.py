"""coalescing: capacity and latency against the director's batch size and wait time.

The analogue of the seed's e100 "CPU Cycle Saver": instead of one wake-up (interrupt) per
frame, the director waits up to ``wait_us`` for frames to gather and handles up to ``batch``
per wake-up. Bigger batches spread the per-wake-up cost over more frames (more capacity) and
waiting adds latency; ``io_mode=frame`` is the one-system-call-per-frame baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import (
    capacity_invalid,
    capacity_summary,
    find_capacity,
    layout_up,
    udp_trial,
)
from testbed.report import Figure, Section
from testbed.topo.plan import IO_MODES, check_layout_knobs, layout_field


@dataclass(frozen=True)
class Params:
    batch: int = layout_field("batch")
    wait_us: int = layout_field("wait_us")
    io_mode: Literal[IO_MODES] = layout_field("io_mode")
    kind: Literal["dr", "nat", "tun", "nat1"] = field(
        default="nat", metadata={"help": "dr, tun, nat or nat1."}
    )
    quota_cores: float | None = field(
        default=0.25, metadata={"help": "Director CPU quota, fraction of ONE core."}
    )
    latency_rate_pps: float = field(
        default=2000.0, metadata={"help": "Load for the latency trial, requests/s."}
    )
    duration_s: float = field(default=2.0, metadata={"help": "Seconds per trial."})

    def __post_init__(self) -> None:
        check_layout_knobs(self)


def run_point(p: Params, ctx: PointContext) -> PointResult:
    with layout_up(
        p.kind, ctx.point_id, p.quota_cores, io_mode=p.io_mode, batch=p.batch, wait_us=p.wait_us
    ) as tb:
        latency = udp_trial(tb, p.latency_rate_pps, p.duration_s)
        cap = find_capacity(tb, start_pps=2000, duration_s=p.duration_s, log=ctx.log)
    summary = capacity_summary(cap)
    summary.update(
        rtt_p50_ms=latency.rtt_p50_ms,
        rtt_p99_ms=latency.rtt_p99_ms,
        latency_loss_frac=latency.loss_frac,
    )
    return PointResult(
        summary=summary,
        samples=[latency.row()] + [t.row() for t in cap.trials],
        invalid_reasons=capacity_invalid(cap) + latency.invalid_reasons,
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    cap = run.series("batch", "capacity_pps", by=["io_mode", "wait_us"])
    lat = run.series("batch", "rtt_p99_ms", by=["io_mode", "wait_us"])
    best = max(run.measured(), key=lambda p: p.summary["capacity_pps"], default=None)
    base = [p for p in run.measured() if p.params.io_mode == "frame" or p.params.batch == 1]
    finding = ""
    if best is not None:
        finding = (
            f"Best: batch {best.params.batch}, wait {best.params.wait_us} us, "
            f"{best.params.io_mode} I/O: "
            f"{best.summary['capacity_pps']:,.0f} requests/s"
        )
        if base:
            b = min(base, key=lambda p: p.summary["capacity_pps"])
            finding += (
                f", {best.summary['capacity_pps'] / b.summary['capacity_pps']:.2f}x the per-frame "
                f"baseline ({b.summary['capacity_pps']:,.0f})"
            )

    def draw(series, ylabel):
        def _draw(fig) -> None:
            ax = fig.subplots()
            for s in series:
                style.plot_series(ax, s)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch (frames per wake-up)")
            ax.set_ylabel(ylabel)
            ax.legend(title="io mode, wait us")

        return _draw

    return [
        Figure(
            "capacity-vs-batch",
            "Capacity against batch size and wait",
            draw(cap, "capacity (requests/s)"),
            finding + "." if finding else "",
        ),
        Figure(
            "latency-vs-batch",
            "99th percentile RTT against batch size and wait",
            draw(lat, "RTT p99 (ms)"),
            "Waiting for a batch costs latency at light load.",
        ),
        Section(
            "Method",
            "Per point: a latency trial at a fixed light load, then a capacity search, "
            "on a fresh layout whose director uses the given batch and wait.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="coalescing",
        description="Capacity and latency against batch size and wait (interrupt coalescing).",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=300,
    )
)
