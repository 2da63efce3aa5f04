"""``lvs-testbed experiment list|show|run`` and ``lvs-testbed report RUN_DIR``.

Thin: parse the options, call `testbed.harness` and `testbed.report`, and turn their
errors into a message and a non-zero exit (2 for a bad request, 1 for failed points or a failed
report, 130 when interrupted).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from testbed.cli.common import CAPTURE_HELP, console, fail, require_root

experiment_app = typer.Typer(
    help="Experiments: list them, show their parameters, run sweeps.", no_args_is_help=True
)

EXIT_INTERRUPTED = 130


@experiment_app.command("list")
def list_experiments() -> None:
    """Every registered experiment with its parameters, defaults and help."""
    from testbed.harness.framework import ExperimentError, format_value, load_experiments

    try:
        experiments = load_experiments()
    except ExperimentError as exc:
        fail(str(exc), 2)
    if not experiments:
        console.print("No experiments found (none in the checkout's experiments/ folder).")
        return
    table = Table(title="experiments", show_lines=True)
    for col in ("name", "description", "parameters (default: help)"):
        table.add_column(col, overflow="fold")
    for name, exp in experiments.items():
        params = "\n".join(
            f"{s.name}={format_value(s.default)}: {s.help}" for s in exp.param_specs()
        )
        table.add_row(name, exp.description, params)
    console.print(table)


@experiment_app.command("show")
def show(name: str = typer.Argument(..., help="Experiment name (see `experiment list`).")) -> None:
    """One experiment's parameters: type, default and help."""
    from testbed.harness.framework import ExperimentError, format_value, get_experiment

    try:
        exp = get_experiment(name)
    except ExperimentError as exc:
        fail(str(exc), 2)
    console.print(f"[bold]{exp.name}[/]: {exp.description}", highlight=False)
    console.print(
        f"module {exp.module}; needs root: {'yes' if exp.needs_root else 'no'}; "
        f"timeout per point {exp.timeout_s:g} s",
        highlight=False,
    )
    table = Table(show_lines=False)
    for col in ("parameter", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    for s in exp.param_specs():
        table.add_row(s.name, s.type_text, format_value(s.default), s.help)
    console.print(table)


@experiment_app.command("run")
def run(
    name: str = typer.Argument(
        ...,
        help=(
            "Experiment name (see `experiment list`) or the path of a file defining one "
            "(experiments/NAME.py, or your copy)."
        ),
    ),
    param: list[str] = typer.Option(
        None,
        "--param",
        "-p",
        metavar="NAME=V1[,V2...]",
        help="Set a parameter; several values (comma-separated or repeated options) sweep it. "
        "Several swept parameters give every combination.",
    ),
    repeat: int = typer.Option(
        None,
        "--repeat",
        help="Run each combination this many times "
        "(default 1); repeats run as whole passes over the combinations.",
    ),
    results: Path = typer.Option(
        None,
        "--results",
        file_okay=False,
        help="Results root (default: $LVS_TESTBED_RESULTS or ./results); "
        "the run goes to <root>/<experiment>/<run-id>/.",
    ),
    resume: Path = typer.Option(
        None,
        "--resume",
        exists=True,
        file_okay=False,
        help="Finish this run directory: run only its missing, failed "
        "or interrupted points (the sweep comes from its params.json).",
    ),
    timeout_s: float = typer.Option(
        None,
        "--timeout-s",
        min=0.001,
        help="Stop and fail a point after this many seconds (default: the experiment's).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    report: bool = typer.Option(
        True,
        "--report/--no-report",
        help="Render the report when the sweep ends (`lvs-testbed report`).",
    ),
    capture: bool = typer.Option(
        False,
        "--capture",
        help=CAPTURE_HELP + " Into each point's directory (pcaps/); capturing costs CPU, so "
        "the layouts carry less while it runs.",
    ),
) -> None:
    """Run a sweep: one fresh process per point, results in a new run directory.

    Parameter values are checked before anything runs. A point that fails or times out is
    recorded and the sweep goes on; Ctrl-C stops the running point and keeps what was measured,
    and `--resume RUN_DIR` finishes the run later.
    """
    run_experiment(name, param or [], repeat, results, resume, timeout_s, progress, report, capture)


def run_experiment(
    name: str,
    param: list[str],
    repeat: int | None,
    results: Path | None,
    resume: Path | None,
    timeout_s: float | None,
    progress: bool,
    report: bool,
    capture: bool = False,
) -> Path:
    """`experiment run`'s work, shared with `reproduce`: plan or resume, run, render; exits
    non-zero (typer.Exit) on bad input, failed points or an interruption."""
    from testbed.harness.framework import (
        ExperimentError,
        SweepError,
        get_experiment,
        plan_sweep,
    )
    from testbed.harness.results import TABLE_FILE, RunDirError, load_spec
    from testbed.harness.runner import create_run, default_results_root, execute

    try:
        exp = get_experiment(name)
        if resume is not None:
            if param or repeat is not None or capture:
                raise SweepError(
                    "--resume takes the sweep from the run's params.json: "
                    "do not give --param, --repeat or --capture with it"
                )
            recorded = load_spec(resume)["experiment"]
            if recorded != exp.name:
                raise SweepError(f"{resume} is a run of {recorded!r}, not {exp.name!r}")
            sweep = None
        else:
            sweep = plan_sweep(exp, param or [], 1 if repeat is None else repeat)
    except (ExperimentError, SweepError, RunDirError) as exc:
        fail(str(exc), 2)
    if exp.needs_root:
        require_root(f"experiment {name}")
    run_dir = (
        resume
        if sweep is None
        else create_run(sweep, results or default_results_root(), capture=capture)
    )
    console.print(f"run directory: {run_dir}", highlight=False, soft_wrap=True)
    try:
        outcome = execute(run_dir, timeout_s=timeout_s, console=console, show_progress=progress)
    except (ExperimentError, RunDirError) as exc:
        fail(str(exc), 2)
    c = outcome.counts
    console.print(
        f"{c['n_points']} points: {c['n_ok']} measured ({c['n_invalid']} invalid), "
        f"{c['n_failed']} failed, {c['n_pending']} not run; {outcome.ran} run now.",
        highlight=False,
    )
    console.print(
        f"table (a row per point and repeat): {run_dir / TABLE_FILE}",
        highlight=False,
        soft_wrap=True,
    )
    if outcome.interrupted:
        console.print(
            f"interrupted: finish it with `lvs-testbed experiment run {name} --resume {run_dir}`",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if report:
        _render(run_dir)
    if c["n_failed"]:
        raise typer.Exit(1)
    return run_dir


def _render(run_dir: Path) -> None:
    from testbed.harness.framework import ExperimentError
    from testbed.harness.results import RunDirError
    from testbed.report.render import ReportError, render_run

    try:
        path = render_run(run_dir)
    except (ReportError, ExperimentError, RunDirError) as exc:
        fail(str(exc))
    console.print(f"report: {path}", highlight=False, soft_wrap=True)


def report(
    run_dir: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="A run directory (results/<experiment>/<run-id>)."
    ),
) -> None:
    """Render a run's figures (PNG and SVG) and report.md into RUN_DIR/report/ (re-runnable)."""
    _render(run_dir)


def register(app: typer.Typer) -> None:
    app.add_typer(experiment_app, name="experiment")
    app.command("report")(report)
