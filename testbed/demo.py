"""The demo behind ``lvs-testbed demo`` / ``make demo``: each layout up, checked, torn down."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from testbed.net.network import Testbed
from testbed.net.report import reach_table
from testbed.topo.plan import LayoutParams
from testbed.traffic.iperf import iperf_between

SHAPED_SHARE_MIN = 0.8  # a shaped TCP run should get at least this share of the rate


def run_demo(console: Console, n_rs: int = 3, shaped_mbit: float = 10.0) -> bool:
    summary = Table(title="demo summary")
    for col in ("layout", "reachability", "shaped iperf3 through the firewall"):
        summary.add_column(col)
    all_ok = True
    for layout in ("dr", "nat"):
        params = LayoutParams(n_rs=n_rs, bw_outer_mbit=shaped_mbit if layout == "dr" else None)
        console.rule(f"layout {layout}")
        with Testbed(layout, params, kind=f"demo-{layout}") as tb:
            tb.wait_ready()
            results = tb.check_reachability()
            console.print(reach_table(results))
            reach_ok = all(r.ok for r in results)
            iperf_text = "-"
            if layout == "dr":
                c1, rs1 = tb.net["c1"], tb.net["rs1"]
                res = iperf_between(c1, rs1, c1.IP(), duration_s=3)
                if "error" in res:
                    iperf_text, iperf_ok = f"[red]{res['error']}[/]", False
                else:
                    got = res["received_bps"] / 1e6
                    iperf_ok = got >= SHAPED_SHARE_MIN * shaped_mbit and got <= shaped_mbit * 1.05
                    iperf_text = (f"rs1 -> fw -> c1: {got:.2f} Mbit/s TCP over links shaped to "
                                  f"{shaped_mbit:g} Mbit/s ({got / shaped_mbit:.0%})")
                    iperf_text = iperf_text if iperf_ok else f"[red]{iperf_text}[/]"
                console.print(iperf_text)
                all_ok &= iperf_ok
            all_ok &= reach_ok
            summary.add_row(layout, "[green]as designed[/]" if reach_ok else "[red]differs[/]", iperf_text)
    console.print(summary)
    return all_ok
