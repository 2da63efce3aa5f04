"""The Mininet CLI of a running lab: the layout's CLI (`testbed.net.console.LvsCLI`) plus the
lab's automatic check, run in process against the live layout.

In a lab's CLI ``check`` is the lab's check, the same as ``lvs-testbed lab check N`` in a
second terminal (``check --save`` also writes the hand-in); the layout's ping test, which is
``check`` in ``lvs-testbed up``, is ``reach`` here. ``labcheck``, the old name, still works
and says so.
"""

from __future__ import annotations

from testbed.labs.model import Lab, LabContext, format_results
from testbed.net.console import LvsCLI
from testbed.net.hosts import TestbedHosts

SAVE_FLAG = "--save"


class LabCLI(LvsCLI):
    """`LvsCLI` for the lab `lvs-testbed lab start` opened it for."""

    def __init__(self, testbed, lab: Lab, **kwargs):
        self.lab = lab
        LvsCLI.__init__(self, testbed, **kwargs)

    def do_check(self, line: str) -> None:
        """check [--save]: run this lab's automatic check (as `lvs-testbed lab check N`);
        --save also writes the hand-in report (check, answers, the run's figures) to ./handin
        or $LVS_TESTBED_HANDIN. The layout's ping test is `reach`."""
        from testbed.labs import handin

        args = line.split()
        if any(a != SAVE_FLAG for a in args):
            print(f"usage: check [{SAVE_FLAG}]")
            return
        ctx = LabContext(hosts=TestbedHosts(self.testbed), plan=self.testbed.plan)
        results = self.lab.run_check(ctx)
        print(f"lab {self.lab.number}: {self.lab.title}")
        print(format_results(results))
        if SAVE_FLAG in args:
            print(f"hand-in written: {handin.save(self.lab, ctx, results)}")

    def do_labcheck(self, line: str) -> None:
        """labcheck: the old name of `check` (the lab's check)."""
        print("(`labcheck` is now `check`)")
        self.do_check(line)
