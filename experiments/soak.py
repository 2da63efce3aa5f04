"""soak: short TCP connections at a steady rate for minutes; the director's memory and table
size must stay flat once the table has filled (no leak, expiry keeping up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import director_pid, layout_up, rss_kb, tcp_load
from testbed.measure.analysis import linear_fit
from testbed.report import Figure, Section


@dataclass(frozen=True)
class Params:
    rate_cps: float = field(default=1000.0, metadata={"help": "New TCP connections per second."})
    duration_s: float = field(default=600.0, metadata={"help": "Length of the soak, s."})
    warmup_s: float = field(
        default=150.0,
        metadata={"help": "Time for the table to fill (longest timeout + margin), s."},
    )
    sample_s: float = field(default=10.0, metadata={"help": "Sampling interval, s."})
    kind: Literal["dr", "nat", "tun", "nat1"] = field(
        default="nat", metadata={"help": "dr, tun, nat or nat1."}
    )

    def __post_init__(self) -> None:
        if not self.duration_s > self.warmup_s + 2 * self.sample_s:
            raise ValueError("duration_s must exceed warmup_s by at least two samples")


def run_point(p: Params, ctx: PointContext) -> PointResult:
    with layout_up(p.kind, ctx.point_id, None) as tb:
        pid = director_pid(tb)

        def sample(t_s: float) -> dict:
            stats = tb.director_request({"op": "stats"})["stats"]
            row = {"rss_kb": rss_kb(pid), "entries": stats["connections"], "cpu_s": stats["cpu_s"]}
            ctx.log.info("t=%.0f s: rss %d kB, %d entries", t_s, row["rss_kb"], row["entries"])
            return row

        rows, loads = tcp_load(tb, p.rate_cps, p.duration_s, p.sample_s, sample)
    after = [r for r in rows if r["t_s"] >= p.warmup_s]
    rss_fit = (
        linear_fit([r["t_s"] for r in after], [r["rss_kb"] for r in after])
        if len(after) >= 2
        else None
    )
    ent_fit = (
        linear_fit([r["t_s"] for r in after], [r["entries"] for r in after])
        if len(after) >= 2
        else None
    )
    summary = {
        "completed_cps": sum(x.get("completed_cps", 0) for x in loads),
        "failed_conns": sum(x.get("failed", 0) for x in loads),
        "rss_kb_after_warmup_min": min((r["rss_kb"] for r in after), default=None),
        "rss_kb_after_warmup_max": max((r["rss_kb"] for r in after), default=None),
        "rss_kb_per_min": rss_fit.slope * 60 if rss_fit else None,
        "entries_after_warmup_min": min((r["entries"] for r in after), default=None),
        "entries_after_warmup_max": max((r["entries"] for r in after), default=None),
        "entries_per_min": ent_fit.slope * 60 if ent_fit else None,
    }
    return PointResult(summary=summary, samples=rows)


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    texts = []
    for p in run.measured():
        s = p.summary
        texts.append(
            f"{p.params.kind} at {p.params.rate_cps:,.0f} conn/s for {p.params.duration_s:,.0f} "
            "s: after "
            f"warm-up RSS {s['rss_kb_after_warmup_min']:,}-{s['rss_kb_after_warmup_max']:,} kB "
            f"({s['rss_kb_per_min']:+,.0f} kB/min), table {s['entries_after_warmup_min']:,}-"
            f"{s['entries_after_warmup_max']:,} entries ({s['entries_per_min']:+,.0f}/min)"
        )

    def draw(fig) -> None:
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        for p in run.measured():
            rows = p.samples()
            ax1.plot(
                [r["t_s"] for r in rows],
                [r["rss_kb"] / 1024 for r in rows],
                color=style.colour(p.params.kind),
            )
            ax2.plot(
                [r["t_s"] for r in rows],
                [r["entries"] for r in rows],
                color=style.colour(p.params.kind),
            )
            ax1.axvline(p.params.warmup_s, color="0.6", linestyle=":")
            ax2.axvline(p.params.warmup_s, color="0.6", linestyle=":")
        ax1.set_ylabel("director RSS (MiB)")
        ax2.set_ylabel("table entries")
        ax2.set_xlabel("time (s)")

    return [
        Figure(
            "soak",
            "Director memory and table size under a steady connection rate",
            draw,
            "; ".join(texts) + "." if texts else "",
        ),
        Section(
            "Method",
            "Short HTTP connections at a fixed rate; the director's resident memory "
            "and table size are sampled; slopes are fitted after the warm-up.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="soak",
        description="Director memory and table size under minutes of short connections.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=3600,
    )
)
