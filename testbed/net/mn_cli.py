"""Mininet's own command line for ``mn --custom topos/<layout>.py``, with the layout's daemons
one command away: ``lvs start``.

For: the ``topos/*.py`` files, which set it as mn's CLI (``CLI = MnLvsCLI``: mn lets a
``--custom`` file replace its CLI class). ``mn`` builds the layout from the plan (addresses,
VIPs, the DR firewall, ARP settings) but starts no process in it; ``lvs start`` starts what
``lvs-testbed up`` starts (the real servers' HTTP and UDP echo servers, the userspace director,
the NAT pair's VRRP daemons and connection sync), ``lvs stop`` stops them, and leaving the CLI
stops them too. The testbed's CLI commands (``check``, ``plan``, ``vrrp``, ``failover``,
``restore``) work here as in ``lvs-testbed up``.

Not for: building or tearing down the network (``mn`` does both), or layouts other than the
testbed's (``lvs start`` says so).
"""

from __future__ import annotations

import sys

from testbed.net.console import LvsCLI
from testbed.net.network import Testbed

USAGE = "usage: lvs start|stop|status"


class MnLvsCLI(LvsCLI):
    """Mininet's CLI plus `lvs` and the testbed's commands, around ``mn``'s network."""

    prompt = "mininet> "

    def __init__(self, mininet, stdin=sys.stdin, script: str | None = None, **kwargs):
        testbed = Testbed.adopt(mininet)
        try:
            LvsCLI.__init__(self, testbed, stdin=stdin, script=script, **kwargs)
        finally:
            report = testbed.stop_daemons()
            if report is not None and report.errors:
                print("lvs: cleanup left: " + "; ".join(report.errors))

    def do_lvs(self, line: str) -> None:
        """lvs start|stop|status: start the layout's daemons as `lvs-testbed up` does (real
        servers, director, VRRP pair), stop them, or say what runs. Leaving stops them."""
        words = line.split()
        what = words[0] if len(words) == 1 else ""
        testbed = self.testbed
        if what == "start":
            try:
                testbed.start_daemons()
            except (RuntimeError, OSError) as exc:
                print(f"lvs: {exc}")
                return
            print(
                f"lvs: started ({self._running()}); run directory {testbed.run.dir}; "
                f"daemon logs in {testbed.logs_dir}"
            )
        elif what == "stop":
            if testbed.run is None:
                print("lvs: nothing runs")
                return
            report = testbed.stop_daemons()
            left = f"; left: {'; '.join(report.errors)}" if report and report.errors else ""
            print(f"lvs: stopped{left}; daemon logs kept in {testbed.logs_dir}")
        elif what == "status":
            print(f"lvs: {self._running()}" if testbed.run is not None else "lvs: nothing runs")
        else:
            print(USAGE)

    def _running(self) -> str:
        alive = [
            f"{what} on {host}"
            for (host, what), proc in sorted(self.testbed.procs.items())
            if proc.poll() is None
        ]
        return ", ".join(alive) or "nothing"
