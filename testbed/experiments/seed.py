"""seed: the 2003 lvs-users post's scenario, reproduced step by step (``lvs-testbed reproduce``).

The author's LVS-NAT pair topped out near 6,000 packets/s (3,000 in, 3,000 out) where his
LVS-DR director had handled ~4,000 inbound packets/s without trouble; NIC interrupt
coalescing lifted NAT to 4,000/4,000; his table held ~62,000 entries at ~2,000 requests/s with
a 30 s fin timeout. He asked: NIC? IRQ? LVS type? bus? connection table?

Our director is not a 2003 box, so the first step calibrates: it finds the CPU quota at which
our NAT director, handling every frame with its own system call (as a NIC interrupting per
frame), saturates near the seed's 6,000 packets/s in total. Every later step runs at that
quota, one knob at a time:

- ``dr``, ``nat``, ``nat1``: capacity of DR, of NAT with two NICs and with one NIC, per-frame I/O;
- ``nat-coalescing``: NAT with batched I/O and a wait (the e100's "CPU Cycle Saver");
- ``table-bits-12``, ``table-bits-16``: NAT with the table pre-filled to 62,000 entries in
  2^12 and in 2^16 buckets (the seed's size);
- ``table-size-dr``, ``table-size-nat``: the table's size under 2,000 short connections/s with
  a 30 s fin timeout (no quota: this is about the table, not about capacity).

Steps after ``calibrate`` read the calibrated quota from the calibration point of the same
run, so the whole reproduction is one run directory and one report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from testbed.experiments import Experiment, PointContext, PointResult, register
from testbed.experiments.common import (
    capacity_invalid,
    capacity_summary,
    find_capacity,
    layout_up,
    tcp_load,
)
from testbed.experiments.results import RESULT_FILE, RunData
from testbed.report import Figure, Section

SEED = {
    "dr_in_pps": 4000,  # handled without trouble: a lower bound, not a ceiling
    "nat_total_pps": 6000,  # 3000 in + 3000 out, the ceiling
    "nat_coalescing_total_pps": 8000,  # 4000 in + 4000 out, sustained
    "table_entries": 62000,
    "requests_per_s": 2000,
    "tcp_fin_timeout_s": 30,
}
STEPS = ("calibrate", "dr", "nat", "nat1", "nat-coalescing", "table-bits-12", "table-bits-16",
         "table-size-dr", "table-size-nat")
FIRST_GUESS_CORES = 0.06  # near what this machine needs; calibration corrects it
COALESCING = {"io_mode": "ring", "batch": 64, "wait_us": 200}
PER_FRAME = {"io_mode": "frame", "batch": 64, "wait_us": 0}


@dataclass(frozen=True)
class Params:
    step: Literal[STEPS] = field(default="calibrate", metadata={"help": "Which step: " + ", ".join(STEPS) + "."})
    quick: bool = field(default=False, metadata={"help": "Shorter trials (the CI run)."})
    target_total_pps: float = field(default=6000.0, metadata={"help": "NAT in+out pps to calibrate to (the seed's)."})
    quota_cores: float | None = field(default=None, metadata={"help": "Director quota; none: the run's calibrated one."})


def _trial_s(p: Params) -> float:
    return 1.0 if p.quick else 2.0


def _calibration(ctx: PointContext) -> dict:
    for pdir in sorted(ctx.out_dir.parent.iterdir()):
        result = pdir / RESULT_FILE
        if "step=calibrate" in pdir.name and result.exists():
            record = json.loads(result.read_text())
            if record.get("status") == "ok":
                return record["summary"]
    raise RuntimeError("no calibrated quota in this run: run the calibrate step first (or give quota_cores)")


# Where each step's capacity search starts, as a share of NAT's calibrated capacity: close
# below the expected figure, so the search needs few trials.
START_SHARE = {"dr": 1.2, "nat": 0.6, "nat1": 0.6, "nat-coalescing": 0.8, "table-bits-12": 0.6,
               "table-bits-16": 0.6}


def calibrate(p: Params, ctx: PointContext) -> PointResult:
    """Capacity is proportional to the quota (see the cpu-quota experiment): measure at a
    first guess, scale, measure again, scale once more. One layout serves every attempt: the
    quota changes in place."""
    target_requests = p.target_total_pps / 2  # NAT carries each request and its reply
    quota, rows = FIRST_GUESS_CORES, []
    with layout_up("nat", ctx.point_id, quota, **PER_FRAME) as tb:
        for attempt in range(3):
            for d in tb.plan.directors:
                tb.net[d.name].set_cpu_quota(quota)
            cap = find_capacity(tb, start_pps=0.6 * target_requests, factor=1.4, duration_s=_trial_s(p),
                                bisections=1 if p.quick else 2, log=ctx.log)
            summary, invalid = capacity_summary(cap), capacity_invalid(cap)
            rows += [{**t.row(), "attempt": attempt, "quota_cores": quota} for t in cap.trials]
            total = summary["director_total_pps"]
            ctx.log.info("quota %.4f cores: NAT %.0f pps in+out (target %.0f)", quota, total, p.target_total_pps)
            if abs(total - p.target_total_pps) <= (0.15 if p.quick else 0.1) * p.target_total_pps:
                break
            quota = max(0.005, quota * target_requests / max(summary["capacity_pps"], 1.0))
    result = {"quota_cores": quota, "nat_total_pps": total, "attempts": attempt + 1,
              **{k: v for k, v in summary.items() if k != "trials"}}
    return PointResult(summary=result, samples=rows, invalid_reasons=invalid)


def capacity_step(p: Params, ctx: PointContext, quota: float, nat_capacity_pps: float) -> PointResult:
    kind, knobs, prefill = "nat", dict(PER_FRAME), 0
    if p.step in ("dr", "nat1"):
        kind = p.step
    elif p.step == "nat-coalescing":
        knobs = dict(COALESCING)
    elif p.step.startswith("table-bits-"):
        knobs["table_bits"] = int(p.step.rsplit("-", 1)[1])
        prefill = SEED["table_entries"]
    with layout_up(kind, ctx.point_id, quota, **knobs) as tb:
        if prefill:
            from testbed.experiments.conntable import prefill as fill

            fill(tb, prefill)
        cap = find_capacity(tb, start_pps=START_SHARE[p.step] * nat_capacity_pps, factor=1.4,
                            duration_s=_trial_s(p), bisections=1 if p.quick else 2, log=ctx.log)
    summary = capacity_summary(cap)
    summary["quota_cores"] = quota
    return PointResult(summary=summary, samples=[t.row() for t in cap.trials], invalid_reasons=capacity_invalid(cap))


def table_size_step(p: Params, ctx: PointContext) -> PointResult:
    kind = p.step.rsplit("-", 1)[1]
    duration = 12.0 if p.quick else 45.0
    with layout_up(kind, ctx.point_id, None) as tb:
        tb.ipvsadm(f"--set 900 {SEED['tcp_fin_timeout_s']} 300")
        rows, loads = tcp_load(tb, SEED["requests_per_s"], duration, 2.0,
                               lambda _t: {"entries": tb.director_request({"op": "stats"})["stats"]["connections"]})
    completed = sum(x.get("completed_cps", 0) for x in loads)
    tail = [r["entries"] for r in rows if r["t_s"] >= rows[-1]["t_s"] - 6] if rows else [0]
    reasons = [] if completed >= 0.95 * SEED["requests_per_s"] else [
        f"completed {completed:,.0f} of {SEED['requests_per_s']:,} connections/s"]
    return PointResult(summary={"entries": sum(tail) / len(tail), "completed_cps": completed,
                                "duration_s": duration}, samples=rows, invalid_reasons=reasons)


def run_point(p: Params, ctx: PointContext) -> PointResult:
    if p.step == "calibrate":
        return calibrate(p, ctx)
    if p.step.startswith("table-size-"):
        return table_size_step(p, ctx)
    if p.quota_cores is not None:
        return capacity_step(p, ctx, p.quota_cores, p.target_total_pps / 2)
    cal = _calibration(ctx)
    return capacity_step(p, ctx, float(cal["quota_cores"]), float(cal["capacity_pps"]))


# ---------------------------------------------------------------------------------------------
# The report: seed against measured, and a verdict per hypothesis


def _by_step(run: RunData) -> dict[str, dict]:
    return {p.params.step: p.summary for p in run.measured()}


def comparison_rows(s: dict[str, dict]) -> list[tuple[str, float | None, float | None, str]]:
    """(figure, seed, measured, note) rows; measured is None where a step is missing."""
    def get(step: str, key: str) -> float | None:
        return s.get(step, {}).get(key)

    return [
        ("LVS-DR, inbound pps", SEED["dr_in_pps"], get("dr", "director_in_pps"),
         "seed: handled without trouble (a lower bound); measured: at saturation"),
        ("LVS-NAT, in+out pps at saturation", SEED["nat_total_pps"], get("nat", "director_total_pps"),
         "measured at the calibrated quota, per-frame I/O"),
        ("LVS-NAT with coalescing, in+out pps", SEED["nat_coalescing_total_pps"],
         get("nat-coalescing", "director_total_pps"), "seed: sustained, 4,000/4,000; measured: at saturation"),
        ("Connection table entries at 2,000 conn/s, fin 30 s (NAT)", SEED["table_entries"],
         get("table-size-nat", "entries"), "measured after the run's duration"),
        ("Connection table entries at 2,000 conn/s, fin 30 s (DR)", None, get("table-size-dr", "entries"),
         "the DR director sees only the client's side"),
    ]


def verdicts(s: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(hypothesis, verdict, evidence) from the measured steps (pure, unit-tested)."""
    def cap(step: str) -> float | None:
        return s.get(step, {}).get("capacity_pps")

    out = []
    nat, nat1, dr = cap("nat"), cap("nat1"), cap("dr")
    if nat and nat1:
        ratio = nat / nat1
        out.append(("NIC", "not the bottleneck" if 0.85 <= ratio <= 1.15 else "matters",
                    f"two NICs carry {ratio:.2f}x what one NIC carries at the same CPU quota; a 100 Mbit/s "
                    f"wire carries ~96,000 such frames/s, far above the ceiling"))
    coal = cap("nat-coalescing")
    if nat and coal:
        gain = coal / nat
        out.append(("IRQ (per-frame wake-ups)", "a bottleneck" if gain >= 1.15 else "not the bottleneck",
                    f"batching frames per wake-up lifts NAT {gain:.2f}x (seed: 8,000/6,000 = 1.33x)"))
    if nat and dr:
        out.append(("LVS type", "the main factor" if dr / nat >= 1.5 else "minor",
                    f"DR answers {dr / nat:.2f}x the requests NAT does at the same quota: NAT's director "
                    f"carries every reply too ({s['nat'].get('director_out_pps', 0):,.0f} out pps at saturation), "
                    f"so the same per-packet cost buys half the requests"))
    out.append(("bus (DMA)", "not testable here",
                "the emulation has no PCI bus or DMA; what remains is per-packet CPU cost, which "
                "the quota models"))
    t12, t16 = cap("table-bits-12"), cap("table-bits-16")
    if t12 and t16:
        ratio = t16 / t12
        entries = s.get("table-size-nat", {}).get("entries")
        ev = (f"with 62,000 entries, 2^16 buckets carry {ratio:.2f}x what 2^12 carry"
              + (f"; 2,000 conn/s filled the NAT table to {entries:,.0f} entries" if entries else ""))
        out.append(("connection table", "not the bottleneck" if ratio < 1.15 else "matters", ev))
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    s = _by_step(run)
    quota = s.get("calibrate", {}).get("quota_cores")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:,.0f}"

    rows = []
    for name, seed, measured, note in comparison_rows(s):
        ratio = f"{measured / seed:.2f}" if seed and measured else "-"
        rows.append([name, fmt(seed), fmt(measured), ratio, note])
    compare = _md_table(["figure", "seed (2003)", "measured", "measured / seed", "note"], rows)
    verdict = _md_table(["hypothesis", "verdict", "evidence"], [list(v) for v in verdicts(s)])
    caps = [(step, s[step]["capacity_pps"]) for step in STEPS if "capacity_pps" in s.get(step, {})
            and step != "calibrate"]

    def draw(fig) -> None:
        ax = fig.subplots()
        ax.bar([c[0] for c in caps], [c[1] for c in caps],
               color=[style.colour("dr" if c[0] == "dr" else "nat1" if c[0] == "nat1" else "nat") for c in caps])
        ax.set_ylabel("capacity (requests/s)")
        ax.tick_params(axis="x", rotation=30)

    intro = (f"Calibrated director quota: {quota:.4f} of one core (NAT saturates at "
             f"{s['calibrate']['nat_total_pps']:,.0f} pps in+out with per-frame I/O)." if quota else
             "The calibration step did not complete.")
    return [
        Section("Seed against measured", intro + "\n\n" + compare),
        Section("Verdicts", verdict),
        Figure("capacity-by-step", "Capacity of each variant at the calibrated quota", draw,
               ", ".join(f"{k} {v:,.0f}" for k, v in caps) + " requests/s." if caps else ""),
        Section("Method", __doc__.split("\n\n", 1)[1].strip()),
    ]


EXPERIMENT = register(Experiment(
    name="seed", description="The seed post's scenario: calibrate, then DR, NAT, coalescing, NICs, table.",
    params=Params, run_point=run_point, report=report, timeout_s=900))


def sweep_args(quick: bool) -> list[str]:
    """The `experiment run seed` parameters of `lvs-testbed reproduce`."""
    args = [f"step={','.join(STEPS)}"]
    if quick:
        args.append("quick=true")
    return args
