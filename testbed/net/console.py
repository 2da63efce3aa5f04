"""The Mininet CLI with the testbed's own commands added (``check``, ``plan``, ``failover``,
``restore``, ``vrrp``); a lab's CLI adds its check (`testbed.labs.console`).

Everything Mininet's CLI does still works (``c1 ping VIP``, ``pingall``, ``py net``, ``source``),
and hosts have ``lvs-testbed`` on their PATH, e.g. ``d1 lvs-testbed ipvsadm -L -n``.
"""

from __future__ import annotations

import sys

from mininet.cli import CLI

from testbed.net.network import Testbed
from testbed.net.report import plan_table, reach_table


class LvsCLI(CLI):
    """Mininet's CLI for a `Testbed`."""

    prompt = "lvs-testbed> "

    def __init__(self, testbed: Testbed, stdin=sys.stdin, script: str | None = None, **kwargs):
        self.testbed = testbed
        CLI.__init__(self, testbed.net, stdin=stdin, script=script, **kwargs)

    def do_check(self, _line: str) -> None:
        """Ping every pair the layout has an expectation for and compare with the plan."""
        from rich.console import Console

        Console().print(reach_table(self.testbed.check_reachability()))

    def do_failover(self, line: str) -> None:
        """failover [kill|link|shutdown]: fail the master director (default: kill) while a
        probe runs through the VIP; report the takeover time and the requests lost."""
        from testbed.net.failover import HOWS, measure
        from testbed.net.hosts import TestbedHosts

        how = line.strip() or "kill"
        if how not in HOWS or not self.testbed.plan.has_pair:
            print(f"usage: failover [{'|'.join(HOWS)}] (NAT layouts with failover on)")
            return
        master = self.testbed.vip_holder() or "d1"
        backup = "d2" if master == "d1" else "d1"
        result = measure(TestbedHosts(self.testbed), self.testbed.plan, how, master, backup)
        self.last_failure = (how, master)
        print(result.text())

    def do_restore(self, _line: str) -> None:
        """restore: undo the last `failover` (restart daemons or bring links up)."""
        last = getattr(self, "last_failure", None)
        if last is None:
            print("nothing to restore: no failover in this session")
            return
        self.testbed.restore(*last)
        self.last_failure = None
        print(f"{last[1]} restored")

    def do_vrrp(self, _line: str) -> None:
        """Show each director's VRRP instances: state, priority, master."""
        for d in self.testbed.plan.directors:
            print(self.testbed.net[d.name].cmd(f"lvs-testbed vrrp status --name {d.name}"), end="")

    def do_plan(self, _line: str) -> None:
        """Show the layout's names and addresses."""
        from rich.console import Console

        Console().print(plan_table(self.testbed.plan))
