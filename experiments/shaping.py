"""shaping: the director's capacity against the link rate (tc, Ethernet framing counted),
and against delay and loss on the clients' links (netem, where the kernel has it).

Where the wire's frame rate is below what the director's CPU can do, the links set the
capacity (it follows the wire limit); above it, the CPU does (capacity flat, at the unshaped
figure). The crossing is where "is it the NIC?" gets its answer.

With ``client_delay_ms`` or ``client_loss_pct`` each client's link gets netem in both
directions (a WAN in front of the site), and the point first measures what netem really does:
pings to the VIP before and after give the added one-way delay (half the rise of the median
RTT) and the loss per direction (a ping is lost when either direction drops it:
1 - sqrt(1 - ping loss)), with a 95% interval, beside what was set. With loss set, a rate
counts as carried when the requests that survive both directions' loss are answered (see
`carried_frac_with_loss`): otherwise no rate would be. netem needs a full kernel:
`sudo lvs-testbed vm run -- lvs-testbed experiment run shaping -p client_delay_ms=20`.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.harness.trials import (
    CARRIED_FRAC,
    capacity_invalid,
    capacity_summary,
    find_capacity,
    layout_up,
)
from testbed.net.shaping import Shaping, max_frames_per_s, tc_commands
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
    client_delay_ms: float | None = field(
        default=None,
        metadata={"help": "netem delay on each client's link, each direction, ms (full kernel)."},
    )
    client_loss_pct: float | None = field(
        default=None,
        metadata={"help": "netem loss on each client's link, each direction, % (full kernel)."},
    )
    pings: int = field(
        default=400, metadata={"help": "Pings per measurement of netem's delay and loss."}
    )

    def __post_init__(self) -> None:
        check_layout_knobs(self)
        if self.client_delay_ms is not None and self.client_delay_ms < 0:
            raise ValueError(f"client_delay_ms must not be negative, got {self.client_delay_ms}")
        if self.client_loss_pct is not None and not 0 <= self.client_loss_pct < 100:
            raise ValueError(f"client_loss_pct must be in [0, 100), got {self.client_loss_pct}")
        if self.pings < 20:
            raise ValueError(f"pings must be at least 20, got {self.pings}")

    @property
    def netem(self) -> bool:
        return bool(self.client_delay_ms) or bool(self.client_loss_pct)


def wire_limit_pps(bw_mbit: float, payload_bytes: int) -> float:
    """Requests per second one shaped link carries (one frame per request, framing counted)."""
    return max_frames_per_s(bw_mbit, ETH_IP_UDP_HEADER_BYTES + payload_bytes)


# -- netem on the clients' links and what it really does (pure parts first) ------------------

_PING_TIME = re.compile(r"time=([0-9.]+) ms")
_PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) received")


def parse_ping(text: str) -> tuple[int, int, list[float]]:
    """(sent, received, RTTs in ms) from ``ping -n`` output (not -q: each reply's time)."""
    m = _PING_COUNTS.search(text)
    if m is None:
        raise ValueError(f"no ping summary in {text[-300:]!r}")
    return int(m.group(1)), int(m.group(2)), [float(t) for t in _PING_TIME.findall(text)]


def per_direction_loss(ping_loss: float) -> float:
    """The loss of each direction that makes ``ping_loss`` of the round trips fail, when
    both directions drop independently at the same rate: 1 - sqrt(1 - ping_loss)."""
    return 1.0 - math.sqrt(max(0.0, 1.0 - ping_loss))


def carried_frac_with_loss(loss_pct: float | None) -> float:
    """The share of requests that must be answered for a rate to count as carried when each
    direction of the clients' links drops ``loss_pct`` % (a request and its reply each cross
    one): the usual share of what survives both."""
    survives = (1 - (loss_pct or 0.0) / 100) ** 2
    return CARRIED_FRAC * survives


def wilson_interval(lost: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``lost``/``n`` (n > 0)."""
    p = lost / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def netem_accuracy(
    base: tuple[int, int, list[float]],
    shaped: tuple[int, int, list[float]],
    set_delay_ms: float | None,
    set_loss_pct: float | None,
) -> dict:
    """Set against observed, from pings without and with netem on the client's link. The
    delay's spread: half the rise of the RTT's quartiles over the median RTT without netem."""
    sent, received, rtts = shaped
    ping_loss = 1 - received / sent
    lo, hi = wilson_interval(sent - received, sent)
    observed_delay = delay_p25 = delay_p75 = None
    if rtts and base[2]:
        base_p50 = statistics.median(base[2])
        observed_delay = (statistics.median(rtts) - base_p50) / 2
        if len(rtts) >= 2:
            q1, _, q3 = statistics.quantiles(rtts, n=4)
            delay_p25, delay_p75 = (q1 - base_p50) / 2, (q3 - base_p50) / 2
    return {
        "set_delay_ms": set_delay_ms or 0.0,
        "observed_delay_ms": observed_delay,
        "observed_delay_ms_p25": delay_p25,
        "observed_delay_ms_p75": delay_p75,
        "base_rtt_ms_p50": statistics.median(base[2]) if base[2] else None,
        "rtt_ms_p50": statistics.median(rtts) if rtts else None,
        "set_loss_pct": set_loss_pct or 0.0,
        "observed_loss_pct": 100 * per_direction_loss(ping_loss),
        "observed_loss_pct_lo": 100 * per_direction_loss(lo),
        "observed_loss_pct_hi": 100 * per_direction_loss(hi),
        "pings": sent,
    }


def shape_client_links(tb, delay_ms: float | None, loss_pct: float | None) -> None:
    """netem on both ends of every client's link (the layout's rate shaping kept)."""
    p = tb.params
    shaping = Shaping(
        bw_mbit=p.segment_bw_mbit("outer"),
        ethernet_overhead=p.ethernet_overhead,
        queue_pkts=p.queue_pkts,
        delay_ms=delay_ms,
        loss_pct=loss_pct,
    )
    for client in tb.plan.clients:
        link = tb.net[client.name].intfs[0].link
        for intf in (link.intf1, link.intf2):
            # The layout shaped this link already, and tc cannot change an htb root in place
            # ("Change operation not supported by specified qdisc"): start from no qdisc.
            intf.node.cmd(f"tc qdisc del dev {intf.name} root 2>/dev/null")
            for cmd in tc_commands(intf.name, shaping):
                out = intf.node.cmd(f"tc {cmd} 2>&1; echo __rc=$?")
                body, _, rc = out.rpartition("__rc=")
                if rc.strip() != "0":
                    raise RuntimeError(f"{intf.name}: tc {cmd} failed: {body.strip()}")


def _ping(tb, count: int) -> tuple[int, int, list[float]]:
    c1 = tb.net[tb.plan.clients[0].name]
    timeout_s = count * 0.01 + 30
    return parse_ping(
        c1.cmd(f"timeout {timeout_s:.0f} ping -n -c {count} -i 0.01 -W 2 {tb.plan.vip}")
    )


def run_point(p: Params, ctx: PointContext) -> PointResult:
    from testbed.net.shaping import require_netem

    require_netem(Shaping(delay_ms=p.client_delay_ms, loss_pct=p.client_loss_pct))
    start = (
        500.0 if p.bw_mbit is None else min(2000.0, wire_limit_pps(p.bw_mbit, p.payload_bytes) / 4)
    )
    accuracy: dict = {}
    with layout_up(p.kind, ctx.point_id, p.quota_cores, bw_mbit=p.bw_mbit) as tb:
        if p.netem:
            base = _ping(tb, p.pings)
            shape_client_links(tb, p.client_delay_ms, p.client_loss_pct)
            accuracy = netem_accuracy(
                base, _ping(tb, p.pings), p.client_delay_ms, p.client_loss_pct
            )
            ctx.log.info("netem: %s", accuracy)
        cap = find_capacity(
            tb,
            start_pps=start,
            duration_s=p.duration_s,
            payload_bytes=p.payload_bytes,
            log=ctx.log,
            carried_frac=carried_frac_with_loss(p.client_loss_pct),
        )
    summary = capacity_summary(cap)
    summary.update(accuracy)
    summary["carried_frac"] = carried_frac_with_loss(p.client_loss_pct)
    summary["wire_limit_pps"] = wire_limit_pps(p.bw_mbit, p.payload_bytes) if p.bw_mbit else None
    return PointResult(
        summary=summary,
        samples=[t.row() for t in cap.trials],
        invalid_reasons=capacity_invalid(cap),
    )


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    plain = [p for p in run.measured() if not p.params.netem]
    shaped = [p for p in plain if p.params.bw_mbit is not None]
    unshaped = {p.params.kind: p.summary["capacity_pps"] for p in plain if p.params.bw_mbit is None}
    series = run.series(
        "bw_mbit", "capacity_pps", by=["kind", "client_delay_ms", "client_loss_pct"]
    )
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
            "preamble, FCS and gap per frame (84 at least), as a real wire does. Delay and "
            "loss (netem) sit on each client's link, both directions; their accuracy is "
            "measured with pings to the VIP before and after netem is set.",
        ),
        *netem_sections(run),
    ]


def netem_sections(run: RunData) -> list[Section]:
    """The table of set against observed delay and loss, when any point had netem."""
    rows = [p for p in run.measured() if p.params.netem]
    if not rows:
        return []
    lines = [
        "| kind | Mbit/s | delay set (ms) | delay observed (ms, quartiles) | loss set (%) | "
        "loss observed (%, 95% interval) | RTT p50 without / with (ms) | capacity (requests/s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in sorted(
        rows,
        key=lambda p: (p.params.kind, p.params.client_delay_ms or 0, p.params.client_loss_pct or 0),
    ):
        s = p.summary
        delay = "-" if s.get("observed_delay_ms") is None else f"{s['observed_delay_ms']:.2f}"
        if s.get("observed_delay_ms_p25") is not None:
            delay += f" ({s['observed_delay_ms_p25']:.2f}-{s['observed_delay_ms_p75']:.2f})"
        lines.append(
            f"| {p.params.kind} | {p.params.bw_mbit or '-'} | {s['set_delay_ms']:g} | {delay} | "
            f"{s['set_loss_pct']:g} | {s['observed_loss_pct']:.2f} "
            f"({s['observed_loss_pct_lo']:.2f}-{s['observed_loss_pct_hi']:.2f}) | "
            f"{s['base_rtt_ms_p50']:.2f} / {s['rtt_ms_p50']:.2f} | {s['capacity_pps']:,.0f} |"
        )
    note = (
        f"{rows[0].summary['pings']} pings per measurement. Observed delay is half the rise "
        "of the median RTT; observed loss per direction is 1 - sqrt(1 - ping loss). With "
        "loss set, a rate counts as carried when 98% of the requests that survive both "
        "directions' set loss are answered."
    )
    return [Section("netem accuracy (set against observed)", "\n".join(lines) + "\n\n" + note)]


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
