"""capacity: offered UDP request rate against answered rate and loss, DR vs NAT (and TUN).

Each point offers one rate to a fresh layout; the sweep over ``rate_pps`` draws the curve, and
the report finds each forwarding method's saturation point (`find_knee`). NAT's director
carries every request and every reply, DR's (and TUN's) only the requests, so at the same CPU
quota NAT should saturate at about half DR's request rate if per-packet cost is what limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import layout_up, udp_trial
from testbed.measure.analysis import find_knee
from testbed.report import Figure, Section
from testbed.topo.plan import IO_MODES, check_layout_knobs, layout_field


@dataclass(frozen=True)
class Params:
    kind: Literal["dr", "nat", "tun", "nat1"] = field(
        default="nat",
        metadata={
            "help": "Forwarding method and layout: dr, tun (DR layout, IP-in-IP), nat, nat1."
        },
    )
    rate_pps: float = field(
        default=2000.0, metadata={"help": "Offered UDP echo requests per second (all clients)."}
    )
    quota_cores: float | None = field(
        default=0.25,
        metadata={"help": "Director CPU quota, fraction of ONE core (none: unlimited)."},
    )
    io_mode: Literal[IO_MODES] = layout_field("io_mode")
    batch: int = layout_field("batch")
    payload_bytes: int = field(default=64, metadata={"help": "UDP payload per request, bytes."})
    duration_s: float = field(default=3.0, metadata={"help": "Seconds of load at this rate."})

    def __post_init__(self) -> None:
        check_layout_knobs(self)
        if not self.rate_pps > 0:
            raise ValueError(f"rate_pps must be positive, got {self.rate_pps}")


def run_point(p: Params, ctx: PointContext) -> PointResult:
    with layout_up(p.kind, ctx.point_id, p.quota_cores, io_mode=p.io_mode, batch=p.batch) as tb:
        trial = udp_trial(tb, p.rate_pps, p.duration_s, p.payload_bytes)
    ctx.log.info(
        "offered %.0f: answered %.0f (loss %.1f%%)",
        p.rate_pps,
        trial.answered_pps,
        100 * trial.loss_frac,
    )
    summary = trial.row()
    summary.pop("offered_pps")  # the parameter rate_pps is the offered rate
    summary.pop("invalid_reasons")
    return PointResult(
        summary=summary, samples=[trial.row()], invalid_reasons=trial.invalid_reasons
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    answered = run.series("rate_pps", "answered_pps", by=["kind"])
    loss = run.series("rate_pps", "loss_frac", by=["kind"])
    findings = []
    for s in answered:
        k = find_knee(s.x, s.y)
        if k.saturated and k.capacity_pps:
            findings.append(
                f"{s.label}: carries up to {k.knee_offered_pps:,.0f} requests/s, "
                f"saturates near {k.capacity_pps:,.0f}"
            )
        else:
            findings.append(f"{s.label}: not saturated up to {max(s.x):,.0f} requests/s")

    def draw_answered(fig) -> None:
        ax = fig.subplots()
        top = max((max(s.x) for s in answered), default=1)
        ax.plot([0, top], [0, top], color="0.7", linestyle=":", label="answered = offered")
        for s in answered:
            style.plot_series(ax, s)
        ax.set_xlabel("offered requests (packets/s)")
        ax.set_ylabel("answered requests (packets/s)")
        ax.legend()

    def draw_loss(fig) -> None:
        ax = fig.subplots()
        for s in loss:
            style.plot_series(ax, s)
        ax.set_xlabel("offered requests (packets/s)")
        ax.set_ylabel("loss (fraction)")
        ax.legend()

    return [
        Figure(
            "answered",
            "Answered against offered request rate",
            draw_answered,
            "; ".join(findings) + ".",
        ),
        Figure(
            "loss",
            "Loss against offered request rate",
            draw_loss,
            "Loss rises where each method stops answering what it is offered.",
        ),
        Section(
            "Method",
            "Each point offers one rate of 64-byte UDP echo requests (open loop, split "
            "over the clients) to a fresh layout; answered = echoes received per second of "
            "measured time. The knee is the highest offered rate answered within 5 %.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="capacity",
        description="Offered vs answered UDP request rate and loss: DR, NAT, TUN.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=120,
    )
)
