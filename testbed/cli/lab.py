"""``lvs-testbed lab list|start|check|reset``: the classroom labs.

Thin: the labs are `testbed.labs` (registry, steps, checks, hand-in). ``start`` builds a
lab's layout with the same code as ``up`` (`testbed.cli.net.run_layout`), puts the starting
state on it and opens the Mininet CLI, where ``check`` runs the lab's check in-process;
``check`` and ``reset`` reach the running lab from another terminal through the run registry
(`RunHosts`). ``check --save`` writes the hand-in report (`testbed.labs.handin`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from testbed.cli.common import (
    CAPTURE_DIR_OPTION,
    CAPTURE_OPTION,
    SCRIPT_OPTION,
    VERBOSE_OPTION,
    console,
    fail,
    require_root,
)

if TYPE_CHECKING:
    from testbed.labs import Lab, LabContext
    from testbed.net.network import Testbed

lab_app = typer.Typer(
    help="Classroom labs: list them, start one, check it, start it over.", no_args_is_help=True
)

NUMBER_HELP = "Lab number (see `lvs-testbed lab list`)."
EXIT_NOT_YET = 1


def _lab(number: int) -> Lab:
    from testbed.labs import LabError, get_lab

    try:
        return get_lab(number)
    except LabError as exc:
        fail(str(exc), 2)


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is inside it (shorter for handouts)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@lab_app.command("list")
def list_labs(
    teacher: bool = typer.Option(
        False, "--teacher", help="Also show where each lab's teacher notes are."
    ),
) -> None:
    """Every lab: number, title, time, prerequisites, what you will learn, the layout it
    builds and its handout."""
    from testbed.labs import LABS

    table = Table(title="labs", show_lines=True)
    columns = ["no.", "title", "time", "before it", "you will learn to", "layout", "handout"]
    if teacher:
        columns += ["practises", "teacher notes"]
    for col in columns:
        table.add_column(col, overflow="fold")
    for lab in LABS.values():
        row = [
            str(lab.number),
            lab.title,
            f"{lab.minutes} min",
            lab.prerequisites,
            "\n".join(f"- {o}" for o in lab.outcomes),
            lab.up_command(),
            _shown(lab.handout),
        ]
        if teacher:
            row += [lab.summary, _shown(lab.teacher_notes)]
        table.add_row(*row)
    console.print(table)
    console.print(
        "Start one with `sudo lvs-testbed lab start N`; check it with `check` in its CLI or "
        "`sudo lvs-testbed lab check N` in another terminal; hand it in with "
        "`sudo lvs-testbed lab check N --save`.",
        highlight=False,
    )


@lab_app.command("start")
def start(
    number: int = typer.Argument(..., help=NUMBER_HELP),
    script: Path = SCRIPT_OPTION,
    verbose: bool = VERBOSE_OPTION,
    capture: bool = CAPTURE_OPTION,
    capture_dir: Path = CAPTURE_DIR_OPTION,
    director: str = typer.Option(
        None,
        "--director",
        help="ipvs: the lab on the kernel's IPVS, driven by the real ipvsadm (needs ip_vs: "
        "the Vagrant VM, or `sudo lvs-testbed vm run -- lvs-testbed lab start N --director "
        "ipvs --script FILE`); python: the userspace director (the default).",
    ),
) -> None:
    """Build the lab's layout, put its starting state on it and open the Mininet CLI
    (type `check` there to run the lab's check). Everything is removed on exit."""
    from testbed.cli.net import run_layout
    from testbed.labs import LabContext
    from testbed.net.hosts import TestbedHosts

    lab = _lab(number)
    if not lab.needs_layout:
        console.print(
            f"Lab {lab.number}: {lab.title}\nHandout: {_shown(lab.handout)}\n"
            "This lab needs no layout of its own: each experiment point builds one. Follow "
            f"the handout, then `lvs-testbed lab check {lab.number}` (add --save to hand it "
            "in).",
            highlight=False,
        )
        return
    params = _with_director(lab, director)
    require_root(f"`lab start {number}`")

    def on_ready(testbed: Testbed) -> None:
        lab.prepare(LabContext(hosts=TestbedHosts(testbed), plan=testbed.plan))
        console.print(
            f"[bold]Lab {lab.number}: {lab.title}[/] (about {lab.minutes} min)\n"
            f"Handout: {_shown(lab.handout)}\n"
            f"Answers: copy {_shown(lab.answers_template)} to answers.md beside it\n"
            "Type `check` to check your work, `check --save` to hand it in (or "
            f"`sudo lvs-testbed lab check {lab.number}` in another terminal). Handout lines "
            "may be pasted as they are, prompt included.",
            highlight=False,
        )

    def open_cli(testbed: Testbed, **kwargs) -> None:
        from testbed.labs.console import LabCLI

        LabCLI(testbed, lab, **kwargs)

    run_layout(
        lab.layout,
        params,
        False,
        script,
        verbose,
        kind=lab.run_kind,
        on_ready=on_ready,
        open_cli=open_cli,
        cli_help="Type `help` for commands, `check` for the lab's check, `reach` to test "
        "reachability, `state` for what the hosts hold now, `exit` to stop.",
        capture_root=capture_dir if capture else None,
    )


def _with_director(lab: Lab, director: str | None):
    """The lab's layout settings with ``director`` (python or ipvs) in place of its own."""
    import dataclasses

    if director is None:
        return lab.params
    if director not in ("python", "ipvs"):
        fail(f"--director takes python or ipvs, not {director!r}", 2)
    if lab.params.director not in ("python", "ipvs"):
        fail(
            f"lab {lab.number} is about the {lab.params.director} director; it has no --director", 2
        )
    return dataclasses.replace(lab.params, director=director)


def _running_lab_context(lab: Lab, run_id: str | None) -> LabContext:
    """The context of the running lab's layout (the newest live run of it, or ``run_id``)."""
    from testbed.labs import LabContext
    from testbed.net.hosts import HostsError, RunHosts
    from testbed.runtime.registry import list_runs, owner_alive

    if run_id is None:
        runs = [
            r
            for r in list_runs()
            if r.name.startswith(f"{lab.run_kind}-") and owner_alive(r) is not None
        ]
        if not runs:
            fail(
                f"lab {lab.number} is not running: start it with `sudo lvs-testbed lab start "
                f"{lab.number}` "
                "(or name a run with --run)"
            )
        run_id = max(runs, key=lambda r: r.stat().st_mtime).name
    try:
        hosts = RunHosts.live(run_id)
        plan = hosts.plan()
    except HostsError as exc:
        fail(str(exc))
    if plan.layout != lab.layout:
        fail(f"run {run_id} is a {plan.layout} layout; lab {lab.number} needs {lab.layout}")
    return LabContext(hosts=hosts, plan=plan)


@lab_app.command("check")
def check(
    number: int = typer.Argument(..., help=NUMBER_HELP),
    run: str = typer.Option(
        None, "--run", help="Run id (default: the newest running layout of this lab)."
    ),
    results: Path = typer.Option(
        None,
        "--results",
        file_okay=False,
        help="Results root for lab 4 (default: $LVS_TESTBED_RESULTS or ./results).",
    ),
    answers_dir: Path = typer.Option(
        None,
        "--answers-dir",
        file_okay=False,
        help="Folder holding the labs' folders with your answers (default: labs/).",
    ),
    save: bool = typer.Option(
        False,
        "--save",
        help="Also write the hand-in: a timestamped report of the check, your answers.md "
        "and this run's figures.",
    ),
    handin_dir: Path = typer.Option(
        None,
        "--handin-dir",
        file_okay=False,
        help="Where --save writes (default: $LVS_TESTBED_HANDIN or ./handin).",
    ),
    student: str = typer.Option(
        None, "--student", help="Your name in the report's file name (default: your user name)."
    ),
) -> None:
    """Run the lab's automatic check: each item ok, FAIL (with what was seen and a hint) or
    skip (not run until an earlier failure is fixed). Exits 0 only if every item passes."""
    import dataclasses

    from testbed.harness.runner import default_results_root
    from testbed.labs import LabContext, all_ok, format_results, handin

    lab = _lab(number)
    if lab.needs_layout:
        require_root(f"`lab check {number}`")
        ctx = _running_lab_context(lab, run)
    else:
        ctx = LabContext()
    ctx = dataclasses.replace(ctx, results_root=results or default_results_root())
    if answers_dir is not None:
        ctx = dataclasses.replace(ctx, answers_dir=answers_dir)
    outcome = lab.run_check(ctx)
    console.print(f"lab {lab.number}: {lab.title}", highlight=False)
    console.print(format_results(outcome), highlight=False, markup=False)
    if save:
        try:
            path = handin.save(lab, ctx, outcome, handin_dir, student)
        except OSError as exc:
            fail(f"could not write the hand-in: {exc} (choose a folder with --handin-dir)")
        console.print(f"hand-in written: {_shown(path)}", highlight=False)
    if not all_ok(outcome):
        raise typer.Exit(EXIT_NOT_YET)


@lab_app.command("reset")
def reset(
    number: int = typer.Argument(..., help=NUMBER_HELP),
    run: str = typer.Option(
        None, "--run", help="Run id (default: the newest running layout of this lab)."
    ),
) -> None:
    """Put the lab's starting state back on its running layout, to start over: everything the
    check reads (lab 5: the VRRP history it counts starts again)."""
    from testbed.labs import LabError
    from testbed.net.hosts import HostsError
    from testbed.runtime.control import ControlError

    lab = _lab(number)
    if not lab.needs_layout:
        console.print(
            f"lab {lab.number} has no layout to reset: your results and answers stay as they are."
        )
        return
    require_root(f"`lab reset {number}`")
    ctx = _running_lab_context(lab, run)
    try:
        lab.prepare(ctx)
    except (LabError, ControlError, HostsError) as exc:
        fail(str(exc))
    console.print(
        f"lab {lab.number}: back to the starting state (run {ctx.hosts.run_dir.name})",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
