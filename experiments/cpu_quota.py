"""cpu-quota: the director's capacity against its CPU quota, DR and NAT, with a linear fit.

If per-packet CPU cost is what limits the director, capacity grows in proportion to the quota
(a straight line through the origin, R² near 1), NAT's slope being about half DR's in
requests per second since NAT's director also carries every reply. The fit's slope is the
requests per second one whole core would carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import capacity_point
from testbed.measure.analysis import linear_fit
from testbed.report import Figure, Section
from testbed.topo.plan import IO_MODES, check_layout_knobs, layout_field


@dataclass(frozen=True)
class Params:
    kind: Literal["dr", "nat", "tun", "nat1"] = field(
        default="nat", metadata={"help": "dr, tun, nat or nat1."}
    )
    quota_cores: float = field(
        default=0.25, metadata={"help": "Director CPU quota, fraction of ONE core."}
    )
    io_mode: Literal[IO_MODES] = layout_field("io_mode")
    duration_s: float = field(
        default=2.0, metadata={"help": "Seconds per trial of the capacity search."}
    )

    def __post_init__(self) -> None:
        check_layout_knobs(self)
        if not self.quota_cores > 0:
            raise ValueError(f"quota_cores must be positive, got {self.quota_cores}")


def run_point(p: Params, ctx: PointContext) -> PointResult:
    return capacity_point(
        ctx,
        p.kind,
        p.quota_cores,
        start_pps=max(500.0, 8000 * p.quota_cores),
        duration_s=p.duration_s,
        io_mode=p.io_mode,
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    series = run.series("quota_cores", "capacity_pps", by=["kind"])
    fits = {s.label: linear_fit(s.x, s.y) for s in series if len(set(s.x)) >= 2}
    parts = []
    for s in series:
        f = fits.get(s.label)
        if f is not None:
            parts.append(
                f"{s.label}: {f.slope:,.0f} requests/s per core "
                f"(intercept {f.intercept:,.0f}, R² {f.r2:.3f})"
            )
        else:  # one quota: the capacity, and what a fit would need
            parts.append(
                f"{s.label}: "
                + ", ".join(
                    f"{y:,.0f} requests/s at {x:g} of a core" for x, y in zip(s.x, s.y, strict=True)
                )
                + " (one quota: sweep several for a fit)"
            )
    finding = "; ".join(parts) or "No measured points"

    def draw(fig) -> None:
        ax = fig.subplots()
        for s in series:
            style.plot_series(ax, s)
            f = fits.get(s.label)
            if f is not None:
                xs = [0, max(s.x)]
                ax.plot(
                    xs,
                    [f.intercept + f.slope * x for x in xs],
                    linestyle="--",
                    color=style.colour(s.label),
                    alpha=0.6,
                    label=f"{s.label} fit, R² {f.r2:.2f}",
                )
        ax.set_xlabel("director CPU quota (cores)")
        ax.set_ylabel("capacity (requests/s)")
        ax.legend()

    return [
        Figure(
            "capacity-vs-quota", "Capacity against the director's CPU quota", draw, finding + "."
        ),
        Section(
            "Method",
            "Each point searches the capacity (geometric ramp, then bisection) of a "
            "fresh layout whose directors run in a CFS quota of the given fraction of one core.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="cpu-quota",
        description="Director capacity against its CPU quota, with a linear fit.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=300,
    )
)
