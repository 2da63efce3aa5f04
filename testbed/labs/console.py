"""The Mininet CLI of a running lab: the layout's CLI (`testbed.net.console.LvsCLI`) plus the
lab's automatic check, run in process against the live layout."""

from __future__ import annotations

from testbed.labs.model import Lab, LabContext, format_results
from testbed.net.console import LvsCLI
from testbed.net.hosts import TestbedHosts


class LabCLI(LvsCLI):
    """`LvsCLI` for the lab `lvs-testbed lab start` opened it for."""

    def __init__(self, testbed, lab: Lab, **kwargs):
        self.lab = lab
        LvsCLI.__init__(self, testbed, **kwargs)

    def do_labcheck(self, _line: str) -> None:
        """labcheck: run the current lab's automatic check (as `lvs-testbed lab check N`)."""
        ctx = LabContext(hosts=TestbedHosts(self.testbed), plan=self.testbed.plan)
        print(f"lab {self.lab.number}: {self.lab.title}")
        print(format_results(self.lab.run_check(ctx)))
