"""Rich tables for a layout's plan, its hosts' state against the plan, and its reachability
check (shared by CLI and demo)."""

from __future__ import annotations

from rich.table import Table

from testbed.net.network import ReachResult
from testbed.net.state import StateRow
from testbed.topo.plan import Plan


def plan_table(plan: Plan) -> Table:
    table = Table(
        title=f"layout {plan.layout} as designed: VIP {plan.vip}"
        + (f", inner VIP {plan.inner_vip}" if plan.inner_vip else "")
    )
    for col in ("node", "role", "interfaces", "gateway", "VIPs"):
        table.add_column(col)
    for n in plan.nodes:
        intfs = "\n".join(f"{i.name} {' '.join(i.addrs)} ({i.switch})" for i in n.intfs)
        vips = ", ".join([f"{v} on lo" for v in n.lo_vips] + [f"{a} on {i}" for a, i in n.vips])
        table.add_row(n.name, n.role, intfs, n.gateway or "-", vips or "-")
    return table


def reach_table(results: list[ReachResult]) -> Table:
    table = Table(title="reachability (ping) against the plan")
    for col in ("from", "to", "expected", "observed", "", "why"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.reach.src,
            f"{r.reach.dst} {r.reach.dst_ip}",
            "reach" if r.reach.expect else "blocked",
            "reach" if r.observed else "blocked",
            "[green]ok[/]" if r.ok else "[bold red]WRONG[/]",
            r.reach.why,
        )
    return table


def state_table(rows: list[StateRow]) -> Table:
    """What the hosts hold now beside the plan; rows that differ are marked."""
    table = Table(title="state: what the hosts hold now, against the plan")
    for col in ("node", "what", "plan", "now", ""):
        table.add_column(col)
    last = None
    for r in rows:
        table.add_row(
            r.node if r.node != last else "",
            r.what,
            r.planned,
            r.now,
            "[green]as planned[/]" if r.ok else "[bold yellow]differs[/]",
        )
        last = r.node
    return table
