"""The Mininet CLI with the testbed's own commands added (``check``, ``plan``).

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

    def do_plan(self, _line: str) -> None:
        """Show the layout's names and addresses."""
        from rich.console import Console

        Console().print(plan_table(self.testbed.plan))
