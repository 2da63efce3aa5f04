"""``lvs-testbed bench``: delivered pps of the director against kernel forwarding."""

from __future__ import annotations

import typer
from rich.table import Table

from testbed.cli.common import console, fail, require_root


def bench(
    duration_s: int = typer.Option(5, "--duration-s", help="Seconds of traffic per variant."),
    variant: list[str] = typer.Option(None, "--variant", help="Only these variants (repeat): "
                                      "kernel, dr-frame, dr-ring, nat-frame, nat-ring."),
) -> None:
    """Offer 64-byte UDP above capacity through the kernel and through the director (DR and
    NAT, per-frame and batched I/O); print delivered pps and ratios to the kernel baseline."""
    from testbed.bench import VARIANTS, ratios, run_bench
    from testbed.net.network import handle_termination

    require_root("`bench`")
    handle_termination()
    chosen = tuple(variant) if variant else VARIANTS
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        fail(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}", 2)
    results = run_bench(duration_s, chosen)
    table = Table(title=f"64-byte UDP payload, {duration_s} s per variant, director pinned to one core")
    for col in ("variant", "offered pps", "delivered pps", "loss", "vs kernel", "director CPU us/pkt"):
        table.add_column(col, justify="right")
    rat = ratios(results)
    for r in results:
        if r.error:
            table.add_row(r.variant, "-", "-", "-", "-", f"[red]{r.error}[/]")
            continue
        table.add_row(
            r.variant, f"{r.offered_pps:,.0f}", f"{r.delivered_pps:,.0f}", f"{r.loss_pct:.1f}%",
            f"{rat.get(f'{r.variant}/kernel', 0):.2f}",
            f"{r.director_cpu_us_per_pkt:.2f}" if r.director_cpu_us_per_pkt else "-",
        )
    console.print(table)
    for key, value in rat.items():
        if key.startswith("nat/dr"):
            console.print(f"{key}: {value:.2f}")


def register(app: typer.Typer) -> None:
    app.command()(bench)
