"""Render a run directory into ``report/``: figures (PNG and SVG) and ``report.md``.

For: the separate, re-runnable plotting step (``lvs-testbed report RUN_DIR``). It loads the
run, calls the experiment's report hook, which returns `Figure` and `Section` items, draws and
saves each figure in the shared style, and writes a markdown report: what was run, the
findings (each figure with the finding text the experiment supplies), every point in a table
with invalid and failed points marked, and the environment. The report directory is rebuilt
from scratch each time and nothing in it depends on when it was rendered, so rendering twice
gives the same files.

Not for: measuring, or deciding what a figure shows (the experiment's report hook does).
Errors in the hook are raised as `ReportError`, never swallowed. `Figure` and `Section` are
importable without matplotlib (it loads when the first figure is drawn), so experiment modules
can import them at the top without slowing ``experiment list`` or each point's process.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.harness.framework import Scalar, format_value
from testbed.harness.results import (
    REPORT_DIR,
    STATUS_FAILED,
    STATUS_OK,
    SUMMARY_FILE,
    PointRecord,
    RunData,
    load_run,
    read_json,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

REPORT_FILE = "report.md"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class Figure:
    """A figure of a report: ``draw`` gets an empty figure in the shared style (call
    ``fig.subplots()`` and plot, e.g. with `style.plot_series`); ``name`` is the file stem;
    ``finding`` is what the figure shows, in a sentence or two with numbers."""

    name: str
    title: str
    draw: Callable[[MplFigure], None]
    finding: str = ""


@dataclass(frozen=True)
class Section:
    """A block of markdown text in a report (method notes, a table the hook made)."""

    title: str
    text: str


class ReportError(RuntimeError):
    """The report could not be made; the message says which part failed."""


# ---------------------------------------------------------------------------------------------
# Markdown helpers


def _fmt(value: Scalar) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        rounded = float(f"{value:.4g}")  # 4 significant digits, so 999.9999 and 1000.0 agree
        return f"{rounded:,.0f}" if abs(rounded) >= 1000 else f"{rounded:.4g}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _status(point: PointRecord) -> str:
    if point.status == STATUS_OK and point.valid:
        return "ok"
    if point.status == STATUS_OK:
        return "**invalid**: " + "; ".join(point.invalid_reasons)
    if point.status == STATUS_FAILED:
        return f"**failed**: {point.error}"
    return point.status


# ---------------------------------------------------------------------------------------------
# Sections of report.md


def _header(run: RunData) -> list[str]:
    spec = run.spec
    measured = run.measured()
    invalid = sum(not p.valid for p in measured)
    failed = sum(p.status == STATUS_FAILED for p in run.points)
    pending = len(run.points) - len(measured) - failed
    return [
        f"# {run.experiment.name}: {run.experiment.description}",
        "",
        f"Run `{run.run_id}`, created {spec.get('created_at', '?')}: {len(run.points)} points, "
        f"{len(measured)} measured ({invalid} invalid), {failed} failed, {pending} not run.",
        "",
        f"Made by: `{spec.get('command', '?')}`",
        "",
    ]


def _parameters(run: RunData) -> list[str]:
    given = run.spec["values"]
    rows = []
    for spec in run.experiment.param_specs():
        values = given.get(spec.name)
        shown = (
            ", ".join(format_value(v) for v in values)
            if values
            else f"{format_value(spec.default)} (default)"
        )
        rows.append([f"`{spec.name}`", shown, spec.help])
    return ["## Parameters", "", *_table(["parameter", "value(s)", "meaning"], rows), ""]


def _points(run: RunData) -> list[str]:
    swept = run.swept
    figures: list[str] = []
    for p in run.points:
        figures += [k for k in p.summary if k not in figures]
    rows = [
        [
            p.point_id,
            *(format_value(p.param_values[s]) for s in swept),
            str(p.repeat),
            _status(p),
            *(_fmt(p.summary.get(k)) for k in figures),
        ]
        for p in run.points
    ]
    lines = ["## Points", ""]
    if any(p.measured and not p.valid for p in run.points):
        lines += [
            "Invalid points measured the emulator rather than the system under test (the "
            "fidelity check's reasons are given); plots draw them as grey crosses and "
            "leave them out of the curves.",
            "",
        ]
    return [*lines, *_table(["point", *swept, "repeat", "status", *figures], rows), ""]


def _environment(env: dict[str, Any]) -> list[str]:
    if not env:
        return ["## Environment", "", "No env.json in this run.", ""]
    packages = ", ".join(f"{k} {v or 'missing'}" for k, v in env.get("packages", {}).items())
    revision = env.get("git_revision") or "not a git checkout"
    if env.get("git_dirty"):
        revision += " (with uncommitted changes)"
    doctor = env.get("doctor", {})
    missing = sorted(k for k, v in doctor.items() if isinstance(v, dict) and not v.get("ok"))
    rows = [
        ["kernel", f"{env.get('kernel')} ({env.get('machine')})"],
        [
            "CPUs",
            f"{env.get('cpus_usable')} usable of {env.get('cpu_count')}: {env.get('cpu_model')}",
        ],
        ["memory", f"{_fmt(env.get('mem_total_kib'))} KiB"],
        ["Python", f"{env.get('python')} ({env.get('python_executable')})"],
        ["packages", packages],
        ["iperf3", str(env.get("iperf3_program"))],
        ["testbed", f"{env.get('testbed_version')}, git {revision}"],
        ["not available", ", ".join(missing) or "nothing the doctor checks is missing"],
    ]
    return ["## Environment", "", *_table(["fact", "value"], rows), ""]


def _attempts(run: RunData, summary: dict[str, Any]) -> list[str]:
    attempts = summary.get("attempts", [])
    if len(attempts) < 2:
        return []
    rows = [
        [
            str(a.get("started_at")),
            str(a.get("finished_at")),
            str(a.get("points_run")),
            str(a.get("outcome")),
            str(a.get("kernel")),
            str(a.get("git_revision"))[:12],
        ]
        for a in attempts
    ]
    return [
        "## Attempts",
        "",
        "The run was resumed; each attempt ran the points still missing.",
        "",
        *_table(["started", "finished", "points run", "outcome", "kernel", "git"], rows),
        "",
    ]


# ---------------------------------------------------------------------------------------------


def _items(run: RunData) -> list[Figure | Section]:
    hook = run.experiment.report
    if hook is None:
        return []
    try:
        items = list(hook(run))
    except Exception as exc:
        raise ReportError(
            f"the report hook of {run.experiment.name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    names = set()
    for item in items:
        if not isinstance(item, Figure | Section):
            raise ReportError(
                f"the report hook of {run.experiment.name} returned "
                f"{type(item).__name__}, not a Figure or Section"
            )
        if isinstance(item, Figure):
            if not _NAME_RE.match(item.name) or item.name in names:
                raise ReportError(
                    f"figure name {item.name!r} must be unique and use a-z, 0-9, '-' and '_'"
                )
            names.add(item.name)
    return items


def _render_item(item: Figure | Section, out_dir: Path) -> list[str]:
    if isinstance(item, Section):
        return [f"## {item.title}", "", item.text.strip(), ""]
    from testbed.report import style  # matplotlib: only when there is something to draw

    with style.context():
        fig = style.new_figure()
        try:
            item.draw(fig)
        except Exception as exc:
            raise ReportError(
                f"drawing figure {item.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        fig.suptitle(item.title)
        style.save(fig, out_dir / item.name)
    lines = [
        f"## {item.title}",
        "",
        f"![{item.title}]({item.name}.png)",
        "",
        f"Vector version: [{item.name}.svg]({item.name}.svg)",
        "",
    ]
    if item.finding:
        lines += [item.finding.strip(), ""]
    return lines


def render_run(run_dir: Path) -> Path:
    """Render ``run_dir`` into ``run_dir/report/``; the path of report.md."""
    run = load_run(run_dir)
    items = _items(run)
    out_dir = run_dir / REPORT_DIR
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir()
    summary_path = run_dir / SUMMARY_FILE
    summary = read_json(summary_path) if summary_path.exists() else {}
    lines = [*_header(run), *_parameters(run)]
    for item in items:
        lines += _render_item(item, out_dir)
    lines += [*_points(run), *_environment(run.env), *_attempts(run, summary)]
    path = out_dir / REPORT_FILE
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
