"""``lvs-testbed bench``: delivered pps of the director against kernel forwarding (the `bench`
experiment, ``experiments/bench.py``, with its table printed)."""

from __future__ import annotations

from pathlib import Path

import typer

from testbed.cli.common import RESULTS_OPTION, console


def bench(
    duration_s: int = typer.Option(5, "--duration-s", help="Seconds of traffic per variant."),
    variant: list[str] = typer.Option(
        None,
        "--variant",
        help="Only these variants (repeat): kernel, dr-frame, dr-ring, nat-frame, nat-ring.",
    ),
    results: Path = RESULTS_OPTION,
) -> None:
    """Offer 64-byte UDP above capacity through the kernel and through the director (DR and
    NAT, per-frame and batched I/O); print delivered pps and ratios to the kernel baseline."""
    from testbed.cli.experiment import run_experiment
    from testbed.harness.framework import definition_module, get_experiment
    from testbed.harness.results import load_run
    from testbed.net.network import handle_termination

    handle_termination()
    definition = definition_module(get_experiment("bench"))
    chosen = ",".join(variant) if variant else ",".join(definition.VARIANTS)
    run_dir = run_experiment(
        "bench",
        [f"variant={chosen}", f"duration_s={duration_s}"],
        None,
        results,
        None,
        None,
        True,
        True,
    )
    console.print(definition.table(load_run(run_dir)), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(bench)
