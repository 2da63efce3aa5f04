"""conntable: capacity and per-packet cost against the connection table's hash size, with
the table pre-filled as the seed's was (~62,000 entries) and far beyond (1,000,000).

The table is 2^bits buckets with chaining, as IPVS's: each lookup walks one chain, whose mean
length is entries / 2^bits. With the seed's 62,000 entries in 2^12 buckets that is ~15
entries per lookup, in 2^16 ~1. If the table were the bottleneck, capacity would fall and the
per-packet cost rise as chains lengthen (small bits, big tables).
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
    prefill,
    table_room,
    table_stats,
)
from testbed.report import Figure, Section
from testbed.topo.plan import check_layout_knobs, layout_field


@dataclass(frozen=True)
class Params:
    table_bits: int = layout_field("table_bits")
    prefill_conns: int = field(
        default=62000, metadata={"help": "ESTABLISHED connections put in the table first."}
    )
    kind: Literal["dr", "nat", "tun", "nat1"] = field(
        default="nat", metadata={"help": "dr, tun, nat or nat1."}
    )
    quota_cores: float | None = field(
        default=0.25, metadata={"help": "Director CPU quota, fraction of ONE core."}
    )
    duration_s: float = field(
        default=2.0, metadata={"help": "Seconds per trial of the capacity search."}
    )

    def __post_init__(self) -> None:
        check_layout_knobs(self)
        if not 0 <= self.prefill_conns <= 5_000_000:
            raise ValueError(f"prefill_conns must be 0..5000000, got {self.prefill_conns}")


def run_point(p: Params, ctx: PointContext) -> PointResult:
    with layout_up(
        p.kind,
        ctx.point_id,
        p.quota_cores,
        table_bits=p.table_bits,
        **table_room(p.prefill_conns),
    ) as tb:
        ctx.log.info("pre-filling %d connections", p.prefill_conns)
        prefill(tb, p.prefill_conns)
        chains = table_stats(tb)
        cap = find_capacity(tb, start_pps=2000, duration_s=p.duration_s, log=ctx.log)
    summary = capacity_summary(cap)
    summary.update(
        table_entries=chains.get("entries"),
        mean_chain=chains.get("mean_chain"),
        max_chain=chains.get("max_chain"),
    )
    return PointResult(
        summary=summary,
        samples=[t.row() for t in cap.trials],
        invalid_reasons=capacity_invalid(cap),
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    cap = run.series("table_bits", "capacity_pps", by=["prefill_conns"])
    cost = run.series("table_bits", "director_us_per_pkt", by=["prefill_conns"])
    lines = []
    for s in cap:
        if len(s.x) >= 2:
            lo, hi = s.y[0], s.y[-1]
            lines.append(
                f"{s.label} entries: {lo:,.0f} requests/s at 2^{s.x[0]:g} buckets, {hi:,.0f} at "
                f"2^{s.x[-1]:g}"
            )

    def draw(series, ylabel):
        def _draw(fig) -> None:
            ax = fig.subplots()
            for s in series:
                style.plot_series(ax, s, label=f"{s.label} entries")
            ax.set_xlabel("table bits (2^bits buckets)")
            ax.set_ylabel(ylabel)
            ax.legend()

        return _draw

    return [
        Figure(
            "capacity-vs-bits",
            "Capacity against the table's hash size",
            draw(cap, "capacity (requests/s)"),
            "; ".join(lines) + "." if lines else "",
        ),
        Figure(
            "cost-vs-bits",
            "Director CPU per forwarded packet against the hash size",
            draw(cost, "director CPU per packet (µs)"),
            "Longer chains cost more per lookup.",
        ),
        Section(
            "Method",
            "The director's table is filled with ESTABLISHED connections from made-up "
            "clients, then a capacity search runs; the per-packet cost is the director's CPU "
            "over its in+out packets at capacity.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="conntable",
        description="Capacity and per-packet cost against table bits, pre-filled table.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=1800,
    )
)
