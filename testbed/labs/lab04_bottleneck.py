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
from dataclasses import dataclass
from pathlib import Path

from testbed.labs.model import CheckResult, Lab, LabContext, LabError
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
ANSWERS_FILE = "answers.md"
TEMPLATE_FILE = "answers.template.md"
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


def _valid_points(summary: dict) -> list[dict]:
    return [p for p in summary.get("points", []) if p.get("status") == "ok" and p.get("valid")]


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
    quotas = [q for q, _ in quota_capacities(summary)]
    missing = [q for q in REQUIRED_QUOTAS if not _has(quotas, q)]
    if missing:
        return Evaluation(
            False, f"no valid {QUOTA_KIND} point at quota {', '.join(f'{q:g}' for q in missing)}"
        )
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
    batches = [
        float(p["params"]["batch"]) for p in _valid_points(summary) if "batch" in p["params"]
    ]
    missing = [b for b in REQUIRED_BATCHES if not _has(batches, b)]
    if missing:
        return Evaluation(False, f"no valid point at batch {', '.join(str(b) for b in missing)}")
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
    return ctx.answers_dir / LAB.name / ANSWERS_FILE


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


def check(ctx: LabContext) -> list[CheckResult]:
    results = []
    quota_runs = run_summaries(ctx.results_root, "cpu-quota")
    chosen = _newest_passing(quota_runs, evaluate_quota_points)
    if chosen is None:
        results.append(
            CheckResult(
                "cpu-quota sweep measured",
                False,
                f"no cpu-quota run under {ctx.results_root}",
                sweep_command("cpu-quota"),
            )
        )
        results.append(
            CheckResult(
                f"capacity linear in the quota (R² >= {MIN_R2})",
                False,
                "no run to fit",
                "run the cpu-quota sweep first",
            )
        )
    else:
        run_dir, summary, ev = chosen
        results.append(
            CheckResult(
                "cpu-quota sweep measured",
                ev.ok,
                f"{run_dir.name}: {ev.detail}",
                "points marked invalid were limited by the emulator: re-run "
                f"with nothing else busy on the machine ({sweep_command('cpu-quota')})",
            )
        )
        fit = evaluate_quota_fit(summary)
        results.append(
            CheckResult(
                f"capacity linear in the quota (R² >= {MIN_R2})",
                fit.ok,
                fit.detail,
                "a poor fit means noisy runs: close other programs, then add --repeat 2",
            )
        )
    batch_runs = run_summaries(ctx.results_root, "coalescing")
    chosen = _newest_passing(batch_runs, evaluate_batches)
    if chosen is None:
        results.append(
            CheckResult(
                "coalescing sweep measured",
                False,
                f"no coalescing run under {ctx.results_root}",
                sweep_command("coalescing"),
            )
        )
    else:
        run_dir, _summary, ev = chosen
        results.append(
            CheckResult(
                "coalescing sweep measured",
                ev.ok,
                f"{run_dir.name}: {ev.detail}",
                sweep_command("coalescing"),
            )
        )
    path = answers_path(ctx)
    if not path.exists():
        results.append(
            CheckResult(
                "the answers name the limiting factor",
                False,
                f"no {path}",
                f"cp {path.with_name(TEMPLATE_FILE)} {path}, then fill it in",
            )
        )
    else:
        ev = evaluate_answers(path.read_text())
        results.append(
            CheckResult(
                "the answers name the limiting factor",
                ev.ok,
                ev.detail,
                "what did capacity do when only the CPU quota changed? And when "
                "batching cut the work per packet?",
            )
        )
    return results


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
    extra_files=(TEMPLATE_FILE,),
)
