"""nic-layout: LVS-NAT with one NIC per director against two NICs per director.

The seed's NAT directors had two NICs where the DR director had one, and the author wondered
whether more NICs (IRQs, bus transfers) were the problem. Here both layouts run the same
director at the same quota: if capacity is the same, the NIC count is not the bottleneck (in
emulation the NICs themselves cost nothing; what is left is the per-packet work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import capacity_point
from testbed.report import Figure, Section
from testbed.topo.plan import IO_MODES, check_layout_knobs, layout_field


@dataclass(frozen=True)
class Params:
    nics: Literal[1, 2] = field(
        default=2, metadata={"help": "NICs per director: 1 (nat1) or 2 (nat)."}
    )
    quota_cores: float | None = field(
        default=0.25, metadata={"help": "Director CPU quota, fraction of ONE core."}
    )
    io_mode: Literal[IO_MODES] = layout_field("io_mode")
    duration_s: float = field(
        default=2.0, metadata={"help": "Seconds per trial of the capacity search."}
    )

    def __post_init__(self) -> None:
        check_layout_knobs(self)


def run_point(p: Params, ctx: PointContext) -> PointResult:
    return capacity_point(
        ctx,
        "nat" if p.nics == 2 else "nat1",
        p.quota_cores,
        start_pps=2000,
        duration_s=p.duration_s,
        io_mode=p.io_mode,
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    by = {}
    for p in run.measured():
        by.setdefault(p.params.nics, []).append(p.summary["capacity_pps"])
    means = {n: sum(v) / len(v) for n, v in sorted(by.items())}
    finding = ", ".join(f"{n} NIC(s): {c:,.0f} requests/s" for n, c in means.items())
    if 1 in means and 2 in means:
        finding += f"; two NICs / one NIC = {means[2] / means[1]:.2f}"

    def draw(fig) -> None:
        ax = fig.subplots()
        style.plot_bars(
            ax,
            {f"{n} NIC" + ("s" if n > 1 else ""): by[n] for n in means},
            [style.colour("nat1" if n == 1 else "nat") for n in means],
        )
        ax.set_ylabel("capacity (requests/s)")
        ax.legend()

    return [
        Figure(
            "capacity-by-nics",
            "NAT capacity with one and two NICs per director",
            draw,
            finding + ".",
        ),
        Section("Method", "Capacity search on a fresh nat (two NICs) or nat1 (one NIC) layout."),
    ]


EXPERIMENT = register(
    Experiment(
        name="nic-layout",
        description="LVS-NAT capacity with one vs two NICs per director.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=300,
    )
)
