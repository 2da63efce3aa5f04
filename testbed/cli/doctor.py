"""``lvs-testbed doctor``: what this machine can do, with the fix for each missing item."""

from __future__ import annotations

import typer
from rich.table import Table

from testbed.cli.common import console


def doctor() -> None:
    """Check root, Mininet, OVS, bridge-utils, cgroups, qdiscs, tools and Python modules.

    Exits non-zero when a required item is missing; optional items (netem, the OVS kernel
    datapath, keepalived, capture tools) are reported but do not fail.
    """
    from testbed.doctor import all_required_ok, run_checks

    outcomes = run_checks()
    table = Table(title="lvs-testbed doctor", show_lines=False)
    for col in ("item", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for o in outcomes:
        if o.ok:
            status = "[green]ok[/]"
        elif o.check.required:
            status = "[bold red]MISSING[/]"
        else:
            status = "[yellow]missing (optional)[/]"
        table.add_row(o.check.name, status, o.detail, "" if o.ok else o.check.fix)
    console.print(table)
    if not all_required_ok(outcomes):
        console.print("[bold red]Required items are missing: see the fix column.[/]")
        raise typer.Exit(1)
    console.print("[green]Everything required is here.[/]")


def register(app: typer.Typer) -> None:
    app.command()(doctor)
