"""``lvs-testbed reproduce``: the seed post's question answered end to end, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from testbed.cli.common import RESULTS_OPTION, console


def reproduce(
    quick: bool = typer.Option(
        False,
        "--quick",
        help="The short run (about 3 minutes; CI's): fewer rounds, so more "
        "verdicts may come out can't tell; no steady-state table run.",
    ),
    budget_s: float = typer.Option(
        None,
        "--budget-s",
        min=60,
        max=7200,
        help="Time budget of the whole run, s (default: 560; 160 with --quick). More time, "
        "narrower intervals.",
    ),
    results: Path = RESULTS_OPTION,
) -> None:
    """Bring up the DR, NAT and one-NIC NAT layouts side by side, calibrate the directors' CPU
    quota so NAT saturates near the seed's 6,000 pps, then measure interleaved blocks of every
    variant (one NIC, coalescing, DR, an empty table, NAT against itself) until each comparison
    has its answer; write a report with the seed's figures beside the measured ones and a
    verdict on each hypothesis (NIC, IRQ, LVS type, bus, connection table, firewall), each with
    its 95% interval. The verdicts are also in summary.json (`verdicts`)."""
    from testbed.cli.experiment import run_experiment
    from testbed.net.network import handle_termination

    handle_termination()
    args = ["quick=true"] if quick else []
    if budget_s is not None:
        args.append(f"budget_s={budget_s:g}")
    run_dir = run_experiment("seed", args, None, results, None, None, True, True)
    report = (run_dir / "report" / "report.md").read_text()
    keep, out = False, []
    for line in report.splitlines():
        if line.startswith("## "):
            keep = line[3:] in ("Seed against measured", "Verdicts")
        if keep:
            out.append(line)
    console.print("\n".join(out), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(reproduce)
