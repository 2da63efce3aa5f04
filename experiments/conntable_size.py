"""conntable-size: how many entries the connection table holds against the connection rate
and the timeouts.

By Little's law the table holds rate x time-in-table entries. A short connection spends most
of its table life in its closing state: FIN_WAIT (``ipvsadm --set`` tcpfin) where the director
sees only the client's side (DR, TUN), TIME_WAIT (2 minutes, not settable with ipvsadm) where
it sees both sides (NAT). The seed's NAT director showed ~62,000 entries at ~2,000 requests/s
with a 30 s fin timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import layout_up, tcp_load
from testbed.measure.analysis import linear_fit
from testbed.report import Figure, Section

SAMPLE_EVERY_S = 2.0


@dataclass(frozen=True)
class Params:
    rate_cps: float = field(
        default=2000.0, metadata={"help": "New TCP connections per second (HTTP GET, closed)."}
    )
    tcpfin_s: int = field(
        default=30, metadata={"help": "FIN_WAIT timeout (ipvsadm --set tcp tcpfin udp), s."}
    )
    kind: Literal["dr", "nat", "tun", "nat1"] = field(
        default="dr", metadata={"help": "dr, tun, nat or nat1."}
    )
    duration_s: float = field(
        default=45.0, metadata={"help": "Seconds of load; the last 10 s give the steady size."}
    )
    quota_cores: float | None = field(
        default=None, metadata={"help": "Director CPU quota (none: unlimited)."}
    )

    def __post_init__(self) -> None:
        if not self.rate_cps > 0 or not self.duration_s > 10:
            raise ValueError("rate_cps must be positive and duration_s above 10")


def run_point(p: Params, ctx: PointContext) -> PointResult:
    with layout_up(p.kind, ctx.point_id, p.quota_cores) as tb:
        tb.ipvsadm(f"--set 900 {p.tcpfin_s} 300")

        def states(_t_s: float) -> dict:
            counts: dict[str, int] = {}
            for line in tb.ipvsadm("-L -n -c")[1].splitlines()[2:]:
                parts = line.split()
                if len(parts) >= 3:
                    counts[parts[2]] = counts.get(parts[2], 0) + 1
            return {
                "entries": sum(counts.values()),
                **{f"state_{k.lower()}": v for k, v in sorted(counts.items())},
            }

        rows, loads = tcp_load(tb, p.rate_cps, p.duration_s, SAMPLE_EVERY_S, states)
    completed_cps = sum(x["completed_cps"] for x in loads)
    failed = sum(x["failed"] for x in loads)
    tail = [r for r in rows if r["t_s"] >= rows[-1]["t_s"] - 10] if rows else []
    steady = sum(r["entries"] for r in tail) / len(tail) if tail else 0
    slope = (
        linear_fit([r["t_s"] for r in tail], [r["entries"] for r in tail]).slope
        if len(tail) >= 2
        else 0.0
    )
    summary = {
        "entries_steady": steady,
        "entries_growth_per_s": slope,
        "completed_cps": completed_cps,
        "failed_conns": failed,
        "entries_per_cps_s": steady / completed_cps if completed_cps else None,
    }
    reasons = []
    if completed_cps < 0.95 * p.rate_cps:
        reasons.append(f"completed {completed_cps:,.0f} of {p.rate_cps:,.0f} connections/s")
    # Keep every state column in every row, so the CSV has one header.
    keys = sorted({k for r in rows for k in r})
    return PointResult(
        summary=summary,
        samples=[{k: r.get(k, 0) for k in keys} for r in rows],
        invalid_reasons=reasons,
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    lines = []
    for p in run.measured():
        s = p.summary
        state = (
            "steady"
            if abs(s["entries_growth_per_s"] or 0) < 0.02 * p.params.rate_cps
            else "still growing"
        )
        lines.append(
            f"{p.params.kind}, {p.params.rate_cps:,.0f} conn/s, tcpfin {p.params.tcpfin_s} s: "
            f"{s['entries_steady']:,.0f} entries ({state}; {s['entries_per_cps_s'] or 0:.1f} s "
            "per connection)"
        )

    def draw(fig) -> None:
        ax = fig.subplots()
        for p in run.measured():
            samples = p.samples()
            ax.plot(
                [r["t_s"] for r in samples],
                [r["entries"] for r in samples],
                color=style.colour(p.params.kind),
                label=f"{p.params.kind} {p.params.rate_cps:g}/s tcpfin {p.params.tcpfin_s}",
            )
        ax.axhline(62000, color="0.5", linestyle=":", label="seed: ~62,000")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("connection table entries")
        ax.legend()

    return [
        Figure(
            "entries-over-time",
            "Connection table entries under short connections",
            draw,
            "; ".join(lines) + "." if lines else "",
        ),
        Section(
            "Method",
            "Clients open short HTTP connections at the set rate (open loop); "
            "`ipvsadm -L -n -c` is counted every 2 s; the steady size is the mean of the last 10 "
            "s.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="conntable-size",
        description="Connection table size against connection rate and timeouts.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=900,
    )
)
