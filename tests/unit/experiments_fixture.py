"""The ``selftest`` experiment: a synthetic saturating director, for the framework's tests only.

No root, no Mininet: a point computes counter samples (at irregular instants) of a director
that delivers min(offered, capacity) packets/s, where the ``nat`` layout has half the
capacity. Parameters make chosen points raise, die without a result, sleep (for timeouts and
interruption) or have a load generator that cannot reach its target (an invalid point).

The tests make it visible to the CLI and to point processes with
``LVS_TESTBED_EXPERIMENTS=tests.unit.experiments_fixture``; the runner puts this checkout on
the point processes' PYTHONPATH so they can import it.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.measure.analysis import check_fidelity, find_knee, mean_rate
from testbed.report import Figure, Section


@dataclass(frozen=True)
class SelftestParams:
    rate_pps: float = field(default=1000.0, metadata={"help": "Offered load, packets/s."})
    layout: Literal["dr", "nat"] = field(
        default="dr", metadata={"help": "Synthetic layout: nat has half the capacity of dr."}
    )
    capacity_pps: float = field(default=3000.0, metadata={"help": "Capacity of dr, packets/s."})
    sender_max_pps: float | None = field(
        default=None, metadata={"help": "The load generator tops out here (invalid points)."}
    )
    fail_at_pps: float | None = field(
        default=None, metadata={"help": "Raise an exception at this offered load."}
    )
    abort_at_pps: float | None = field(
        default=None, metadata={"help": "Exit without a result at this offered load."}
    )
    sleep_s: float = field(default=0.0, metadata={"help": "Sleep this long before measuring."})
    n_samples: int = field(default=6, metadata={"help": "Counter samples per point."})

    def __post_init__(self) -> None:
        if not self.rate_pps > 0:
            raise ValueError(f"rate_pps must be positive, got {self.rate_pps!r}")
        if self.n_samples < 2:
            raise ValueError("n_samples must be at least 2")


def run_point(params: SelftestParams, ctx: PointContext) -> PointResult:
    ctx.log.info("offering %s pps to %s", params.rate_pps, params.layout)
    time.sleep(params.sleep_s)
    if params.rate_pps == params.fail_at_pps:
        raise RuntimeError(f"synthetic failure at {params.rate_pps:g} pps")
    if params.rate_pps == params.abort_at_pps:
        os._exit(3)
    capacity_pps = params.capacity_pps / (2 if params.layout == "nat" else 1)
    sent_pps = min(params.rate_pps, params.sender_max_pps or params.rate_pps)
    delivered_pps = min(sent_pps, capacity_pps)
    rng = random.Random(f"{params.rate_pps}/{params.layout}/{ctx.repeat}")
    rows, t_s = [], 0.0
    for _ in range(params.n_samples):
        rows.append(
            {
                "t_s": round(t_s, 6),
                "sent_pkts": sent_pps * t_s,
                "delivered_pkts": delivered_pps * t_s,
            }
        )
        t_s += 0.1 * (1 + rng.random())  # irregular, as a real sampler's wake-ups are
    times = [r["t_s"] for r in rows]
    achieved = mean_rate(times, [r["sent_pkts"] for r in rows])
    delivered = mean_rate(times, [r["delivered_pkts"] for r in rows])
    fidelity = check_fidelity(target_pps=params.rate_pps, achieved_pps=achieved)
    return PointResult(
        summary={
            "achieved_pps": achieved,
            "delivered_pps": delivered,
            "loss_frac": 1 - delivered / achieved,
        },
        samples=rows,
        invalid_reasons=fidelity.reasons,
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    curves = run.series("rate_pps", "delivered_pps", by=["layout"])
    findings = []
    for s in curves:
        knee = find_knee(s.x, s.y)
        findings.append(
            f"{s.label}: carried up to {knee.knee_offered_pps or 0:,.0f} pps"
            + (f", capacity {knee.capacity_pps:,.0f} pps" if knee.capacity_pps else "")
        )

    def draw(fig) -> None:
        ax = fig.subplots()
        for s in curves:
            style.plot_series(ax, s)
        ax.set_xlabel(style.axis_label("offered_pps"))
        ax.set_ylabel(style.axis_label("delivered_pps"))
        if curves:
            ax.legend()

    return [
        Figure("delivered", "Delivered against offered load", draw, "; ".join(findings) + "."),
        Section("Method", "Synthetic: delivered = min(offered, capacity)."),
    ]


def summarize(run: RunData) -> dict:
    """What the run's summary.json carries beside its points (the seed puts its verdicts
    there): here, the points that delivered anything."""
    return {"delivering_points": sum(1 for p in run.measured() if p.summary.get("delivered_pps"))}


EXPERIMENT = register(
    Experiment(
        name="selftest",
        description="Synthetic saturating director for the framework's tests (no root).",
        params=SelftestParams,
        run_point=run_point,
        report=report,
        summarize=summarize,
        needs_root=False,
        timeout_s=60,
    )
)
