"""The demo behind ``lvs-testbed demo`` / ``make demo``: each layout up, checked, torn down.

For DR and NAT in turn: the reachability matrix against the plan; HTTP requests from every
client to the VIP with the real server that answered each; ``ipvsadm -L -n --stats`` from the
director, whose counters show that DR replies bypass the director (OutPkts 0) and NAT replies
pass through it; in DR, a TCP iperf3 run through the firewall over shaped links.
"""

from __future__ import annotations

import re
from collections import Counter

from rich.console import Console
from rich.table import Table

from testbed.net.network import Testbed
from testbed.net.report import reach_table
from testbed.topo.plan import LayoutParams
from testbed.traffic.iperf import iperf_between

SHAPED_SHARE_MIN = 0.8  # a shaped TCP run should get at least this share of the rate
REQUESTS_PER_CLIENT = 6


def _http_round(tb: Testbed, console: Console) -> tuple[bool, Counter]:
    served: Counter = Counter()
    table = Table(title=f"HTTP GET http://{tb.plan.vip}/ from each client")
    table.add_column("client")
    table.add_column("answered by, in order")
    for client in tb.plan.clients:
        names = []
        for _ in range(REQUESTS_PER_CLIENT):
            body = tb.net[client.name].cmd(f"curl -s -m 3 http://{tb.plan.vip}/").strip()
            names.append(body.split()[0] if body else "FAILED")
        served.update(names)
        table.add_row(client.name, " ".join(names))
    console.print(table)
    ok = "FAILED" not in served and len(served) == len(tb.plan.realservers)
    return ok, served


def _out_packets(stats_text: str) -> tuple[int, int]:
    """(InPkts, OutPkts) of the tcp :80 service line of `ipvsadm -L -n --stats --exact`."""
    for line in stats_text.splitlines():
        m = re.match(r"TCP\s+\S+:80\s+(\d+)\s+(\d+)\s+(\d+)", line)
        if m:
            return int(m.group(2)), int(m.group(3))
    return 0, 0


def run_demo(console: Console, n_rs: int = 3, shaped_mbit: float = 10.0) -> bool:
    summary = Table(title="demo summary")
    for col in (
        "layout",
        "reachability",
        "HTTP through the VIP",
        "replies",
        "shaped iperf3 through the firewall",
    ):
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
            http_ok, served = _http_round(tb, console)
            d1 = tb.net["d1"]
            console.print("d1$ ipvsadm -L -n --stats --exact")
            stats_text = d1.cmd("ipvsadm -L -n --stats --exact")
            console.print(stats_text, highlight=False, markup=False)
            in_pkts, out_pkts = _out_packets(stats_text)
            if layout == "dr":
                replies_ok = in_pkts > 0 and out_pkts == 0
                replies = f"bypass d1 (InPkts {in_pkts}, OutPkts {out_pkts})"
            else:
                replies_ok = in_pkts > 0 and out_pkts > 0
                replies = f"through d1 (InPkts {in_pkts}, OutPkts {out_pkts})"
            console.print(f"replies {replies}")
            iperf_text, iperf_ok = "-", True
            if layout == "dr":
                c1, rs1 = tb.net["c1"], tb.net["rs1"]
                res = iperf_between(c1, rs1, c1.IP(), duration_s=3)
                if "error" in res:
                    iperf_text, iperf_ok = f"[red]{res['error']}[/]", False
                else:
                    got = res["received_bps"] / 1e6
                    iperf_ok = SHAPED_SHARE_MIN * shaped_mbit <= got <= shaped_mbit * 1.05
                    iperf_text = (
                        f"rs1 -> fw -> c1: {got:.2f} Mbit/s TCP over links shaped to "
                        f"{shaped_mbit:g} Mbit/s ({got / shaped_mbit:.0%})"
                    )
                    iperf_text = iperf_text if iperf_ok else f"[red]{iperf_text}[/]"
                console.print(iperf_text)
            layout_ok = reach_ok and http_ok and replies_ok and iperf_ok
            all_ok &= layout_ok
            summary.add_row(
                layout,
                "[green]as designed[/]" if reach_ok else "[red]differs[/]",
                ", ".join(f"{k} {v}" for k, v in sorted(served.items())),
                replies if replies_ok else f"[red]{replies}[/]",
                iperf_text,
            )
    console.print(summary)
    return all_ok
