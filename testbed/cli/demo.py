"""``lvs-testbed demo``: bring up each layout, show it works, exit clean."""

from __future__ import annotations

import typer

from testbed.cli.common import console, require_root


def demo(
    rs: int = typer.Option(3, "--rs", help="Number of real servers."),
    shaped_mbit: float = typer.Option(
        10.0,
        "--shaped-mbit",
        help="Rate of the client-side links "
        "for the shaped iperf3 run through the firewall, Mbit/s.",
    ),
) -> None:
    """Bring up DR and NAT in turn: reachability matrix, a shaped iperf3 run through the
    firewall, a summary. Everything is torn down before it exits."""
    require_root("`demo`")
    from testbed.demo import run_demo
    from testbed.net.network import handle_termination

    handle_termination()
    ok = run_demo(console, n_rs=rs, shaped_mbit=shaped_mbit)
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(demo)
