"""``lvs-testbed reproduce``: the seed post's scenario end to end, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from testbed.cli.common import console


def reproduce(
    quick: bool = typer.Option(
        False, "--quick", help="Shorter trials, one round (about 3 minutes; the CI run)."
    ),
    rounds: int = typer.Option(
        None,
        "--rounds",
        min=1,
        max=10,
        help="Run every step this many times, round after round; the verdicts "
        "weigh the spread between rounds (default: 2; 1 with --quick).",
    ),
    results: Path = typer.Option(
        None,
        "--results",
        file_okay=False,
        help="Results root (default: $LVS_TESTBED_RESULTS or ./results).",
    ),
) -> None:
    """Calibrate the director's CPU quota so NAT saturates near the seed's 6,000 pps, then at
    that quota measure DR, NAT with two and one NICs, NAT with coalescing, and the connection
    table; write a report with the seed's figures beside the measured ones and a verdict on
    each hypothesis (NIC, IRQ, LVS type, bus, connection table), weighed against how far
    repeated measurements of one configuration came apart."""
    from testbed.cli.experiment import run_experiment
    from testbed.harness.framework import definition_module, get_experiment
    from testbed.net.network import handle_termination

    handle_termination()
    seed = definition_module(get_experiment("seed"))
    repeat = rounds if rounds is not None else seed.default_rounds(quick)
    run_dir = run_experiment(
        "seed", seed.sweep_args(quick), repeat, results, None, None, True, True
    )
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
