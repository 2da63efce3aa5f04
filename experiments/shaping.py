"""shaping: the director's capacity against the link rate (tc, Ethernet framing counted).

Where the wire's frame rate is below what the director's CPU can do, the links set the
capacity (it follows the wire limit); above it, the CPU does (capacity flat, at the unshaped
figure). The crossing is where "is it the NIC?" gets its answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import capacity_point
from testbed.net.shaping import max_frames_per_s
from testbed.report import Figure, Section
from testbed.topo.plan import check_layout_knobs, layout_field

ETH_IP_UDP_HEADER_BYTES = 14 + 20 + 8


@dataclass(frozen=True)
class Params:
    bw_mbit: float | None = layout_field("bw_mbit", default=10.0)
    kind: Literal["dr", "nat", "tun", "nat1"] = field(
        default="nat", metadata={"help": "dr, tun, nat or nat1."}
    )
    quota_cores: float | None = field(
        default=0.25, metadata={"help": "Director CPU quota, fraction of ONE core."}
    )
    payload_bytes: int = field(default=64, metadata={"help": "UDP payload per request, bytes."})
    duration_s: float = field(
        default=2.0, metadata={"help": "Seconds per trial of the capacity search."}
    )


def wire_limit_pps(bw_mbit: float, payload_bytes: int) -> float:
    """Requests per second one shaped link carries (one frame per request, framing counted)."""
    return max_frames_per_s(bw_mbit, ETH_IP_UDP_HEADER_BYTES + payload_bytes)

    def __post_init__(self) -> None:
        check_layout_knobs(self)


def run_point(p: Params, ctx: PointContext) -> PointResult:
    start = (
        500.0 if p.bw_mbit is None else min(2000.0, wire_limit_pps(p.bw_mbit, p.payload_bytes) / 4)
    )
    result = capacity_point(
        ctx,
        p.kind,
        p.quota_cores,
        start_pps=start,
        duration_s=p.duration_s,
        payload_bytes=p.payload_bytes,
        bw_mbit=p.bw_mbit,
    )
    summary = dict(result.summary)
    summary["wire_limit_pps"] = wire_limit_pps(p.bw_mbit, p.payload_bytes) if p.bw_mbit else None
    return PointResult(
        summary=summary, samples=result.samples, invalid_reasons=result.invalid_reasons
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    shaped = [p for p in run.measured() if p.params.bw_mbit is not None]
    unshaped = {
        p.params.kind: p.summary["capacity_pps"] for p in run.measured() if p.params.bw_mbit is None
    }
    series = run.series("bw_mbit", "capacity_pps", by=["kind"])
    lines = []
    for p in sorted(shaped, key=lambda p: (p.params.kind, p.params.bw_mbit)):
        cap, wire = p.summary["capacity_pps"], p.summary["wire_limit_pps"]
        cpu = unshaped.get(p.params.kind)
        limit = "the link" if cap >= 0.8 * wire and (cpu is None or wire < cpu) else "the CPU"
        lines.append(
            f"{p.params.kind} at {p.params.bw_mbit:g} Mbit/s: {cap:,.0f} requests/s "
            f"(wire limit {wire:,.0f}) - {limit} sets it"
        )

    def draw(fig) -> None:
        ax = fig.subplots()
        for s in series:
            style.plot_series(ax, s)
        if shaped:
            payload = shaped[0].params.payload_bytes
            xs = sorted({p.params.bw_mbit for p in shaped})
            ax.plot(
                xs,
                [wire_limit_pps(x, payload) for x in xs],
                color="0.5",
                linestyle=":",
                label="wire limit (one frame per request)",
            )
        for kind, cap in unshaped.items():
            ax.axhline(
                cap, color=style.colour(kind), linestyle="--", alpha=0.5, label=f"{kind} unshaped"
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("link rate (Mbit/s)")
        ax.set_ylabel("capacity (requests/s)")
        ax.legend()

    return [
        Figure(
            "capacity-vs-link-rate",
            "Capacity against the link rate",
            draw,
            "; ".join(lines) + "." if lines else "No shaped points.",
        ),
        Section(
            "Method",
            "Every link is shaped with HTB at the given rate, counting 24 bytes of "
            "preamble, FCS and gap per frame (84 at least), as a real wire does.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="shaping",
        description="Director capacity against the tc link rate (NIC vs CPU limit).",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=300,
    )
)
