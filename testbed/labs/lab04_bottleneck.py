"""Lab 4, hunting the bottleneck: the seed's question answered with two small sweeps.

No layout of its own: the student runs the ``cpu-quota`` and ``coalescing`` experiments
(each point builds a fresh layout), reads the reports, and writes
``labs/04-bottleneck/answers.md`` from the template beside it. The check reads the results
root and the answers file; the evaluation of a run's summary.json and of the answers' text is
pure, the file reading is kept apart.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from testbed.labs.model import TEMPLATE_FILE, CheckResult, Checks, Lab, LabContext, LabError
from testbed.measure.analysis import linear_fit

SWEEPS: dict[str, tuple[str, ...]] = {
    "cpu-quota": ("kind=nat", "quota_cores=0.05,0.1,0.2", "duration_s=1"),
    "coalescing": ("batch=1,64", "duration_s=1"),
}
"""The sweeps the handout asks for (its commands are built from these)."""
QUOTA_KIND = "nat"
REQUIRED_QUOTAS = (0.05, 0.1, 0.2)
REQUIRED_BATCHES = (1, 64)
MIN_R2 = 0.9
"""Capacity proportional to the quota gives R² near 1; below this the runs were too noisy
(another load on the machine, invalid points) to support a conclusion."""
SWEEP_TIMEOUT_S = 1200
LIMITING_HEADING = "limiting factor"
CPU_WORDS = re.compile(r"\bcpu\b|\bquota|per[- ]packet|\bcycles?\b|\bprocessing\b", re.IGNORECASE)
OTHER_FACTORS = {
    "the NIC": re.compile(r"\bnics?\b|\bcard\b", re.IGNORECASE),
    "IRQs": re.compile(r"\birqs?\b|\binterrupts?\b", re.IGNORECASE),
    "the bus": re.compile(r"\bbus\b|\bdma\b", re.IGNORECASE),
    "the connection table": re.compile(r"\btable\b|\bhash\b", re.IGNORECASE),
    "the link": re.compile(r"\bbandwidth\b|\blink\b", re.IGNORECASE),
}
REFERENCE_ANSWERS = """# Lab 4: answers

## Limiting factor
The director's CPU: every packet costs it CPU time, so its capacity is its CPU quota divided
by the CPU time per packet. Capacity grew in proportion to the quota.

## Evidence
The cpu-quota fit is a straight line through the origin with R² near 1; batching (batch 64
against 1) raised the capacity at the same quota because it cuts the CPU spent per packet.

## The seed's hypotheses
NIC and bus: not what limited here (the links were not shaped). IRQ: per-frame wake-ups
are a part of the per-packet CPU cost, which batching reduces. LVS type: NAT handles both
directions, so it spends about twice the CPU per request of DR. Connection table: not tested
by these two sweeps.
"""


# -- evaluation of one run's summary.json (pure) --------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    ok: bool
    detail: str
    missing: list[float] = field(default_factory=list)  # wanted values the run did not measure
    invalid: list[float] = field(default_factory=list)  # measured, but every point invalid


def _valid_points(summary: dict) -> list[dict]:
    return [p for p in summary.get("points", []) if p.get("status") == "ok" and p.get("valid")]


def _missing_and_invalid(
    summary: dict, param: str, wanted: tuple[float, ...], kind: str | None = None
) -> tuple[list[float], list[float]]:
    """Of the ``wanted`` values of ``param``: those the run has no point at (the sweep was run
    with other values) and those whose points are all invalid (the emulator was the limit)."""
    points = [
        p
        for p in summary.get("points", [])
        if param in p.get("params", {}) and (kind is None or p["params"].get("kind") == kind)
    ]
    measured = [float(p["params"][param]) for p in points]
    valid = [float(p["params"][param]) for p in points if p in _valid_points(summary)]
    missing = [w for w in wanted if not _has(measured, w)]
    invalid = [w for w in wanted if _has(measured, w) and not _has(valid, w)]
    return missing, invalid


def _points_detail(what: str, missing: list[float], invalid: list[float]) -> str:
    """``no point at nat quota 0.05, 0.1; only invalid points at nat quota 0.2``."""
    parts = []
    if missing:
        parts.append(f"no point at {what} {', '.join(f'{v:g}' for v in missing)}")
    if invalid:
        parts.append(f"only invalid points at {what} {', '.join(f'{v:g}' for v in invalid)}")
    return "; ".join(parts)


def _has(values: list[float], wanted: float) -> bool:
    return any(math.isclose(v, wanted, rel_tol=1e-9) for v in values)


def quota_capacities(summary: dict, kind: str = QUOTA_KIND) -> list[tuple[float, float]]:
    """(quota, capacity) of every valid point of ``kind`` in a cpu-quota run."""
    return [
        (float(p["params"]["quota_cores"]), float(p["summary"]["capacity_pps"]))
        for p in _valid_points(summary)
        if p["params"].get("kind") == kind and p["summary"].get("capacity_pps") is not None
    ]


def evaluate_quota_points(summary: dict) -> Evaluation:
    missing, invalid = _missing_and_invalid(summary, "quota_cores", REQUIRED_QUOTAS, QUOTA_KIND)
    if missing or invalid:
        return Evaluation(
            False, _points_detail(f"{QUOTA_KIND} quota", missing, invalid), missing, invalid
        )
    quotas = [q for q, _ in quota_capacities(summary)]
    return Evaluation(
        True,
        f"valid {QUOTA_KIND} points at quotas {', '.join(f'{q:g}' for q in sorted(set(quotas)))}",
    )


def evaluate_quota_fit(summary: dict) -> Evaluation:
    points = quota_capacities(summary)
    if len({q for q, _ in points}) < 2:
        return Evaluation(False, "too few valid points for a fit")
    fit = linear_fit([q for q, _ in points], [c for _, c in points])
    return Evaluation(
        fit.r2 >= MIN_R2,
        f"slope {fit.slope:,.0f} requests/s per core, intercept "
        f"{fit.intercept:,.0f} requests/s, R² {fit.r2:.3f} "
        f"(at least {MIN_R2} wanted)",
    )


def evaluate_batches(summary: dict) -> Evaluation:
    missing, invalid = _missing_and_invalid(summary, "batch", REQUIRED_BATCHES)
    if missing or invalid:
        return Evaluation(False, _points_detail("batch", missing, invalid), missing, invalid)
    caps = {}
    for p in _valid_points(summary):
        caps.setdefault(int(p["params"]["batch"]), []).append(
            float(p["summary"].get("capacity_pps") or 0)
        )
    shown = ", ".join(f"batch {b}: {max(caps[b]):,.0f} requests/s" for b in REQUIRED_BATCHES)
    return Evaluation(True, shown)


def limiting_factor_text(answers: str) -> str:
    """The student's words under the "Limiting factor" heading (the whole file if there is no
    such heading), without HTML comments."""
    text = re.sub(r"<!--.*?-->", "", answers, flags=re.DOTALL)
    lines = text.splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.lstrip().startswith("#") and LIMITING_HEADING in line.lower()
        ),
        None,
    )
    if start is None:
        return text.strip()
    section = []
    for line in lines[start + 1 :]:
        if line.lstrip().startswith("#"):
            break
        section.append(line)
    return "\n".join(section).strip()


def evaluate_answers(answers: str) -> Evaluation:
    said = limiting_factor_text(answers)
    if not said:
        return Evaluation(False, "the Limiting factor section is empty")
    if CPU_WORDS.search(said):
        return Evaluation(True, f"names the director's CPU: {_excerpt(said)}")
    named = [name for name, pattern in OTHER_FACTORS.items() if pattern.search(said)]
    return Evaluation(
        False,
        f"names {', '.join(named) if named else 'no factor the check knows'}: {_excerpt(said)}",
    )


def _excerpt(text: str, limit: int = 80) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


# -- reading results (I/O) -------------------------------------------------------------------------
def run_summaries(results_root: Path, experiment: str) -> list[tuple[Path, dict]]:
    """(run dir, summary.json) of every readable run of ``experiment``, newest first (run ids
    start with their UTC start time)."""
    found = []
    for path in sorted((results_root / experiment).glob("*/summary.json"), reverse=True):
        try:
            found.append((path.parent, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    return found


def _newest_passing(
    runs: list[tuple[Path, dict]], evaluate
) -> tuple[Path, dict, Evaluation] | None:
    """The newest run that passes ``evaluate``, else the newest run with its failure."""
    for run_dir, summary in runs:
        ev = evaluate(summary)
        if ev.ok:
            return run_dir, summary, ev
    if runs:
        return runs[0][0], runs[0][1], evaluate(runs[0][1])
    return None


def sweep_command(experiment: str) -> str:
    return " ".join(
        ["sudo lvs-testbed experiment run", experiment, *(f"-p {p}" for p in SWEEPS[experiment])]
    )


def answers_path(ctx: LabContext) -> Path:
    return ctx.answers_file(LAB.name)


def _sweep_hint(experiment: str, ev: Evaluation) -> str:
    """What to run when a sweep's run lacks points: the values it left out are a different
    command, invalid points a quieter machine."""
    if ev.missing:
        return (
            f"your newest {experiment} run was made with other values: run the handout's "
            f"sweep, `{sweep_command(experiment)}`"
        )
    return (
        "points marked invalid were limited by the emulator, not the director: run the sweep "
        f"again with nothing else busy on the machine (`{sweep_command(experiment)}`)"
    )


def prepare(ctx: LabContext) -> None:
    """Nothing to put in place: each experiment point builds its own layout."""


def solve(ctx: LabContext) -> None:
    """Run both sweeps into the results root and write the reference answers."""
    for experiment, params in SWEEPS.items():
        argv = [
            sys.executable,
            "-m",
            "testbed",
            "experiment",
            "run",
            experiment,
            "--results",
            str(ctx.results_root),
            "--no-progress",
        ]
        for p in params:
            argv += ["--param", p]
        res = subprocess.run(
            argv, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S, check=False
        )
        if res.returncode != 0:
            raise LabError(
                f"{experiment} sweep failed ({res.returncode}): {(res.stdout + res.stderr)[-800:]}"
            )
    path = answers_path(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(REFERENCE_ANSWERS)


QUOTA_CHECK = "cpu-quota sweep measured"
FIT_CHECK = f"capacity linear in the quota (R² >= {MIN_R2})"
BATCH_CHECK = "coalescing sweep measured"
ANSWERS_CHECK = "the answers name the limiting factor"


def check(ctx: LabContext) -> list[CheckResult]:
    checks = Checks()
    quota_run = _newest_passing(run_summaries(ctx.results_root, "cpu-quota"), evaluate_quota_points)
    if quota_run is None:
        quota = checks.add(
            CheckResult(
                QUOTA_CHECK,
                False,
                f"no cpu-quota run under {ctx.results_root}",
                f"`{sweep_command('cpu-quota')}`",
            )
        )
    else:
        run_dir, _summary, ev = quota_run
        quota = checks.add(
            CheckResult(
                QUOTA_CHECK, ev.ok, f"{run_dir.name}: {ev.detail}", _sweep_hint("cpu-quota", ev)
            )
        )
    checks.after([quota], FIT_CHECK, lambda: _check_fit(quota_run[1]))
    batch_run = _newest_passing(run_summaries(ctx.results_root, "coalescing"), evaluate_batches)
    if batch_run is None:
        checks.add(
            CheckResult(
                BATCH_CHECK,
                False,
                f"no coalescing run under {ctx.results_root}",
                f"`{sweep_command('coalescing')}`",
            )
        )
    else:
        run_dir, _summary, ev = batch_run
        checks.add(
            CheckResult(
                BATCH_CHECK, ev.ok, f"{run_dir.name}: {ev.detail}", _sweep_hint("coalescing", ev)
            )
        )
    checks.add(_check_answers(ctx))
    return checks.results


def _check_fit(summary: dict) -> CheckResult:
    fit = evaluate_quota_fit(summary)
    return CheckResult(
        FIT_CHECK,
        fit.ok,
        fit.detail,
        "a poor fit means noisy runs: close other programs, then add --repeat 2",
    )


def _check_answers(ctx: LabContext) -> CheckResult:
    path = answers_path(ctx)
    if not path.exists():
        return CheckResult(
            ANSWERS_CHECK,
            False,
            f"no {path}",
            f"`cp {path.with_name(TEMPLATE_FILE)} {path}`, then fill it in",
        )
    ev = evaluate_answers(path.read_text())
    return CheckResult(
        ANSWERS_CHECK,
        ev.ok,
        ev.detail,
        "what did capacity do when only the CPU quota changed? And when batching cut the "
        "work per packet?",
    )


def figures(ctx: LabContext) -> dict[str, str]:
    """The capacities and the fit of the newest runs the check used (questions 2 to 4)."""
    out = {}
    chosen = _newest_passing(run_summaries(ctx.results_root, "cpu-quota"), evaluate_quota_points)
    if chosen is not None:
        run_dir, summary, _ev = chosen
        points = sorted(quota_capacities(summary))
        out[f"cpu-quota run {run_dir.name}"] = "\n".join(
            [f"quota {q:g}: {c:,.0f} requests/s" for q, c in points]
            + [evaluate_quota_fit(summary).detail]
        )
    chosen = _newest_passing(run_summaries(ctx.results_root, "coalescing"), evaluate_batches)
    if chosen is not None:
        run_dir, _summary, ev = chosen
        out[f"coalescing run {run_dir.name}"] = ev.detail
    return out


LAB = Lab(
    number=4,
    slug="bottleneck",
    title="Hunting the bottleneck",
    summary="the seed's question by experiment: cpu-quota and coalescing sweeps, a written answer",
    layout=None,
    params=None,
    prepare=prepare,
    solve=solve,
    check=check,
    minutes="60",
    prerequisites="labs 1 and 2; reading a plot; sudo for the experiments",
    outcomes=(
        "design a one-knob experiment and read its report (capacity, fit, validity)",
        "tell a CPU-bound director from other limits with a quota sweep",
        "weigh the seed post's hypotheses (NIC, IRQs, LVS type, bus, table) against data",
    ),
    figures=figures,
)
