"""seed: the 2003 lvs-users post's question, answered by experiment (``lvs-testbed reproduce``).

The author's LVS-NAT pair topped out near 6,000 packets/s (3,000 in, 3,000 out) where his
LVS-DR director had handled ~4,000 inbound packets/s without trouble; NIC interrupt
coalescing lifted NAT to 4,000/4,000; his table held ~62,000 entries in 2^16 buckets at
~2,000 requests/s with a 30 s fin timeout; his directors were firewalled. He asked: NIC? IRQ?
LVS type? bus? connection table?

How it is measured here:

1. **All three layouts at once.** The dr, nat (two NICs per director) and nat1 (one NIC)
   layouts are built side by side in one process, each director with per-frame I/O (one
   system call per frame, as a NIC that interrupts per frame), 2^16 buckets and the seed's
   62,000 connections in its table. Nothing is rebuilt while measuring.
2. **Calibration.** The directors' CPU quota is set so that NAT saturates near the seed's
   6,000 packets/s in+out (3,000 requests/s): measured at a first guess, scaled, measured again.
3. **Interleaved blocks.** Every round measures each configuration still needed once, for a
   short block, in a fresh random order: the seed's NAT, NAT again (the A/A comparison: the
   machine's noise floor), NAT with one NIC, DR, NAT with coalescing (batched I/O with a
   200 us wait, switched in place), NAT with an empty table (the 62,000 entries taken out for
   the block and put back after). A block offers UDP echo requests well above the
   configuration's capacity, so the director works flat out at its quota; it records the
   director's CPU time (its cgroup), the requests and packets it carried, and the requests
   the clients got answered.
4. **Two measures per block.** The primary one is the director's efficiency: requests carried
   per CPU-second, the inverse of its CPU cost per request. It does not depend on how much
   CPU the director happened to get in those seconds. The seed-facing one is capacity:
   requests answered per second at the calibrated quota. Each comparison is the ratio of the
   variant to the seed's NAT measured in the same round; the two measures must agree within
   their intervals, or the report says why not.
5. **Verdicts from intervals.** Each ratio gets a confidence interval from its pairs
   (`testbed.harness.stats`). *matters*: the interval lies beyond a 10% effect; *no effect*:
   it lies within +/-10%; *can't tell*: otherwise. Rounds go on until every comparison is
   decided or the time budget ends; a decided configuration leaves the rounds.
6. **The table at steady state.** Short TCP connections at the seed's 2,000/s with its 30 s
   fin timeout, on NAT and DR (no quota), each client connecting from 8 addresses and their
   ports in sequence (as the seed's many Internet clients: otherwise a client port, and its
   table entry, comes round again within about 30 s): the table's size by state
   gives each connection's time in the table, and Little's law (entries = rate x time) its
   steady-state size, beside the seed's 62,000. The full run also keeps the load on until
   that size is reached.

What cannot be tested here, and why: the bus (the emulation has no PCI bus or DMA; what
remains of it is per-packet CPU cost, which the quota models) and the firewall (the director
reads and writes frames with AF_PACKET, below netfilter, so a ruleset on its host never sees
the frames it forwards, and the host's kernel handles its own copy of each frame in the
sending host's CPU time, outside the director's quota; with kernel IPVS, whose hooks sit in
netfilter, the rules are in the path).
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from scipy.stats import t as student_t

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.blocks import Comparison, Sequencer
from testbed.harness.results import RunData
from testbed.harness.stats import CANT_TELL, NOT_TESTABLE, SMALLEST_EFFECT, paired_effect
from testbed.harness.trials import (
    client_sources,
    prefill,
    start_tcp_load,
    tcp_load_results,
    wait_drained,
    windowed_trial,
)
from testbed.report import Figure, Section

SEED = {
    "dr_in_pps": 4000,  # handled without trouble: a lower bound, not a ceiling
    "nat_total_pps": 6000,  # 3000 in + 3000 out, the ceiling
    "nat_coalescing_total_pps": 8000,  # 4000 in + 4000 out, sustained
    "table_entries": 62000,
    "table_bits": 16,
    "requests_per_s": 2000,
    "tcp_fin_timeout_s": 30,
}
ANSWER_FILE = "answer.json"  # the point's structured answer (verdicts, figures), beside samples.csv
MEASURE = "requests per CPU-second of the director (variant / the seed's NAT)"
FIRST_GUESS_CORES = 0.06
COALESCING = {"io_mode": "ring", "batch": 64, "wait_us": 200}
PER_FRAME = {"io_mode": "frame", "batch": 64, "wait_us": 0}
OVERLOAD = 1.3  # a block offers this many times the configuration's capacity
SATURATED_SHARE = 0.9  # a block saturated its director if it used this share of its quota
SLICE_S = 0.25  # a block's window is measured in slices this long (see `_block`)
LAYOUTS = ("nat", "nat1", "dr")  # built side by side, each director with the seed's table
TABLE_PROBE_S = 12.0  # the short table run: enough for the passing states to settle
# The full run's extra seconds: past the terminal state's timeout (DR's FIN_WAIT after
# --set: 30 s; NAT's TIME_WAIT: 120 s), with margin.
TABLE_CONFIRM_S = {"dr": 40.0, "nat": 130.0}
TABLE_SAMPLE_S = 2.0
# Source addresses per client for the table run, each with its ports in sequence. The
# seed's 2,000 connections/s came from many Internet clients; two clients with one address
# and the kernel's choice of port reuse a client port (and so take over its table entry)
# within about 30 s, which capped the confirmed table at ~60,000 whatever its timeouts.
TABLE_SOURCES_PER_CLIENT = 8

# Configuration -> (the layout it runs on, what its director changes for the block). Both
# changes are made in place and undone after the block: coalescing reopens the director's
# ports in batched mode; the empty table parks the 62,000 entries (`ConnTable.park`). Freeing
# and re-creating them instead slowed the blocks after it by up to 20%.
CONFIGS = {
    "nat": ("nat", None),
    "nat-again": ("nat", None),
    "nat1": ("nat1", None),
    "dr": ("dr", None),
    "nat-coalescing": ("nat", "coalescing"),
    "nat-empty-table": ("nat", "empty-table"),
}
# Where each configuration's capacity is expected, as a share of NAT's (the first round's
# offered load; later rounds follow what was measured).
EXPECTED_SHARE = {
    "nat": 1.0,
    "nat-again": 1.0,
    "nat1": 1.0,
    "dr": 2.0,
    "nat-coalescing": 1.5,
    "nat-empty-table": 1.0,
}
COMPARISONS = (
    Comparison(
        "nic", "nat1", "nat", "Does the second NIC cost capacity? (one NIC against the seed's two)"
    ),
    Comparison(
        "irq",
        "nat-coalescing",
        "nat",
        "Do per-frame wake-ups cost capacity? (coalescing against one wake-up per frame)",
    ),
    Comparison("lvs_type", "dr", "nat", "Does the LVS type cost capacity? (DR against NAT)"),
    Comparison(
        "conntable",
        "nat-empty-table",
        "nat",
        "Does the connection table cost capacity? (an empty table against the seed's 62,000 "
        "entries in 2^16 buckets)",
    ),
    Comparison("aa", "nat-again", "nat", "The noise floor: the seed's NAT against itself"),
)
HYPOTHESES = ("nic", "irq", "lvs_type", "bus", "conntable", "firewall")
NOT_TESTABLE_WHY = {
    "bus": "the emulation has no PCI bus or DMA; what remains of bus transfers is per-packet CPU "
    "cost, which the quota models and the other steps measure",
    "firewall": "the director reads and writes frames with AF_PACKET, below netfilter, so a "
    "ruleset on its host never sees the frames it forwards, and the host kernel's own handling "
    "of each frame runs in the sending host's CPU time, outside the director's quota; with "
    "kernel IPVS (hooked into netfilter) the rules are in the path",
}


@dataclass(frozen=True)
class Params:
    quick: bool = field(
        default=False,
        metadata={"help": "The short run (CI): a 3-minute budget, no steady-state table run."},
    )
    budget_s: float | None = field(
        default=None,
        metadata={"help": "Time budget of the whole run, s (default: 560, 160 with quick)."},
    )
    block_s: float = field(
        default=1.5, metadata={"help": "Seconds each block measures (after 0.6 s of warm-up)."}
    )
    target_total_pps: float = field(
        default=6000.0, metadata={"help": "NAT in+out pps to calibrate to (the seed's)."}
    )
    quota_cores: float | None = field(
        default=None, metadata={"help": "Director quota, fraction of ONE core (none: calibrate)."}
    )
    order_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the random block order (none: a fresh one, recorded)."},
    )

    def __post_init__(self) -> None:
        if self.budget_s is not None and not 60 <= self.budget_s <= 7200:
            raise ValueError(f"budget_s must be 60..7200, got {self.budget_s}")
        if not 0.5 <= self.block_s <= 30:
            raise ValueError(f"block_s must be 0.5..30, got {self.block_s}")

    @property
    def budget(self) -> float:
        return self.budget_s if self.budget_s is not None else (160.0 if self.quick else 560.0)


# ---------------------------------------------------------------------------------------------
# Measuring (root, Mininet; runs in the point's process)


def efficiency(row: dict) -> float:
    """Requests per CPU-second of the director (higher is better): the packets it carried per
    CPU-second over the packets a request takes through it (NAT 2: the request and its reply;
    DR 1). The inverse of its CPU cost per request, whatever share of the CPU it got."""
    return row["requests_per_cpu_s"]


def capacity(row: dict) -> float:
    """Requests answered per second at the calibrated quota: NAT's replies forwarded, DR's
    requests forwarded (its real servers answer the clients themselves)."""
    return row["answered_rps"]


def unanswered(row: dict) -> float:
    """The share of the requests the director carried that were not answered through it
    (NAT: requests forwarded to a real server whose reply the director did not forward)."""
    carried = row["carried_rps"]
    return max(0.0, 1 - row["answered_rps"] / carried) if carried else 0.0


def _block(tb, offered_rps: float, window_s: float, quota: float) -> dict:
    """One block on ``tb``'s director d1, after the last block's backlog is worked off (with
    the quota lifted, so that costs nothing measured): requests offered above capacity, the
    director measured over a window in the middle of the load (`windowed_trial`)."""
    with tb.net["d1"].quota_lifted():
        wait_drained(tb, "d1", timeout_s=10, quiet_s=0.1)
    w = windowed_trial(tb, offered_rps, window_s, slices=max(4, round(window_s / SLICE_S)))
    dr = tb.plan.layout == "dr"
    per_request = 1 if dr else 2
    packets = w["inpkts"] + w["outpkts"]
    cpu_s, window = w["cpu_s"], w["window_s"]
    # Per slice, then the median: a burst of other work on the machine during one slice of
    # the window (a test suite, a compiler) leaves the block's figure alone.
    slices = [s for s in w["slices"] if s["cpu_s"] > 0 and s["s"] > 0]
    per_cpu = [(s["inpkts"] + s["outpkts"]) / per_request / s["cpu_s"] for s in slices]
    answered = [(s["inpkts"] if dr else s["outpkts"]) / s["s"] for s in slices]
    return {
        "offered_rps": offered_rps,
        "sent_rps": w["sent_pps"],
        "answered_rps": statistics.median(answered) if answered else 0.0,
        "carried_rps": packets / per_request / window,
        "director_in_pps": w["inpkts"] / window,
        "director_out_pps": w["outpkts"] / window,
        "director_total_pps": packets / window,
        "director_cores": cpu_s / window,
        "director_cpu_s": cpu_s,
        "requests_per_cpu_s": statistics.median(per_cpu) if per_cpu else 0.0,
        "requests_per_cpu_s_window": packets / per_request / cpu_s if cpu_s > 0 else 0.0,
        "socket_drops": w["socket_drops"],
        "client_loss_frac": w["client_loss_frac"],
        # Busy for the whole window: it used (nearly) all of its quota.
        "saturated": cpu_s / window >= SATURATED_SHARE * quota,
        "host_busy_frac": w["host_busy_frac"],
        "invalid": "; ".join(w["invalid_reasons"]),
    }


class Rig:
    """The `LAYOUTS`, up side by side, and a block of any configuration."""

    def __init__(self, stack: ExitStack, quota: float, log) -> None:
        from testbed.net.network import Testbed
        from testbed.topo.plan import LayoutParams

        self.log = log
        self.tbs = {}
        for layout in LAYOUTS:
            params = LayoutParams(
                director_cpu=quota,
                table_bits=SEED["table_bits"],
                ha="none",
                n_rs=3,
                n_clients=2,
                **PER_FRAME,
            )
            tb = stack.enter_context(Testbed(layout, params, kind=f"seed-{layout}"))
            tb.wait_ready()
            prefill(tb, SEED["table_entries"])
            self.tbs[layout] = tb
        self.quota = quota

    def set_quota(self, quota: float) -> None:
        for tb in self.tbs.values():
            for d in tb.plan.directors:
                tb.net[d.name].set_cpu_quota(quota)
        self.quota = quota

    def block(self, config: str, offered_rps: float, duration_s: float) -> dict:
        layout, change = CONFIGS[config]
        tb = self.tbs[layout]
        self._change(tb, change, True)
        try:
            row = _block(tb, offered_rps, duration_s, self.quota)
        finally:
            self._change(tb, change, False)
        return {"config": config, "quota_cores": self.quota, **row}

    @staticmethod
    def _change(tb, change: str | None, on: bool) -> None:
        if change == "coalescing":
            tb.director_request({"op": "io", **(COALESCING if on else PER_FRAME)})
        elif change == "empty-table":
            tb.director_request({"op": "table", "park": on})


CALIBRATION_BLOCKS = (3, 6)  # saturated blocks at least, blocks at most
CALIBRATION_TOLERANCE = 0.1  # done when the next quota is within this of the current one


def next_quota(rows: list[dict], target_total_pps: float, quota: float) -> tuple[float, bool]:
    """The quota for the next calibration block and whether calibration is done (pure).
    Capacity is the quota times the director's efficiency (requests per CPU-second), which
    does not depend on the quota, but one 1.5 s block's efficiency is off by up to a third on
    these machines: so the quota comes from the median over every saturated block so far, and
    calibration ends once that has settled (or the blocks run out)."""
    saturated = [r["requests_per_cpu_s"] for r in rows if r["saturated"]]
    if not saturated:
        return quota, len(rows) >= CALIBRATION_BLOCKS[1]
    target_rps = target_total_pps / 2  # NAT carries each request and its reply
    new = min(1.0, max(0.005, target_rps / max(statistics.median(saturated), 1.0)))
    settled = abs(new - quota) <= CALIBRATION_TOLERANCE * quota
    done = (len(saturated) >= CALIBRATION_BLOCKS[0] and settled) or len(rows) >= CALIBRATION_BLOCKS[
        1
    ]
    return new, done


def calibrate(rig: Rig, p: Params, log) -> tuple[float, list[dict]]:
    """The quota at which NAT saturates at the target (`next_quota`): blocks of NAT offered
    1.3x the target, at a first guess and then at each new estimate."""
    rows: list[dict] = []
    quota, offered = rig.quota, OVERLOAD * p.target_total_pps / 2
    done = False
    while not done:
        rig.set_quota(quota)
        row = {**rig.block("nat", offered, p.block_s), "phase": "calibrate", "attempt": len(rows)}
        rows.append(row)
        log.info(
            "calibration: quota %.4f, NAT %.0f pps in+out, %.0f requests per CPU-second%s",
            quota,
            row["director_total_pps"],
            row["requests_per_cpu_s"],
            "" if row["saturated"] else " (not saturated: offering more)",
        )
        if not row["saturated"]:
            offered *= 2  # not loaded to its limit: offer more at the same quota
        quota, done = next_quota(rows, p.target_total_pps, quota)
    rig.set_quota(quota)
    log.info("calibrated: quota %.4f of one core", quota)
    return quota, rows


def table_steady_state(rig: Rig, p: Params, log) -> tuple[dict, list[dict]]:
    """The table under the seed's 2,000 short connections/s with its 30 s fin timeout, on DR
    then NAT (one at a time: two such loads at once overload a 2-core machine), quotas lifted
    (this is about the table, not capacity). The first seconds give each connection's time in
    the table (`little`); the full run keeps the load on until the terminal state's timeout
    has passed, to see the size Little's law predicts."""
    rate = SEED["requests_per_s"]
    results, rows = {}, []
    for layout in ("dr", "nat"):
        tb = rig.tbs[layout]
        samples: list[tuple[float, int, dict]] = []
        timeouts: dict[str, float] = {}
        with tb.net["d1"].quota_lifted():
            tb.ipvsadm(f"--set 900 {SEED['tcp_fin_timeout_s']} 300")
            tb.director_request({"op": "unfill"}, timeout_s=60)  # the made-up entries go
            wait_drained(tb, "d1", timeout_s=10, quiet_s=0.1)
            duration = TABLE_PROBE_S if p.quick else TABLE_PROBE_S + TABLE_CONFIRM_S[layout]
            with client_sources(tb, TABLE_SOURCES_PER_CLIENT) as sources:
                procs = start_tcp_load(tb, rate, duration, sources)
                t0 = time.monotonic()
                while any(proc.poll() is None for proc in procs):
                    time.sleep(TABLE_SAMPLE_S)
                    t_s = time.monotonic() - t0
                    reply = tb.director_request({"op": "states"}, timeout_s=30)
                    timeouts = reply["timeouts"]
                    entries = sum(reply["states"].values())
                    samples.append((t_s, entries, reply["states"]))
                    rows.append(
                        {"phase": "table", "config": layout, "t_s": t_s, "entries": entries}
                    )
                loads = tcp_load_results(procs)
        # Arrivals are the connections started: one that then fails made its entry too.
        started = sum(x.get("started_cps", 0.0) for x in loads)
        completed = sum(x.get("completed_cps", 0.0) for x in loads)
        results[layout] = little(samples, started, timeouts, TABLE_PROBE_S)
        results[layout]["completed_cps"] = completed
        if completed < 0.9 * rate:
            results[layout]["invalid"] = f"completed {completed:,.0f} of {rate:,} connections/s"
        log.info("table %s: %s", layout, results[layout])
    return results, rows


def little(
    samples: list[tuple[float, int, dict]],
    rate_cps: float,
    timeouts: dict[str, float],
    probe_s: float,
) -> dict:
    """Little's law: steady-state entries = arrival rate x time in the table (pure).

    Within the first ``probe_s`` seconds, the states a connection passes through on its way
    (SYN_RECV, ESTABLISHED, ...) hold a steady number of entries after a second or two, and
    the state it ends in (the terminal state, where it waits out that state's timeout) grows
    by the arrival rate: its count grows fastest. Time in the table = the steady entries of
    the other states / rate + the terminal state's timeout. Samples after that timeout (the
    full run's) show the size the table actually settles at."""
    early = [s for s in samples if 2.0 <= s[0] <= probe_s]
    if len(early) < 2 or rate_cps <= 0:
        return {"rate_cps": rate_cps, "error": "too few samples or no connections started"}
    first, last = early[0][2], early[-1][2]
    terminal = max(last, key=lambda state: last.get(state, 0) - first.get(state, 0))
    passing = statistics.fmean(entries - states.get(terminal, 0) for _, entries, states in early)
    timeout_s = timeouts[terminal]
    predicted = passing + rate_cps * timeout_s
    out = {
        "rate_cps": rate_cps,
        "terminal_state": terminal,
        "terminal_timeout_s": timeout_s,
        "passing_entries": passing,
        "time_in_table_s": predicted / rate_cps,
        "predicted_entries": predicted,
        "measured_entries": None,
        "measured_over_predicted": None,
    }
    settled = [entries for t_s, entries, _ in samples if t_s >= timeout_s + 5.0]
    if len(settled) >= 2:
        out["measured_entries"] = statistics.fmean(settled)
        out["measured_over_predicted"] = out["measured_entries"] / predicted
    return out


def run_point(p: Params, ctx: PointContext) -> PointResult:
    started = time.monotonic()
    deadline = started + p.budget
    order_seed = (
        p.order_seed if p.order_seed is not None else random.SystemRandom().randrange(2**31)
    )
    rows: list[dict] = []
    with ExitStack() as stack:
        rig = Rig(stack, p.quota_cores or FIRST_GUESS_CORES, ctx.log)
        ctx.log.info("layouts up in %.0f s", time.monotonic() - started)
        if p.quota_cores is None:
            quota, cal_rows = calibrate(rig, p, ctx.log)
            rows += cal_rows
        else:
            quota = p.quota_cores
        # Each configuration's offered load is set once, from its first saturated block, so
        # that every later block loads its director alike (more excess load would mean more
        # kernel work on the machine, and a different cost per packet); it rises only if a
        # block fails to saturate.
        offered = {c: OVERLOAD * EXPECTED_SHARE[c] * p.target_total_pps / 2 for c in CONFIGS}
        settled: set[str] = set()
        seq = Sequencer(COMPARISONS, measure=efficiency, seed=order_seed)
        table_s = 2 * (TABLE_PROBE_S + 4) + (0 if p.quick else sum(TABLE_CONFIRM_S.values()))
        round_s = 0.0
        while True:
            order = seq.next_round()
            if not order or time.monotonic() + round_s + table_s > deadline:
                break
            t_round = time.monotonic()
            done = []
            for config in order:
                row = rig.block(config, offered[config], p.block_s)
                if not row["saturated"]:  # the capacity moved up: offer more and measure again
                    offered[config] *= 1.5
                    row = rig.block(config, offered[config], p.block_s)
                if row["saturated"] and config not in settled:
                    offered[config] = OVERLOAD * row["carried_rps"]
                    settled.add(config)
                done.append(row)
            seq.record(done)
            rows += [{**r, "phase": "rounds", "round": seq.round - 1} for r in done]
            round_s = time.monotonic() - t_round
            ctx.log.info("round %d: %s (%.1f s)", seq.round, ", ".join(order), round_s)
        decisions = seq.finish()
        table, table_rows = table_steady_state(rig, p, ctx.log)
        rows += table_rows
    rows = uniform(rows)
    a = answer(seq, decisions, quota, table, rows, order_seed, time.monotonic() - started)
    (ctx.out_dir / ANSWER_FILE).write_text(json.dumps(a, indent=2) + "\n")
    return PointResult(summary=flat_summary(a), samples=rows)


def uniform(rows: list[dict]) -> list[dict]:
    """Every row with every column (None where a phase has no such figure): samples.csv has
    one header."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: row.get(k) for k in columns} for row in rows]


def verdicts(seq: Sequencer, decisions: dict) -> dict[str, dict]:
    """The ``verdicts`` object of summary.json (pure): per hypothesis its verdict, effect
    (variant / seed's NAT, efficiency), interval, pairs and what was compared; capacity's
    ratio beside it, and whether the two agree."""
    out: dict[str, dict] = {}
    for c in COMPARISONS:
        decision = decisions.get(c.key)
        if decision is None:
            out[c.key] = {
                "verdict": CANT_TELL,
                "effect": None,
                "ci95": None,
                "n": len(seq.pairs(c)[0]),
                "measure": MEASURE,
                "question": c.question,
                "note": "fewer than two rounds measured it",
            }
            continue
        entry = {
            "verdict": decision.verdict,
            "effect": decision.effect.ratio,
            "ci95": [decision.effect.low, decision.effect.high],
            "n": decision.effect.n,
            "confidence": decision.effect.confidence,
            "measure": MEASURE,
            "question": c.question,
        }
        caps = seq.pairs(c, capacity)
        cores = seq.pairs(c, lambda r: r["director_cores"])
        if len(caps[0]) >= 2:
            cap = paired_effect(*caps, confidence=decision.effect.confidence)
            share = paired_effect(*cores, confidence=decision.effect.confidence)
            entry["capacity"] = {"effect": cap.ratio, "ci95": [cap.low, cap.high], "n": cap.n}
            entry["cpu_share"] = {"effect": share.ratio, "ci95": [share.low, share.high]}
            entry["agree"] = cap.low <= decision.effect.high and decision.effect.low <= cap.high
            # Requests the director forwarded whose reply it never forwarded back (NAT): the
            # other way capacity can part from CPU cost, beside the CPU the director got.
            v_rows, b_rows = seq.pairs(c, unanswered)
            entry["unanswered"] = {
                "variant": statistics.median(v_rows),
                "baseline": statistics.median(b_rows),
            }
        out[c.key] = entry
    for key, why in NOT_TESTABLE_WHY.items():
        out[key] = {
            "verdict": NOT_TESTABLE,
            "effect": None,
            "ci95": None,
            "n": 0,
            "measure": None,
            "why": why,
        }
    return {key: out[key] for key in (*HYPOTHESES, "aa")}


def seed_figures(rows: list[dict], table: dict) -> dict[str, dict]:
    """The seed-facing figures with their spread over the blocks (pure): mean and 95% t
    interval of each configuration's rates at the calibrated quota, and the table sizes."""

    def spread(config: str, key: str) -> dict | None:
        values = [
            r[key]
            for r in rows
            if r.get("phase") == "rounds" and r["config"] == config and r["saturated"]
        ]
        if len(values) < 2:
            return {"mean": values[0], "ci95": None, "n": 1} if values else None
        mean = statistics.fmean(values)
        half = (
            float(student_t.ppf(0.975, len(values) - 1))
            * statistics.stdev(values)
            / math.sqrt(len(values))
        )
        return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(values)}

    return {
        "dr_in_pps": spread("dr", "director_in_pps"),
        "nat_total_pps": spread("nat", "director_total_pps"),
        "nat_coalescing_total_pps": spread("nat-coalescing", "director_total_pps"),
        "nat_requests_per_s": spread("nat", "answered_rps"),
        "table_entries_nat": table.get("nat", {}),
        "table_entries_dr": table.get("dr", {}),
    }


def answer(
    seq: Sequencer,
    decisions: dict,
    quota: float,
    table: dict,
    rows: list[dict],
    order_seed: int,
    elapsed_s: float,
) -> dict:
    """The run's answer (pure): the verdicts, the seed-facing figures and how they were got."""
    return {
        "verdicts": verdicts(seq, decisions),
        "figures": seed_figures(rows, table),
        "quota_cores": quota,
        "rounds": seq.round,
        "order_seed": order_seed,
        "elapsed_s": elapsed_s,
    }


def flat_summary(a: dict) -> dict:
    """The point's summary: the answer's headline figures as scalars (results tables)."""
    flat = {k: a[k] for k in ("quota_cores", "rounds", "order_seed", "elapsed_s")}
    for key, entry in a["verdicts"].items():
        flat[f"{key}_verdict"] = entry["verdict"]
        flat[f"{key}_effect"] = entry["effect"]
    for key in ("dr_in_pps", "nat_total_pps", "nat_coalescing_total_pps"):
        flat[key] = (a["figures"][key] or {}).get("mean")
    for layout in ("nat", "dr"):
        flat[f"table_{layout}_predicted"] = a["figures"][f"table_entries_{layout}"].get(
            "predicted_entries"
        )
        flat[f"table_{layout}_measured"] = a["figures"][f"table_entries_{layout}"].get(
            "measured_entries"
        )
    return flat


def load_answer(run: RunData) -> dict | None:
    """The answer the run's (last measured) point wrote, or None."""
    points = run.measured()
    if not points or not (points[-1].dir / ANSWER_FILE).exists():
        return None
    return json.loads((points[-1].dir / ANSWER_FILE).read_text())


def summarize(run: RunData) -> dict:
    """What summary.json carries beyond the points: the verdicts and the seed's figures."""
    return load_answer(run) or {}


# ---------------------------------------------------------------------------------------------
# The report


WORDS = {
    "nic": "NIC",
    "irq": "IRQ (per-frame wake-ups)",
    "lvs_type": "LVS type",
    "bus": "bus (DMA)",
    "conntable": "connection table",
    "firewall": "firewall on the directors",
    "aa": "A/A (noise floor)",
}


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def verdict_table(v: dict[str, dict]) -> str:
    """The verdicts as a markdown table, intervals beside every effect (pure)."""
    rows = []
    for key in (*HYPOTHESES, "aa"):
        e = v[key]
        if e["verdict"] == NOT_TESTABLE:
            rows.append([WORDS[key], e["verdict"], "-", "-", "-", e["why"]])
            continue
        cap = e.get("capacity") or {}
        note = e.get("note", "")
        if e.get("agree") is False:
            share = e.get("cpu_share") or {}
            lost = e.get("unanswered") or {}
            note = (
                f"capacity and CPU cost disagree: the director got {_x(share.get('effect'))} "
                f"the CPU {_ci(share.get('ci95'))} in the variant's blocks"
            )
            if lost:
                note += (
                    f"; of the requests it forwarded, {lost['variant']:.0%} got no reply "
                    f"through it (the seed's NAT: {lost['baseline']:.0%}): under overload "
                    "the variant loses replies after spending CPU on their requests"
                    if lost["variant"] > lost["baseline"] + 0.03
                    else ""
                )
        rows.append(
            [
                WORDS[key],
                e["verdict"],
                f"{_x(e['effect'])} {_ci(e['ci95'])}",
                str(e["n"]),
                f"{_x(cap.get('effect'))} {_ci(cap.get('ci95'))}",
                note or e.get("question", ""),
            ]
        )
    return _md_table(
        [
            "hypothesis",
            "verdict",
            "effect on CPU cost [95% CI]",
            "pairs",
            "effect on capacity [95% CI]",
            "note",
        ],
        rows,
    )


def comparison_table(figures: dict) -> str:
    """Seed against measured (pure)."""

    def fig(key: str) -> tuple[str, str]:
        f = figures.get(key) or {}
        return _n(f.get("mean")), (
            f"[{_n(f['ci95'][0])}, {_n(f['ci95'][1])}]" if f.get("ci95") else "-"
        )

    rows = []
    for label, key, seed_key, note in (
        (
            "LVS-DR, inbound pps",
            "dr_in_pps",
            "dr_in_pps",
            "seed: handled without trouble (a lower bound); measured: at saturation",
        ),
        (
            "LVS-NAT, in+out pps",
            "nat_total_pps",
            "nat_total_pps",
            "at the calibrated quota, per-frame I/O",
        ),
        (
            "LVS-NAT with coalescing, in+out pps",
            "nat_coalescing_total_pps",
            "nat_coalescing_total_pps",
            "seed: sustained 4,000/4,000; measured: at saturation",
        ),
    ):
        mean, ci = fig(key)
        rows.append([label, _n(SEED[seed_key]), mean, ci, note])
    for layout in ("nat", "dr"):
        tab = figures.get(f"table_entries_{layout}") or {}
        measured = tab.get("measured_entries")
        rows.append(
            [
                f"table entries at 2,000 conn/s, fin 30 s ({layout.upper()})",
                _n(SEED["table_entries"]) if layout == "nat" else "-",
                _n(tab.get("predicted_entries")),
                f"measured {_n(measured)}" if measured else "-",
                f"steady state by Little's law: {tab.get('rate_cps', 0):,.0f} conn/s started x "
                f"{tab.get('time_in_table_s', 0):.1f} s ({tab.get('terminal_state', '?')} lasts "
                f"{tab.get('terminal_timeout_s', 0):.0f} s)"
                + (f"; {tab['invalid']}" if tab.get("invalid") else "")
                if tab.get("predicted_entries")
                else tab.get("error", "not measured"),
            ]
        )
    return _md_table(["figure", "seed (2003)", "measured", "95% CI / check", "note"], rows)


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    s = load_answer(run)
    if s is None:
        return [Section("Verdicts", "The run measured nothing.")]
    v, figures = s["verdicts"], s["figures"]
    rows = [r for r in run.measured()[-1].samples() if r.get("phase") == "rounds"]
    aa = v["aa"]
    intro = (
        f"Calibrated director quota: {s['quota_cores']:.4f} of one core; {s['rounds']} rounds "
        f"of interleaved blocks in {s['elapsed_s']:.0f} s (block order seed {s['order_seed']}). "
        f"The A/A comparison, the seed's NAT against itself, came out {_x(aa['effect'])} "
        f"{_ci(aa['ci95'])}: differences inside that band are this machine's noise."
    )

    def draw_capacity(fig) -> None:
        ax = fig.subplots()
        configs = [c for c in CONFIGS if any(r["config"] == c for r in rows)]
        for i, config in enumerate(configs):
            values = [r["answered_rps"] for r in rows if r["config"] == config and r["saturated"]]
            if not values:
                continue
            xs = [i + 0.25 * (j / max(len(values) - 1, 1) - 0.5) for j in range(len(values))]
            ax.scatter(xs, values, s=12, alpha=0.6, color=style.colour(CONFIGS[config][0]))
            mean = statistics.fmean(values)
            half = (
                float(student_t.ppf(0.975, len(values) - 1))
                * statistics.stdev(values)
                / math.sqrt(len(values))
                if len(values) > 1
                else 0.0
            )
            ax.errorbar(
                [i + 0.35], [mean], yerr=[[half], [half]], fmt="o", color="black", capsize=4
            )
        for value, label in (
            (SEED["nat_total_pps"] / 2, "seed NAT 3,000 req/s"),
            (SEED["dr_in_pps"], "seed DR 4,000 req/s"),
            (SEED["nat_coalescing_total_pps"] / 2, "seed NAT coalescing 4,000 req/s"),
        ):
            ax.axhline(value, linestyle=":", linewidth=1, color="grey")
            ax.annotate(label, (len(configs) - 0.5, value), fontsize=7, ha="right", va="bottom")
        ax.set_xticks(range(len(configs)), configs, rotation=20)
        ax.set_ylabel("requests answered per second at the quota")

    def draw_effects(fig) -> None:
        ax = fig.subplots()
        keys = [k for k in (*HYPOTHESES, "aa") if v[k].get("ci95")]
        for i, key in enumerate(keys):
            lo, hi = v[key]["ci95"]
            ax.errorbar(
                [v[key]["effect"]],
                [i],
                xerr=[[v[key]["effect"] - lo], [hi - v[key]["effect"]]],
                fmt="o",
                capsize=4,
                color="black",
            )
            cap = v[key].get("capacity")
            if cap:
                ax.errorbar(
                    [cap["effect"]],
                    [i + 0.2],
                    xerr=[[cap["effect"] - cap["ci95"][0]], [cap["ci95"][1] - cap["effect"]]],
                    fmt="s",
                    capsize=3,
                    color="grey",
                )
        ax.axvspan(1 / (1 + SMALLEST_EFFECT), 1 + SMALLEST_EFFECT, alpha=0.15, color="grey")
        ax.set_xscale("log")
        ax.set_yticks(range(len(keys)), [WORDS[k] for k in keys])
        ax.set_xlabel("variant / the seed's NAT (circles: CPU cost; squares: capacity)")

    means = {
        c: [r["answered_rps"] for r in rows if r["config"] == c and r["saturated"]] for c in CONFIGS
    }
    caps = ", ".join(f"{c} {statistics.fmean(x):,.0f}" for c, x in means.items() if x)
    return [
        Section("Seed against measured", intro + "\n\n" + comparison_table(figures)),
        Section(
            "Verdicts",
            verdict_table(v) + "\n\nA verdict is *matters* when the whole 95% interval "
            "lies beyond a 10% effect, *no effect* when it lies within +/-10%, *can't tell* "
            "otherwise. Effects are variant / the seed's NAT, measured in the same round.",
        ),
        Figure(
            "capacity-by-configuration",
            "Every block's capacity at the calibrated quota, with means and "
            "95% intervals, and the seed's figures",
            draw_capacity,
            f"Mean requests/s: {caps}.",
        ),
        Figure(
            "effects",
            "Each effect with its interval; the band is +/-10%",
            draw_effects,
            "; ".join(
                f"{WORDS[k]} {_x(v[k]['effect'])} {_ci(v[k]['ci95'])}"
                for k in (*HYPOTHESES, "aa")
                if v[k].get("ci95")
            )
            + ".",
        ),
        Section("Method", __doc__.split("\n\n", 1)[1].strip()),
    ]


EXPERIMENT = register(
    Experiment(
        name="seed",
        description="The seed post's question: NIC, IRQ, LVS type, bus or connection table, "
        "measured with intervals.",
        params=Params,
        run_point=run_point,
        report=report,
        summarize=summarize,
        timeout_s=1200,
    )
)
